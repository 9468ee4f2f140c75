"""The value part of find-db lines: one entry per recorded solver, two format variants.

A line is ``<key>=<entry>;<entry>;...``.  MIOpen's find-db entries have had
two layouts (``src/db_record.cpp``, ``src/include/miopen/perf_field.hpp``):

* **find-db 2.0** (MIOpen PR #2065, April 2023; gfx90878/gfx90a/gfx942 files):
  ``Solver:time_ms,workspace_bytes,algorithm``.
* **find-db 1.0** (older; gfx803/gfx900/gfx906/gfx1030 files and every
  ``*.OpenCL.fdb.txt``): ``algorithm:Solver,time_ms,workspace_bytes,
  kcache_algorithm,kcache_network_config``.  MIOpen still reads it by taking
  the solver, time and workspace and ignoring the two kernel-cache fields
  (``TransformFindDbItem10to20``); so does this module.  It is recognised, as
  in MIOpen, by the entry id being an algorithm name.

``algorithm`` is a MIOpen name such as ``miopenConvolutionBwdDataAlgoWinograd``;
it names the direction too, which must agree with the key's.  The dataset
stores its family (``winograd``).  Entries are parsed for a whole batch of
lines at once with polars string operations (this is the importer's hot path).
"""

from __future__ import annotations

import enum

import polars as pl

from kernelbench.validate import TIME_MS_RANGE, plausible_time_ms

_FAMILIES = {"GEMM": "gemm", "Direct": "direct", "FFT": "fft", "Winograd": "winograd", "ImplicitGEMM": "implicit_gemm"}
#: MIOpen's algorithm names (``src/conv_algo_name.cpp``) -> (direction, family).
ALGORITHMS: dict[str, tuple[str, str]] = {
    **{f"miopenConvolutionFwdAlgo{a}": ("fwd", f) for a, f in _FAMILIES.items()},
    **{f"miopenConvolutionBwdDataAlgo{a}": ("bwd_data", f) for a, f in _FAMILIES.items()},
    "miopenTransposeBwdDataAlgoGEMM": ("bwd_data", "gemm"),
    **{f"miopenConvolutionBwdWeightsAlgo{a}": ("bwd_weights", f) for a, f in _FAMILIES.items() if a != "FFT"},
}
_SOLVER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(?:<[0-9-]+>)?$"  # e.g. ConvWinograd3x3MultipassWrW<7-2-1-1>

#: Entry skip reasons, in the order they are checked, with what they mean.
ENTRY_REASONS = {
    "other_fdb_format": "entry in the other find-db format variant",
    "malformed_entry": "not ID:VALUES with the variant's fields",
    "non_numeric_time": "time is not a finite number",
    "nonpositive_time": "time is not > 0 ms",
    # The range a dataset accepts for a measured time (kernelbench.validate), so an import never writes what
    # a reader would refuse.
    "implausible_time": f"time is outside [{TIME_MS_RANGE[0]:g}, {TIME_MS_RANGE[1]:g}] ms, not a measurement",
    "bad_workspace": "workspace is not a non-negative integer below 2**63",
    "unknown_algorithm": "algorithm is not one of MIOpen's",
    "algorithm_direction_mismatch": "algorithm is for another direction than the key",
    "duplicate_solver": "solver already listed earlier in the line (MIOpen keeps the first)",
}

ENTRY_SCHEMA = {"line": pl.Int64, "kernel": pl.String, "time_ms": pl.Float64, "workspace_bytes": pl.Int64,
                "algorithm": pl.String}


class FdbFormat(str, enum.Enum):
    """A find-db value variant; the value is what the dataset metadata records as ``fdb_format``."""

    V2 = "find-db-2.0"
    V1 = "find-db-1.0"

    @property
    def entry_layout(self) -> str:
        if self is FdbFormat.V2:
            return "Solver:time_ms,workspace_bytes,algorithm"
        return "algorithm:Solver,time_ms,workspace_bytes,kcache_algorithm,kcache_network_config"


def detect_format(value: str) -> FdbFormat | None:
    """The variant of the first entry of ``value`` that has one, else ``None``."""
    for item in value.split(";"):
        ident, _, rest = item.partition(":")
        fields = rest.split(",")
        if ident in ALGORITHMS and len(fields) >= 4:
            return FdbFormat.V1
        if len(fields) == 3 and fields[2] in ALGORITHMS:
            return FdbFormat.V2
    return None


def describe_unrecognised(values: list[str]) -> str:
    """Name what lines without any find-db entry look like (for the error message)."""
    items = [item for value in values for item in value.split(";") if item][:1]
    if not items:
        return "no line has entries after '='"
    _, sep, rest = items[0].partition(":")
    example = repr(items[0][:80])
    if sep and rest and all(part.replace(".", "").replace("-", "").isdigit() for part in rest.split(",")):
        return f"entries look like a MIOpen perf-db (tuning parameters, no measured times), e.g. {example}"
    return (f"unknown entry format, e.g. {example}; expected {FdbFormat.V2.value} "
            f"({FdbFormat.V2.entry_layout}) or {FdbFormat.V1.value} ({FdbFormat.V1.entry_layout})")


def parse_entries(lines: pl.DataFrame, fmt: FdbFormat) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split each line's value into entries; return ``(kept, skipped)``.

    ``lines`` has columns ``line`` (Int64), ``direction`` (the key's) and
    ``value`` (the text after ``=``).  ``kept`` has :data:`ENTRY_SCHEMA`, one
    row per usable entry in input order, ``kernel`` = solver, ``algorithm`` =
    family.  ``skipped`` has the columns of :data:`kernelbench.importers.report.SKIP_SCHEMA`
    with reasons from :data:`ENTRY_REASONS`.
    """
    items = (
        lines.select(
            "line", "direction",
            # MIOpen's getline(';') yields no empty item after a trailing ';'.
            pl.col("value").str.strip_suffix(";").str.split(";").alias("item"),
        )
        .with_columns(pl.int_ranges(1, pl.col("item").list.len() + 1, dtype=pl.Int64).alias("entry"))
        .explode("item", "entry")
        .with_columns(pl.col("item").str.splitn(":", 2).struct.rename_fields(["ident", "rest"]).alias("_parts"))
        .unnest("_parts")
        .with_columns(pl.col("rest").str.split(",").alias("_fields"))
    )
    field = pl.col("_fields").list
    is_algorithm = pl.col("ident").is_in(list(ALGORITHMS))
    v1_shaped = is_algorithm & (field.len() >= 4)
    v2_shaped = (field.len() == 3) & field.get(2, null_on_oob=True).is_in(list(ALGORITHMS))
    if fmt is FdbFormat.V2:
        solver, time_text, workspace_text, algorithm = (
            pl.col("ident"), field.get(0, null_on_oob=True), field.get(1, null_on_oob=True),
            field.get(2, null_on_oob=True))
        shaped, other = (field.len() == 3), v1_shaped
    else:
        solver, time_text, workspace_text, algorithm = (
            field.get(0, null_on_oob=True), field.get(1, null_on_oob=True), field.get(2, null_on_oob=True),
            pl.col("ident"))
        shaped, other = v1_shaped, v2_shaped & ~is_algorithm
    items = items.select(
        "line", "entry", "direction", "item",
        other.fill_null(False).alias("_other"),
        (shaped & solver.str.contains(_SOLVER_NAME)).fill_null(False).alias("_shaped"),
        solver.alias("kernel"),
        time_text.cast(pl.Float64, strict=False).alias("time_ms"),
        workspace_text.str.contains(r"^[0-9]+$").fill_null(False).alias("_ws_digits"),
        workspace_text.cast(pl.Int64, strict=False).alias("workspace_bytes"),
        algorithm.replace_strict({k: v[0] for k, v in ALGORITHMS.items()}, default=None, return_dtype=pl.String)
        .alias("_algorithm_direction"),
        algorithm.replace_strict({k: v[1] for k, v in ALGORITHMS.items()}, default=None, return_dtype=pl.String)
        .alias("algorithm"),
    )
    time = pl.col("time_ms")
    # The first matching condition names the reason, so each check may assume the ones above it passed.
    reason = (
        pl.when(pl.col("_other")).then(pl.lit("other_fdb_format"))
        .when(~pl.col("_shaped")).then(pl.lit("malformed_entry"))
        .when(time.is_null() | ~time.is_finite()).then(pl.lit("non_numeric_time"))
        .when(time <= 0).then(pl.lit("nonpositive_time"))
        .when(~plausible_time_ms(time)).then(pl.lit("implausible_time"))
        .when(~pl.col("_ws_digits") | pl.col("workspace_bytes").is_null()).then(pl.lit("bad_workspace"))
        .when(pl.col("_algorithm_direction").is_null()).then(pl.lit("unknown_algorithm"))
        .when(pl.col("_algorithm_direction") != pl.col("direction")).then(pl.lit("algorithm_direction_mismatch"))
        .when(~pl.struct("line", "kernel").is_first_distinct()).then(pl.lit("duplicate_solver"))
        .otherwise(None)
    )
    items = items.with_columns(reason.alias("_reason"))
    kept = items.filter(pl.col("_reason").is_null()).select(list(ENTRY_SCHEMA))
    skipped = items.filter(pl.col("_reason").is_not_null()).select(
        "line", "entry", pl.col("_reason").alias("reason"),
        pl.format("{}: {}", pl.col("_reason").replace_strict(ENTRY_REASONS, return_dtype=pl.String),
                  pl.col("item").str.slice(0, 80).map_elements(repr, return_dtype=pl.String)).alias("detail"),
    )
    return kept, skipped
