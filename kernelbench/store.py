"""The run directory: a manifest plus atomically written Parquet part files.

Layout::

    RUN_DIR/manifest.json          what was asked for (spec, kernels, rule), on which device, by which versions
    RUN_DIR/parts/part-*.parquet   rows in the dataset schema, one file per flushed batch of problems

Part files are written to a temporary name and renamed, so a reader (or a
sweep killed with SIGKILL) never sees half a file.  Re-opening a run directory
checks that the manifest describes the same sweep, then :meth:`RunStore.finished_pairs`
tells the sweep which (problem, kernel) pairs to skip.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from kernelbench import schema
from kernelbench.errors import InputError

MANIFEST_NAME = "manifest.json"
PARTS_DIR = "parts"
#: Manifest fields that must match for a run directory to be resumed (or shards merged into it).
#: ``tune`` (the model of a ``kernelbench tune`` run) is absent from sweeps, so the two never mix.
IDENTITY_FIELDS = ("schema_version", "space", "kernels", "rule", "device_label", "seed", "tune")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """One run directory.  Use :meth:`open` to create or resume it."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.manifest = manifest

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def parts_dir(self) -> Path:
        return self.run_dir / PARTS_DIR

    @classmethod
    def open(cls, run_dir: str | Path, identity: Mapping[str, Any], extra: Mapping[str, Any]) -> RunStore:
        """Create ``run_dir`` with a new manifest, or resume it if its manifest has the same ``identity``.

        Args:
            identity: the fields of :data:`IDENTITY_FIELDS` (without ``schema_version``).
            extra: further manifest content (device description, versions, shard, ...), refreshed on resume.

        Raises:
            InputError: the directory cannot be created, holds another sweep or another schema version.
        """
        run_dir = Path(run_dir)
        identity = {"schema_version": schema.SCHEMA_VERSION, **identity}
        path = run_dir / MANIFEST_NAME
        if path.exists():
            old = read_manifest(run_dir)
            for field in IDENTITY_FIELDS:
                if old.get(field) != identity.get(field):
                    raise InputError(
                        f"{run_dir} holds a different sweep ({field} differs: {_short(old.get(field))} vs "
                        f"{_short(identity.get(field))}); use another -o, or the original options to resume"
                    )
            manifest = {**old, **extra, **identity, "resumed": old.get("resumed", 0) + 1, "updated": _now()}
        else:
            if run_dir.exists() and not run_dir.is_dir():
                raise InputError(f"{run_dir} exists and is not a directory")
            manifest = {**extra, **identity, "run_id": uuid.uuid4().hex[:12], "created": _now(), "resumed": 0}
        store = cls(run_dir, manifest)
        try:
            store.parts_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
        store._write_manifest()
        return store

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=2, sort_keys=True, default=str)
        schema.atomic_write_bytes(self.run_dir / MANIFEST_NAME, lambda tmp: tmp.write_text(text + "\n"))

    def part_files(self) -> list[Path]:
        return part_files(self.run_dir)

    def finished_pairs(self) -> set[tuple[str, str]]:
        """(problem_id, kernel) pairs already stored, whatever their status."""
        return set(self.finished_statuses())

    def finished_statuses(self) -> dict[tuple[str, str], str]:
        """Status of every (problem_id, kernel) pair already stored (an ``ok`` row wins over a failed one)."""
        frame = read_parts(self.run_dir, columns=["problem_id", "kernel", "status"])
        out: dict[tuple[str, str], str] = {}
        for pid, kernel, status in zip(frame["problem_id"].to_list(), frame["kernel"].to_list(),
                                       frame["status"].to_list()):
            if out.get((pid, kernel)) != "ok":
                out[(pid, kernel)] = status
        return out

    def write_part(self, rows: Sequence[Mapping[str, Any]], *, shard: str) -> Path | None:
        """Write ``rows`` (dataset schema) as one new part file, atomically.  No rows: no file."""
        if not rows:
            return None
        frame = pl.DataFrame(list(rows), schema_overrides=schema.POLARS_SCHEMA, infer_schema_length=None)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.parts_dir / f"part-{shard.replace('/', 'of')}-{stamp}-{uuid.uuid4().hex[:6]}.parquet"
        schema.write_dataset(frame, path, self.part_metadata())
        return path

    def write_side_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, key: str = "problem_id") -> Path:
        """Merge ``rows`` into ``RUN_DIR/<name>.parquet`` (newer rows win per ``key``), atomically."""
        import pyarrow.parquet as pq

        path = self.run_dir / f"{name}.parquet"
        frame = pl.DataFrame(list(rows))
        if path.exists():
            frame = pl.concat([pl.read_parquet(path), frame], how="diagonal_relaxed")
        frame = frame.unique(subset=[key], keep="last", maintain_order=True)
        table = frame.to_arrow().replace_schema_metadata(schema.encode_metadata({"run_id": self.run_id}))
        schema.atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def part_metadata(self) -> dict[str, Any]:
        keys = ("run_id", "device_label", "device", "space", "kernels", "rule", "versions", "created")
        return {k: self.manifest[k] for k in keys if k in self.manifest}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run directory, checked for the schema version.

    Raises:
        InputError: no manifest, unreadable JSON, or another schema version.
    """
    path = Path(run_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{run_dir} is not a kernelbench run directory (no {MANIFEST_NAME})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from None
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise InputError(
            f"{run_dir}: run directory of kernelbench schema version {version}, this kernelbench uses "
            f"{schema.SCHEMA_VERSION}; export it with the kernelbench that made it"
        )
    return manifest


def part_files(run_dir: str | Path) -> list[Path]:
    """Finished part files (temporary files of an interrupted write are ignored)."""
    return sorted((Path(run_dir) / PARTS_DIR).glob("part-*.parquet"))


def read_parts(run_dir: str | Path, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """All rows of a run directory's part files, conformed to the schema.

    Raises:
        InputError: a part file is corrupt or of another schema version (named in the message).
    """
    frames = []
    for path in part_files(run_dir):
        schema.read_metadata(path)  # version check with a clear message
        try:
            frame = pl.read_parquet(path, columns=list(columns) if columns else None)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{path}: corrupt part file ({exc}); delete it and re-run the sweep to redo it") from None
        frames.append(frame if columns else schema.conform(frame))
    if not frames:
        empty = schema.empty_frame()
        return empty.select(columns) if columns else empty
    return pl.concat(frames, how="vertical")
