"""Merge run directories (and their shards) into one dataset file."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.problem import CATEGORICAL_FIELDS, DERIVED_FIELDS, INT_FIELDS
from kernelbench.store import read_manifest, read_parts

PROBLEM_COLUMNS = ("problem_id", *CATEGORICAL_FIELDS, *INT_FIELDS, *DERIVED_FIELDS)
#: The metadata's ``coverage``: which applicable kernels a problem has rows for.
COVERAGE_SWEEP = "every applicable kernel of the sweep's kernel set"
COVERAGE_TUNE = ("only the kernels a model ranked first (kernelbench tune; see runs[].tune_options), "
                 "not every applicable kernel")


def merge_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    *,
    keep_failed: bool = False,
    allow_mixed_devices: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Rows of all ``run_dirs`` in the long dataset format, deduplicated, plus merged metadata.

    A (problem, kernel, device) pair measured more than once keeps the ``ok`` row with the
    most samples (failures only where no ``ok`` row exists).  Failed rows are dropped unless
    ``keep_failed``.

    Raises:
        InputError: a directory is not a run directory or has another schema version, a part
            is corrupt, the runs come from different devices (unless ``allow_mixed_devices``),
            or nothing was measured.
    """
    if not run_dirs:
        raise InputError("no run directory given")
    manifests = [read_manifest(d) for d in run_dirs]
    labels = sorted({m["device_label"] for m in manifests})
    if len(labels) > 1 and not allow_mixed_devices:
        raise InputError(
            f"runs come from different devices ({'; '.join(labels)}); pass --allow-mixed-devices to merge them anyway"
        )
    frame = pl.concat([read_parts(d) for d in run_dirs], how="vertical")
    if frame.is_empty():
        raise InputError(f"no measurements in {', '.join(str(d) for d in run_dirs)}; run `kernelbench sweep` first")
    frame = (
        frame.with_columns((pl.col("status") == "ok").alias("_ok"), pl.col("samples").fill_null(0).alias("_n"))
        .sort(["_ok", "_n"], descending=True)
        .unique(subset=["problem_id", "kernel", "device"], keep="first", maintain_order=True)
        .drop("_ok", "_n")
        .sort(["device", "problem_id", "kernel"])
    )
    if not keep_failed:
        frame = frame.filter(pl.col("status") == "ok")
    metadata = {
        "source": "kernelbench-sweep",
        "devices": {m["device_label"]: m.get("device") for m in manifests},
        "runs": [
            {k: m.get(k) for k in ("run_id", "space", "kernels", "rule", "shard", "created", "versions", "device_label",
                                   "tune", "tune_options") if k in m or not k.startswith("tune")}
            for m in manifests
        ],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kept_failed": keep_failed,
        "coverage": COVERAGE_TUNE if any(m.get("tune") for m in manifests) else COVERAGE_SWEEP,
    }
    return frame, metadata


def to_wide(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per (problem, device); one ``time_ms`` column per kernel (null where not measured ok)."""
    ok = frame.filter(pl.col("status") == "ok")
    index = [*PROBLEM_COLUMNS, "device", "network"]
    return ok.pivot(on="kernel", index=index, values="time_ms", aggregate_function="first").sort(["device", "problem_id"])


def write_wide(frame: pl.DataFrame, path: str | os.PathLike[str], metadata: dict[str, Any]) -> None:
    """Write the wide table atomically, with the dataset metadata plus ``format: wide``.

    The wide table is a convenience view for spreadsheets and pandas users; tools of this
    project read the long format.
    """
    table = frame.to_arrow().replace_schema_metadata(schema.encode_metadata({**metadata, "format": "wide"}))
    schema.atomic_write_bytes(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def export(
    run_dirs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    keep_failed: bool = False,
    allow_mixed_devices: bool = False,
    fmt: str = "long",
) -> pl.DataFrame:
    """Merge ``run_dirs`` and write ``output`` (long or wide).  Returns the long frame that was merged."""
    if fmt not in ("long", "wide"):
        raise InputError(f"--format {fmt!r}: use long or wide")
    frame, metadata = merge_runs(run_dirs, keep_failed=keep_failed, allow_mixed_devices=allow_mixed_devices)
    if fmt == "long":
        schema.write_dataset(frame, output, {**metadata, "format": "long"})
    else:
        write_wide(to_wide(frame), output, metadata)
    return frame
