"""The values of a dataset, checked row by row with polars: what ``kernelbench.schema`` refuses on read and write.

Each check refuses with one :class:`~kernelbench.errors.InputError` line that
says how many rows are bad, which is the first (its 0-based index in the file,
``problem_id`` and ``kernel``), why, and what to do.  The rules are not
re-stated here: problem fields obey :data:`kernelbench.problem.INT_RANGES` and
:data:`~kernelbench.problem.PROBLEM_RULES` (the rules :class:`ConvProblem`
checks, evaluated as column expressions), and ``problem_id`` must be
:func:`~kernelbench.problem.problem_id_of` of the fields.  The one rule defined
here is the plausible range of a measured time, :data:`TIME_MS_RANGE`, which
the MIOpen importer shares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import polars as pl

from kernelbench.errors import InputError
from kernelbench.problem import (
    DEFAULT_PAD_MODE,
    DERIVED_FIELDS,
    FIELDS,
    INT_RANGES,
    OUTPUT_SIZE_INPUTS,
    PAD_MODE_FIELD,
    PROBLEM_RULES,
    ConvProblem,
    clamped_output_size,
    problem_id_of,
    same_output_size,
    valid_output_size,
)

#: Inclusive range of a plausible ``time_ms`` of an ``ok`` row: 1 ns to 10^7 ms (2.8 hours).  Outside it a
#: time is a unit mistake or a placeholder (1e308, a denormal 1e-320), not a measurement: the fastest kernel
#: in MIOpen's MI100 find-db takes 3.2 µs, the slowest 111 s.
TIME_MS_RANGE = (1e-6, 1e7)
#: The columns whose combination must be unique: one row per (problem, kernel) in a run on a device.  Rows
#: without a ``run_id`` count as one run.  The same pair in several runs is a repeated measurement (allowed;
#: ``reformer`` takes the median).
RUN_KEY = ("run_id", "device", "problem_id", "kernel")


def plausible_time_ms(time_ms: pl.Expr) -> pl.Expr:
    """Whether a time in ms is a finite number in :data:`TIME_MS_RANGE` (null: false)."""
    low, high = TIME_MS_RANGE
    return (time_ms.is_finite() & time_ms.is_between(low, high)).fill_null(False)


def output_size_columns() -> dict[str, pl.Expr]:
    """``out_d``, ``out_h``, ``out_w`` as expressions of a frame's problem columns (``in_h``, ``filter_h``, ...).

    The sizes a :class:`kernelbench.problem.ConvProblem` derives: by the row's
    ``pad_mode`` column (null: default), clamped to 1 in the default mode; each
    expression is aliased to its column name.
    """
    out = {}
    for name in DERIVED_FIELDS:
        size, filter_size, pad, stride, dilation = (pl.col(f"{kind}_{name[-1]}") for kind in OUTPUT_SIZE_INPUTS)
        mode = pl.col(PAD_MODE_FIELD).fill_null(DEFAULT_PAD_MODE)
        out[name] = (
            pl.when(mode == "same").then(same_output_size(size, stride))
            .when(mode == "valid").then(valid_output_size(size, filter_size, stride))
            .otherwise(clamped_output_size(size, filter_size, pad, stride, dilation))
            .alias(name)
        )
    return out


def problem_ids(frame: pl.DataFrame) -> pl.Series:
    """:func:`~kernelbench.problem.problem_id_of` for every row of a frame with the :data:`FIELDS` columns
    (and ``pad_mode``, if the frame has it).

    Builds the canonical text with polars and hashes it; checked against
    ``problem_id_of`` on the first row so the two cannot drift apart unnoticed.

    Raises:
        RuntimeError: the canonical form of ``problem_id_of`` changed (a bug here).
    """
    text = pl.concat_str([pl.format(f"{f}={{}}", pl.col(f)) for f in FIELDS], separator="|")
    if PAD_MODE_FIELD in frame.columns:  # as problem_id_of: the mode joins the text only when not default
        mode = pl.col(PAD_MODE_FIELD)
        text = pl.when(mode.is_null() | (mode == DEFAULT_PAD_MODE)).then(text).otherwise(
            pl.concat_str([text, pl.format(f"|{PAD_MODE_FIELD}={{}}", mode)]))
    canonical = frame.select(text).to_series()
    ids = pl.Series("problem_id", [hashlib.sha1(text.encode()).hexdigest()[:16] for text in canonical],
                    dtype=pl.String)
    # Check the first row and the first of another mode, so both branches are checked on every import.
    checked = {0}
    if PAD_MODE_FIELD in frame.columns:
        other = frame[PAD_MODE_FIELD].fill_null(DEFAULT_PAD_MODE) != DEFAULT_PAD_MODE
        checked |= set(other.arg_true().head(1).to_list())
    for i in sorted(checked) if frame.height else ():
        if ids[i] != problem_id_of(frame.row(i, named=True)):
            raise RuntimeError("problem_ids() no longer matches kernelbench.problem.problem_id_of")
    return ids


def check_integral(frame: pl.DataFrame, columns: dict[str, pl.DataType], *, where: str = "dataset") -> None:
    """Refuse fractional or non-finite values in float columns that are to become the integer ``columns``.

    Run before casting (a cast truncates ``512.5`` to ``512`` without a word).

    Raises:
        InputError: a value of such a column is not a whole number.
    """
    for name, dtype in columns.items():
        if name in frame.columns and dtype.is_integer() and frame.schema[name].is_float():
            value = pl.col(name)
            _refuse(frame, (~value.is_finite() | (value != value.floor())).fill_null(False), where=where,
                    what=f"have a value of {name} that is not a whole number",
                    detail=lambda row, name=name: f"{name}={row[name]!r}",
                    todo="integer columns hold whole numbers; fix or drop these rows")


def check_values(frame: pl.DataFrame, *, where: str = "dataset") -> None:
    """Check the values of a conformed frame (no nulls in required columns, known statuses).

    Raises:
        InputError: problem fields that are no valid :class:`ConvProblem`, ``out_*`` sizes
            other than the derived ones, a ``problem_id`` other than the fields' id, an ``ok`` row
            without a plausible time, or a (problem, kernel) pair twice in one run.
    """
    ranges = [pl.col(name).is_between(low, high) for name, (low, high) in INT_RANGES.items()]
    valid = pl.all_horizontal(*ranges, *(rule.holds(pl.col).fill_null(False) for rule in PROBLEM_RULES))
    _refuse(frame, ~valid, where=where, what="describe no valid convolution problem", detail=_problem_error,
            todo="fix or drop these rows")
    for name, expected in output_size_columns().items():
        _refuse(frame, pl.col(name) != expected, where=where,
                what=f"have an {name} other than max(1, floor formula) of the problem's sizes",
                detail=lambda row, name=name: f"{name}={row[name]}",
                todo="re-create the dataset with this version of kernelbench")
    _check_problem_ids(frame, where=where)
    low, high = TIME_MS_RANGE
    _refuse(frame, (pl.col("status") == "ok") & ~plausible_time_ms(pl.col("time_ms")), where=where,
            what=f"with status 'ok' have no plausible time_ms (a finite number of ms in [{low:g}, {high:g}])",
            detail=lambda row: f"time_ms={row['time_ms']!r}",
            todo="re-measure these or drop them (a failed measurement has another status and no time)")
    _refuse(frame, _repeated_in_a_run(frame), where=where,
            what="repeat a (problem, kernel) pair of an earlier row of the same run",
            detail=lambda row: f"run_id {row['run_id']!r}, device {row['device']!r}",
            todo="keep one row per pair and run, or give repeated measurements their own run_id")


def _check_problem_ids(frame: pl.DataFrame, *, where: str) -> None:
    """Every ``problem_id`` is ``problem_id_of`` of its row's fields.

    Only the first of consecutive rows with equal ids and fields is hashed (a dataset's
    rows of one problem are usually adjacent), which checks every row exactly.
    """
    columns = ["problem_id", *FIELDS, *([PAD_MODE_FIELD] if PAD_MODE_FIELD in frame.columns else [])]
    starts = frame.select(
        pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in columns]).fill_null(True)
    ).to_series()
    first = frame.filter(starts).select(columns)
    wrong = first.filter(pl.col("problem_id") != problem_ids(first))
    if wrong.is_empty():
        return
    bad = pl.struct(columns).is_in(wrong.select(pl.struct(columns)).to_series().implode())
    _refuse(frame, bad, where=where, what="have a problem_id that is not the id of their problem fields",
            detail=lambda row: f"the fields give {problem_id_of(row)}",
            todo="recompute problem_id with kernelbench.problem.problem_id_of, or re-create the dataset")


def _repeated_in_a_run(frame: pl.DataFrame) -> pl.Expr:
    """Rows whose :data:`RUN_KEY` an earlier row has (the copies after the first: what a fix removes).

    Compares 64-bit hashes of the key first, which is twice as fast as comparing the strings;
    only rows whose hash repeats are compared exactly (a collision is not a duplicate).
    """
    key_hash = pl.struct(RUN_KEY).hash()
    if frame.select(key_hash.is_unique().all()).item():
        return pl.lit(False)
    suspects = frame.with_row_index("_row").filter(key_hash.is_duplicated())
    repeated = suspects.filter(~pl.struct(RUN_KEY).is_first_distinct())["_row"]
    return pl.int_range(pl.len(), dtype=repeated.dtype).is_in(repeated.implode())


def _problem_error(row: dict[str, Any]) -> str:
    try:
        ConvProblem(**{f: row[f] for f in FIELDS})
    except InputError as exc:
        return str(exc)
    raise RuntimeError("kernelbench.validate's column rules and ConvProblem disagree on a row")  # a bug here


def _refuse(frame: pl.DataFrame, bad: pl.Expr, *, where: str, what: str, detail: Callable[[dict[str, Any]], str],
            todo: str) -> None:
    """Raise the one-line error of a check if any row is ``bad``."""
    mask = frame.select(bad.fill_null(False).alias("bad")).to_series()
    count = mask.sum()
    if not count:
        return
    index = mask.arg_max()
    row = frame.row(index, named=True)
    kernel = f", kernel {row['kernel']}" if "kernel" in row else ""
    raise InputError(f"{where}: {count:,} row(s) {what}; the first is row {index} (problem_id "
                     f"{row.get('problem_id')}{kernel}): {detail(row)}; {todo}")
