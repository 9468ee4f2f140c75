"""A runtime dataset as a problems x kernels matrix with an applicability mask.

The dataset (long format, see ``kernelbench.schema``) has one row per
(problem, kernel, device); only ``status == "ok"`` rows carry a ``time_ms``.
Here it becomes a dense matrix ``time_ms[problem, kernel]`` with ``NaN`` where
a kernel has no ``ok`` row for a problem, i.e. is *not applicable* (for
MIOpen find-db imports: not recorded).  Problems without any applicable
kernel are dropped and counted.

A *problem* of the matrix is a (``problem_id``, ``device``) pair: a dataset that
merges devices (``kernelbench merge``) has one matrix row per device that
measured the problem, each with its own times, and the kernel vocabulary is
the union of the devices' kernels.  Times are never pooled across devices.

A problem with a single measured kernel teaches a selector nothing (there is
no choice to learn) and is scored as a perfect pick whatever the model says.
A dataset where no problem has two measured kernels is refused; one where at
least :data:`SINGLE_KERNEL_WARN_SHARE` of the problems have one gets a warning,
since such problems push every metric towards a perfect score.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kernelbench.errors import InputError
from kernelbench.problem import CATEGORICAL_FIELDS, DERIVED_FIELDS, INT_FIELDS
from kernelbench.schema import file_sha256, read_dataset

#: Share of problems with a single measured kernel from which :func:`load_matrix` warns (they inflate metrics).
SINGLE_KERNEL_WARN_SHARE = 0.1
#: Per-problem columns kept beside the matrix: the problem fields plus ``network`` (for ``--split-by``) and
#: ``device`` (the device label; with ``problem_id`` it identifies a row).
PROBLEM_COLUMNS = ("problem_id", *CATEGORICAL_FIELDS, *INT_FIELDS, *DERIVED_FIELDS, "network", "device")
#: Columns of a matrix row that are not fields of a :class:`kernelbench.problem.ConvProblem`.
NON_FIELD_COLUMNS = ("network", "device")
#: What identifies a matrix row (and orders the rows).
ROW_KEY = ("problem_id", "device")


@dataclasses.dataclass(frozen=True, eq=False)
class RuntimeMatrix:
    """Runtimes of every kernel on every problem of a dataset.

    Attributes:
        problems: one row per (problem, device) (columns :data:`PROBLEM_COLUMNS`), sorted by
            ``problem_id`` then ``device``; row ``i`` describes row ``i`` of ``time_ms``.
        kernels: kernel names, the columns of ``time_ms``.
        time_ms: float64 ``[n_problems, n_kernels]``, ``NaN`` where the kernel is not applicable.
        dropped_problems: (problem, device) pairs of the source without any ``ok`` row (not in ``problems``).
        metadata: the dataset's metadata plus ``path`` and ``sha256`` of the file it came from.
        time_rse: float64 like ``time_ms``: each time's ``time_rse`` (relative standard error of its median,
            0.02 = ±2 %), NaN where not measured or not recorded (imports); ``None``: no row recorded one.
            It decides near-ties (:func:`kernelbench.timing.near_tie`) in labels and metrics.
    """

    problems: pl.DataFrame
    kernels: tuple[str, ...]
    time_ms: np.ndarray
    dropped_problems: int = 0
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    time_rse: np.ndarray | None = None

    @property
    def applicable(self) -> np.ndarray:
        """Boolean ``[n_problems, n_kernels]``: the kernel has a time for the problem."""
        return ~np.isnan(self.time_ms)

    @property
    def n_problems(self) -> int:
        return self.time_ms.shape[0]

    @property
    def single_kernel_problems(self) -> int:
        """Problems with exactly one applicable kernel: nothing to choose, nothing to learn or score."""
        return int(np.count_nonzero(self.applicable.sum(axis=1) == 1))

    @property
    def devices(self) -> tuple[str, ...]:
        """The device labels of the rows, sorted."""
        return tuple(sorted(self.problems["device"].unique().to_list()))

    def problem_row(self, i: int) -> dict[str, Any]:
        """Row ``i``'s problem fields as a mapping (``network`` and ``device`` left out): what
        :meth:`kernelbench.problem.ConvProblem.from_mapping` and ``Selector.select`` take."""
        row = self.problems.row(i, named=True)
        for column in NON_FIELD_COLUMNS:
            row.pop(column, None)
        return row

    def subset(self, rows: np.ndarray) -> RuntimeMatrix:
        """The problems at integer positions ``rows`` (same kernels, same metadata)."""
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(self, problems=self.problems[rows], time_ms=self.time_ms[rows], dropped_problems=0,
                                   time_rse=None if self.time_rse is None else self.time_rse[rows])

    def with_time_ms(self, time_ms: np.ndarray) -> RuntimeMatrix:
        """The same problems and kernels with other runtimes (e.g. noisy ones); NaN pattern must match."""
        if time_ms.shape != self.time_ms.shape or not np.array_equal(np.isnan(time_ms), np.isnan(self.time_ms)):
            raise ValueError("replacement times must keep the shape and the applicability pattern")
        return dataclasses.replace(self, time_ms=time_ms)

    def columns(self) -> dict[str, np.ndarray]:
        """Problem columns as numpy arrays (what :mod:`reformer.features` encodes)."""
        return {c: self.problems[c].to_numpy() for c in self.problems.columns}

    def content_sha256(self) -> str:
        """SHA-256 of what a model can learn from: kernel names, problem columns and runtimes.

        Unlike the file's hash it ignores metadata such as the creation time, so
        re-importing or re-exporting the same measurements gives the same digest
        (``reformer ablate`` keys its cells on it, so a grid resumes on a re-import).
        The ``device`` column counts only when the rows span more than one device: a
        single-device matrix hashes as it did before rows carried their device. ``time_rse``
        does not count: it qualifies the times, and digests computed before it was read stay valid.
        """
        digest = hashlib.sha256()
        digest.update("\0".join(self.kernels).encode())
        for name in sorted(self.problems.columns):
            column = self.problems[name]
            if name == "device" and column.n_unique() <= 1:
                continue
            digest.update(name.encode())
            if column.dtype.is_numeric():
                digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
            else:
                digest.update("\0".join("" if v is None else str(v) for v in column.to_list()).encode())
        digest.update(np.ascontiguousarray(self.time_ms, dtype=np.float64).tobytes())
        return digest.hexdigest()


def pivot(frame: pl.DataFrame, *, metadata: dict[str, Any] | None = None, min_kernels: int = 2) -> RuntimeMatrix:
    """Pivot a conformed long-format dataset frame into a :class:`RuntimeMatrix`.

    A row of the matrix is a (problem, device) pair (rows sorted by ``problem_id``, then
    ``device``).  Repeated ``ok`` rows of one (problem, device, kernel) are reduced to their
    median ``time_ms``; rows of different devices are never pooled.

    Raises:
        InputError: no ``ok`` rows, fewer than ``min_kernels`` kernels with an ``ok`` row, or no
            problem with two measured kernels (nothing can be learned or scored).
    """
    ok = frame.filter(pl.col("status") == "ok")
    if ok.height == 0:
        raise InputError("dataset has no rows with status 'ok', so nothing to learn from; measure or import again")
    kernels = tuple(sorted(ok["kernel"].unique().to_list()))
    if len(kernels) < min_kernels:
        raise InputError(
            f"dataset has {len(kernels)} kernel(s) with measurements ({', '.join(kernels)}); "
            f"selecting needs at least {min_kernels}"
        )
    key = list(ROW_KEY)
    all_ids = frame.select(key).n_unique()
    problems = (
        ok.select([c for c in PROBLEM_COLUMNS if c != "network"])
        .unique(subset=key, keep="first")
        .sort(key)
    )
    # network is per row in the schema; a (problem, device) keeps its first non-null one.
    networks = ok.group_by(key).agg(pl.col("network").drop_nulls().first())
    problems = problems.join(networks, on=key, how="left").sort(key)
    if "time_rse" not in ok.columns:  # a frame built by hand (files always have the column, see schema.conform)
        ok = ok.with_columns(pl.lit(None, dtype=pl.Float64).alias("time_rse"))
    times = ok.group_by(*key, "kernel").agg(pl.col("time_ms").median(), pl.col("time_rse").median())
    row = problems.select(key).with_columns(pl.Series("_row", np.arange(problems.height)))
    col = pl.DataFrame({"kernel": list(kernels), "_col": np.arange(len(kernels))})
    times = times.join(row, on=key).join(col, on="kernel")
    matrix = np.full((problems.height, len(kernels)), np.nan)
    at = times["_row"].to_numpy(), times["_col"].to_numpy()
    matrix[at] = times["time_ms"].to_numpy()
    rse = None
    if times["time_rse"].null_count() < times.height:  # imports record none: keep the matrix lean
        rse = np.full(matrix.shape, np.nan)
        rse[at] = times["time_rse"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    if not (np.count_nonzero(~np.isnan(matrix), axis=1) >= 2).any():
        raise InputError(
            f"every one of the dataset's {problems.height:,} problems has a single measured kernel, so nothing can be "
            "learned or scored (there is no choice to make); measure or import several kernels per problem"
        )
    return RuntimeMatrix(
        problems=problems.select(PROBLEM_COLUMNS),
        kernels=kernels,
        time_ms=matrix,
        dropped_problems=all_ids - problems.height,
        metadata=dict(metadata or {}),
        time_rse=rse,
    )


def _stderr(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def load_matrix(path: str | os.PathLike[str], *, min_kernels: int = 2,
                warn: Callable[[str], None] | None = _stderr) -> RuntimeMatrix:
    """Read a dataset file (``kernelbench.schema.read_dataset``) and pivot it.

    ``warn`` (default: a line on stderr; ``None``: silent) is told when at least
    :data:`SINGLE_KERNEL_WARN_SHARE` of the problems have a single measured kernel.

    Raises:
        InputError: unreadable file, wrong schema version or columns, invalid values, no ``ok``
            rows, too few kernels, no problem with two measured kernels (see :func:`pivot`).
    """
    frame, metadata = read_dataset(path)
    metadata = {**metadata, "path": str(Path(path)), "sha256": file_sha256(path)}
    matrix = pivot(frame, metadata=metadata, min_kernels=min_kernels)
    single = matrix.single_kernel_problems
    if warn is not None and single >= SINGLE_KERNEL_WARN_SHARE * matrix.n_problems:
        warn(f"{path}: {single:,} of {matrix.n_problems:,} problems ({100 * single / matrix.n_problems:.0f}%) have a "
             "single measured kernel: they teach nothing and count as perfect picks, so metrics look better than "
             "the selector is")
    return matrix


def align_kernels(matrix: RuntimeMatrix, kernels: Sequence[str], *,
                  values: np.ndarray | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Times of ``matrix`` (or ``values``, an array shaped like them, e.g. ``matrix.time_rse``) re-indexed to
    the kernel vocabulary ``kernels``.

    Returns ``(array [n_problems, len(kernels)], unknown)`` where columns of
    kernels absent from the dataset are all NaN and ``unknown`` lists the
    dataset's kernels that are not in ``kernels`` (their values are not in the result).
    """
    values = matrix.time_ms if values is None else values
    index = {k: i for i, k in enumerate(matrix.kernels)}
    out = np.full((matrix.n_problems, len(kernels)), np.nan)
    for j, k in enumerate(kernels):
        if k in index:
            out[:, j] = values[:, index[k]]
    unknown = tuple(k for k in matrix.kernels if k not in set(kernels))
    return out, unknown


def lognormal_noise(time_ms: np.ndarray, *, sigma: float, seed: int) -> np.ndarray:
    """``time_ms`` times independent log-normal factors ``exp(N(0, sigma^2))`` (NaN stays NaN).

    Used to test robustness to measurement noise on the training split only.
    """
    if sigma <= 0:
        return time_ms
    rng = np.random.default_rng(seed)
    return time_ms * np.exp(rng.normal(0.0, sigma, size=time_ms.shape))
