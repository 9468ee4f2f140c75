"""Merge run directories (and their shards) into one dataset file; merge datasets of several devices into one."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.problem import CATEGORICAL_FIELDS, DERIVED_FIELDS, INT_FIELDS, PAD_MODE_FIELD
from kernelbench.shards import Shard
from kernelbench.store import (
    IDENTITY_FIELDS,
    MANIFEST_NAME,
    PART_PROVENANCE,
    PARTS_DIR,
    SHARDS_DIR,
    part_files,
    read_manifest,
    read_part,
    shard_count_of,
    shard_records,
)

PROBLEM_COLUMNS = ("problem_id", *CATEGORICAL_FIELDS, PAD_MODE_FIELD, *INT_FIELDS, *DERIVED_FIELDS)
#: The metadata's ``coverage``: which applicable kernels a problem has rows for.
COVERAGE_SWEEP = "every applicable kernel of the sweep's kernel set"
COVERAGE_TUNE = ("only the kernels a model ranked first (kernelbench tune; see runs[].tune_options), "
                 "not every applicable kernel")


#: What identifies a measurement in a merged dataset, and the order of its rows.
MEASUREMENT_KEY = ("problem_id", "kernel", "device")
ROW_ORDER = ("device", "problem_id", "kernel")


def _add_device(devices: dict[str, list[Any]], label: str, description: Any) -> None:
    """Record ``description`` under ``label`` unless that description is already there (metadata ``devices``)."""
    described = devices.setdefault(label, [])
    if description not in described:
        described.append(description)


def _identity_key(manifest: dict[str, Any]) -> str:
    identity = {f: manifest.get(f) for f in IDENTITY_FIELDS}
    identity["shard_count"] = shard_count_of(manifest)
    return json.dumps(identity, sort_keys=True, default=str)


def shard_sets(run_dirs: Sequence[Path], manifests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group run directories by sweep identity; per group, which shards finished and which are missing.

    A shard is finished when a run directory of the group holds its record with a ``finished``
    time (:meth:`kernelbench.store.RunStore.finish_shard`): its sweep completed, so every
    (problem, kernel) pair of the shard is stored.  An unsharded sweep is one shard.
    """
    groups: dict[str, dict[str, Any]] = {}
    for run_dir, manifest in zip(run_dirs, manifests):
        n = shard_count_of(manifest)
        group = groups.setdefault(_identity_key(manifest), {
            "run_dirs": [], "space": manifest.get("space"), "device_label": manifest.get("device_label"),
            "shard_count": n, "records": {}, "legacy": False})
        group["run_dirs"].append(str(run_dir))
        group["legacy"] |= "shard_count" not in manifest
        for index, record in shard_records(run_dir).items():
            if index < n and (record.get("finished") or index not in group["records"]):
                group["records"][index] = record
    out = []
    for group in groups.values():
        n, records = group["shard_count"], group["records"]
        finished = [i for i in range(n) if records.get(i, {}).get("finished")]
        missing = []
        for i in range(n):
            if i in finished:
                continue
            record = records.get(i)
            if record is not None:
                why = f"started {record.get('started')} on {record.get('host')}, not finished"
            elif group["legacy"]:
                why = "no record: run directory of an older kernelbench"
            else:
                why = "never started"
            missing.append({"shard": f"{i}/{n}", "why": why})
        out.append({"run_dirs": group["run_dirs"], "space": group["space"], "device_label": group["device_label"],
                    "shard_count": n, "finished": [f"{i}/{n}" for i in finished], "missing": missing})
    return out


def _check_part(path: Path, frame: pl.DataFrame, meta: dict[str, Any]) -> None:
    """Every part names its run and device, and its rows say the same."""
    absent = [k for k in PART_PROVENANCE if not meta.get(k)]
    if absent:
        raise InputError(f"{path}: part file without {' and '.join(absent)} metadata (not written by kernelbench "
                         "sweep); move it out of the run directory")
    for column, key in (("run_id", "run_id"), ("device", "device_label")):
        values = set(frame[column].unique().to_list())
        if values != {meta[key]}:
            raise InputError(f"{path}: rows name {column} {', '.join(sorted(map(str, values)))} but the part's "
                             f"metadata says {meta[key]}; move the part out of the run directory")


def merge_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    *,
    keep_failed: bool = False,
    allow_mixed_devices: bool = False,
    allow_partial: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Rows of all ``run_dirs`` in the long dataset format, deduplicated, plus merged metadata.

    A (problem, kernel, device) pair measured more than once keeps the ``ok`` row with the
    most samples (failures only where no ``ok`` row exists).  Failed rows are dropped unless
    ``keep_failed``.  Provenance is taken from every part file, not only from the manifests:
    ``runs`` lists each (run id, shard) whose rows are in the result, ``devices`` every distinct
    description of each device label, ``shard_sets`` which shards of each sweep finished.

    Raises:
        InputError: a directory is not a run directory or has another schema version, a part
            is corrupt or lacks its run id or device, a shard set is incomplete (unless
            ``allow_partial``; the message lists the missing shards), the parts come from
            different devices (unless ``allow_mixed_devices``), or nothing was measured.
    """
    if not run_dirs:
        raise InputError("no run directory given")
    dirs = [Path(d) for d in run_dirs]
    manifests = [read_manifest(d) for d in dirs]
    sets = shard_sets(dirs, manifests)
    incomplete = [s for s in sets if s["missing"]]
    if incomplete and not allow_partial:
        listed = "; ".join(
            f"{', '.join(s['run_dirs'])}: shard(s) " + ", ".join(f"{m['shard']} ({m['why']})" for m in s["missing"])
            for s in incomplete)
        raise InputError(f"incomplete shard set: {listed}; run the missing shards (the same sweep command, or "
                         "resubmit those array tasks), or pass --allow-partial")
    frames: list[pl.DataFrame] = []
    runs: dict[tuple[str, str | None], dict[str, Any]] = {}
    devices: dict[str, list[Any]] = {}
    for run_dir in dirs:
        records = shard_records(run_dir)
        for path in part_files(run_dir):
            frame, meta = read_part(path)
            _check_part(path, frame, meta)
            frames.append(frame)
            key = (meta["run_id"], meta.get("shard"))
            if key not in runs:
                record = records.get(Shard.parse(meta["shard"]).index) if meta.get("shard") else None
                finished = record.get("finished") if record and record.get("run_id") == meta["run_id"] else None
                runs[key] = {
                    "run_id": meta["run_id"], "shard": meta.get("shard"), "run_dir": str(run_dir),
                    **{k: meta.get(k) for k in ("space", "kernels", "rule", "seed", "device_label", "host",
                                                "versions", "created")},
                    "finished": finished, "parts": 0, "rows": 0,
                }
            runs[key]["parts"] += 1
            runs[key]["rows"] += frame.height
            _add_device(devices, meta["device_label"], meta.get("device"))
    labels = sorted(devices)
    if len(labels) > 1 and not allow_mixed_devices:
        raise InputError(
            f"runs come from different devices ({'; '.join(labels)}); pass --allow-mixed-devices to merge them anyway"
        )
    if not frames or sum(f.height for f in frames) == 0:
        raise InputError(f"no measurements in {', '.join(str(d) for d in dirs)}; run `kernelbench sweep` first")
    frame = pl.concat(frames, how="vertical")
    frame = (
        frame.with_columns((pl.col("status") == "ok").alias("_ok"), pl.col("samples").fill_null(0).alias("_n"))
        .sort(["_ok", "_n"], descending=True)
        .unique(subset=list(MEASUREMENT_KEY), keep="first", maintain_order=True)
        .drop("_ok", "_n")
        .sort(list(ROW_ORDER))
    )
    if not keep_failed:
        frame = frame.filter(pl.col("status") == "ok")
    # A kernelbench tune run's manifest names its model and stopping options (tune, tune_options).
    tuned = {m["run_id"]: {k: m[k] for k in ("tune", "tune_options") if k in m} for m in manifests if m.get("tune")}
    metadata = {
        "source": "kernelbench-sweep",
        "devices": devices,
        "runs": [{**r, **tuned.get(r["run_id"], {})} for r in sorted(runs.values(), key=lambda r: (r["run_id"], r["shard"] or ""))],
        "shard_sets": sets,
        "partial": bool(incomplete),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kept_failed": keep_failed,
        "coverage": (COVERAGE_TUNE if tuned else COVERAGE_SWEEP)
        + ("; partial: shards listed as missing in shard_sets were not (fully) measured" if incomplete else ""),
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
    allow_partial: bool = False,
    fmt: str = "long",
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Merge ``run_dirs`` and write ``output`` (long or wide).  Returns the long frame that was merged and
    the metadata written.

    Temporary files that killed exports to ``output`` left beside it are removed first.

    Raises:
        InputError: see :func:`merge_runs`; ``output`` is one of a run directory's own files (its manifest, or
            under ``parts/`` or ``shards/``, which the export would overwrite); or ``output`` cannot be written
            (disk full, read-only).
    """
    if fmt not in ("long", "wide"):
        raise InputError(f"--format {fmt!r}: use long or wide")
    output = Path(output)
    target = output.resolve()
    for run_dir in map(Path, run_dirs):
        owned = [run_dir.resolve() / name for name in (MANIFEST_NAME, PARTS_DIR, SHARDS_DIR)]
        if any(target == path or path in target.parents for path in owned):
            raise InputError(f"-o {output} is inside {run_dir}'s own files ({MANIFEST_NAME}, {PARTS_DIR}/, "
                             f"{SHARDS_DIR}/), which it would overwrite; write the dataset elsewhere")
    schema.remove_stale_temp_files(output.parent, name=output.name)
    frame, metadata = merge_runs(run_dirs, keep_failed=keep_failed, allow_mixed_devices=allow_mixed_devices,
                                 allow_partial=allow_partial)
    if fmt == "long":
        schema.write_dataset(frame, output, {**metadata, "format": "long"})
    else:
        write_wide(to_wide(frame), output, metadata)
    return frame, metadata


def merge_datasets(paths: Sequence[str | os.PathLike[str]]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Rows of the long-format datasets ``paths`` (e.g. one per device) in one frame, plus merged metadata.

    Every row keeps its ``device`` label.  The metadata's ``devices`` maps each label to every
    description the sources give for it; ``sources`` keeps each input's path, SHA-256, row count,
    device labels and its whole metadata; ``runs`` lists the sources' runs; ``source`` and
    ``coverage`` are the sources' own when they agree (else ``merged`` and a per-source text).
    Nothing is deduplicated: a (problem, kernel, device) measured in two inputs is refused.

    Raises:
        InputError: no path, a path given twice (the same bytes), the inputs have different schema
            versions (or one this kernelbench cannot read), an input is not a long-format dataset, or
            two inputs hold rows of the same (problem, kernel, device).
    """
    if len(paths) < 2:
        raise InputError("merge needs at least two datasets")
    versions = {str(p): schema.decode_metadata(_parquet_metadata(p)).get("schema_version") for p in paths}
    if len(set(map(str, versions.values()))) > 1:
        listed = ", ".join(f"{p} version {v}" for p, v in versions.items())
        raise InputError(f"datasets have different schema versions ({listed}); re-export them with one kernelbench "
                         "version before merging")
    hashes: dict[str, str] = {}
    frames: list[pl.DataFrame] = []
    sources: list[dict[str, Any]] = []
    devices: dict[str, list[Any]] = {}
    runs: list[dict[str, Any]] = []
    for path in map(str, paths):
        digest = schema.file_sha256(path)
        if digest in hashes:
            same = "is given twice" if Path(path).resolve() == Path(hashes[digest]).resolve() else \
                f"has the same content as {hashes[digest]}"
            raise InputError(f"{path} {same}; give each dataset once")
        hashes[digest] = path
        frame, meta = schema.read_dataset(path)
        if meta.get("format", "long") != "long":
            raise InputError(f"{path} is a {meta.get('format')} table; merge reads long-format datasets "
                             "(export them without --format wide)")
        meta.pop("schema_version", None)
        labels = sorted(frame["device"].unique().to_list())
        known = meta.get("devices") if isinstance(meta.get("devices"), dict) else {}
        for label in labels:
            # A label maps to one description (older files) or to the list of descriptions met under it.
            given = known.get(label, meta.get("device") if len(labels) == 1 else None)
            for description in (given if isinstance(given, list) else [given]):
                _add_device(devices, label, description)
        for run in meta.get("runs") or ([{"run_id": meta["run_id"]}] if meta.get("run_id") else []):
            runs.append({"dataset": path, **run})  # a merged input's runs keep the dataset they came from
        sources.append({"path": path, "sha256": digest, "rows": frame.height, "devices": labels, "metadata": meta})
        frames.append(frame.with_columns(pl.lit(len(frames)).alias("_source")))
    frame = pl.concat(frames, how="vertical")
    shared = (frame.group_by(list(MEASUREMENT_KEY)).agg(pl.col("_source").n_unique().alias("_inputs"))
              .filter(pl.col("_inputs") > 1).sort(list(ROW_ORDER)))
    if shared.height:
        first = shared.row(0, named=True)
        raise InputError(
            f"{shared.height:,} (problem, kernel, device) measurement(s) are in more than one input, e.g. problem "
            f"{first['problem_id']} kernel {first['kernel']} on {first['device']}; merge joins datasets of different "
            "devices or problems (to combine runs of one sweep, export the run directories together)")
    frame = frame.drop("_source").sort(list(ROW_ORDER), maintain_order=True)
    source_kinds = sorted({str(s["metadata"].get("source")) for s in sources})
    coverages = {str(s["metadata"].get("coverage")) for s in sources if s["metadata"].get("coverage")}
    metadata = {
        "source": source_kinds[0] if len(source_kinds) == 1 else "merged",
        "devices": devices,
        "runs": runs,
        "sources": sources,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "coverage": (next(iter(coverages)) if len(coverages) == 1 else
                     "; ".join(f"{', '.join(s['devices'])}: {s['metadata'].get('coverage', 'not stated')}"
                               for s in sources)),
    }
    return frame, metadata


def _parquet_metadata(path: str | os.PathLike[str]) -> dict[bytes, bytes]:
    """The raw key-value metadata of a Parquet file.

    Raises:
        InputError: the file is missing or not Parquet.
    """
    try:
        return pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def merge(
    paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """:func:`merge_datasets` and write ``output`` (long format, atomically).  Returns the frame and metadata written.

    Raises:
        InputError: see :func:`merge_datasets`; or ``output`` cannot be written.
    """
    output = Path(output)
    schema.remove_stale_temp_files(output.parent, name=output.name)
    frame, metadata = merge_datasets(paths)
    schema.write_dataset(frame, output, {**metadata, "format": "long"})
    return frame, metadata
