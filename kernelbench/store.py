"""The run directory: a manifest, per-shard records and locks, and atomically written Parquet part files.

Layout::

    RUN_DIR/manifest.json            what was asked for (spec, kernels, rule, shard count), on which device
    RUN_DIR/shards/<i>of<n>.json     per shard: run id, host, pid, device, versions, started, finished
    RUN_DIR/shards/<i>of<n>.lock     held (flock) by the sweep of that shard while it runs
    RUN_DIR/.lock                    held briefly while the manifest or a side table is read and rewritten
    RUN_DIR/parts/part-*.parquet     rows in the dataset schema, one file per flushed batch of problems

Every shard of a sweep (a SLURM array task, a torchrun rank) writes into the same run
directory; an unsharded sweep is shard 0 of 1.  A second process on the same shard is refused
with one line naming the holder (:mod:`kernelbench.runlock`); a lock left by a killed process is
taken over.  Part files are written to a temporary name and renamed, so a reader (or a sweep
killed with SIGKILL) never sees half a file, and temporary files of killed writers are removed
on the next open.  Re-opening a run directory checks that the manifest describes the same
sweep, then :meth:`RunStore.finished_pairs` tells the sweep which (problem, kernel) pairs to
skip.  A shard's record gets its ``finished`` time when its sweep completes; ``kernelbench
export`` uses those records to refuse incomplete shard sets (``docs/cluster.md``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.runlock import RunLock, host_name
from kernelbench.shards import Shard

MANIFEST_NAME = "manifest.json"
PARTS_DIR = "parts"
SHARDS_DIR = "shards"
DIR_LOCK_NAME = ".lock"
#: Manifest fields that must match for a run directory to be resumed (or shards merged into it).
#: ``tune`` (the model of a ``kernelbench tune`` run) is absent from sweeps, so the two never mix.
IDENTITY_FIELDS = ("schema_version", "space", "kernels", "rule", "device_label", "seed", "tune", "shard_count")
#: Part metadata every part must carry (checked by ``kernelbench export``).
PART_PROVENANCE = ("run_id", "device_label")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """One shard of one run directory, locked for this process.  Use :meth:`open` to create or resume it."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any], shard: Shard, lock: RunLock | None,
                 shard_record: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.shard = shard
        self._lock = lock
        self.shard_record = shard_record
        #: The record of a previous holder of this shard's lock that did not release it (a killed sweep), or None.
        self.took_over: dict[str, Any] | None = lock.previous if lock else None

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def parts_dir(self) -> Path:
        return self.run_dir / PARTS_DIR

    @staticmethod
    def lock_shard(run_dir: str | Path, shard: Shard) -> RunLock:
        """Lock ``shard`` of ``run_dir`` for this process (creating the directory), before :meth:`open`.

        The sweep command takes the lock first, so a second process is refused before it spends
        seconds detecting the device.

        Raises:
            InputError: the directory cannot be created, or another live process holds the shard.
        """
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"{run_dir} exists and is not a directory")
        try:
            for sub in (PARTS_DIR, SHARDS_DIR):
                (run_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
        where = f"{run_dir}" if shard.count == 1 else f"shard {shard} of {run_dir}"
        return RunLock.acquire(run_dir / SHARDS_DIR / f"{shard.tag}.lock", what=where, extra={"shard": str(shard)})

    @staticmethod
    @contextlib.contextmanager
    def abandoned_on_error(run_dir: str | Path, lock: RunLock, *, created: bool) -> Iterator[None]:
        """Within the block, an exception (a bad option found after :meth:`lock_shard`) runs :meth:`abandon_lock`
        before it propagates."""
        try:
            yield
        except BaseException:
            RunStore.abandon_lock(run_dir, lock, created=created)
            raise

    @staticmethod
    def abandon_lock(run_dir: str | Path, lock: RunLock, *, created: bool) -> None:
        """Undo :meth:`lock_shard` for a command refused before :meth:`open` (a bad option found after the lock was
        taken): release the lock and, if ``lock_shard`` created ``run_dir`` (``created``), remove what it made.
        Only empty directories are removed, so the files of a shard that started beside this one stay."""
        lock.release()
        if not created:
            return
        run_dir = Path(run_dir)
        try:
            lock.path.unlink()
        except OSError:
            pass
        for directory in (run_dir / PARTS_DIR, run_dir / SHARDS_DIR, run_dir):
            try:
                directory.rmdir()
            except OSError:
                break  # not empty (another shard's lock or parts): it and its parents stay

    @classmethod
    def open(cls, run_dir: str | Path, identity: Mapping[str, Any], extra: Mapping[str, Any], *,
             shard: Shard = Shard(), lock: RunLock | None = None) -> RunStore:
        """Create ``run_dir`` with a new manifest, or resume it if its manifest has the same ``identity``,
        and lock ``shard`` of it for this process until :meth:`close` (or the process's end).

        Args:
            identity: the fields of :data:`IDENTITY_FIELDS` (without ``schema_version`` and ``shard_count``).
            extra: further manifest content (device description, versions, ...), refreshed on resume.
            shard: the shard this process measures; the run directory keeps the shard count it was created with.
            lock: the shard's lock from :meth:`lock_shard`, if already taken.

        Raises:
            InputError: the directory cannot be created or written, holds another sweep, another schema
                version or another shard count, or another live process is sweeping the same shard.
        """
        run_dir = Path(run_dir)
        identity = {"schema_version": schema.SCHEMA_VERSION, **identity, "shard_count": shard.count}
        lock = lock or cls.lock_shard(run_dir, shard)
        try:
            # Shards of one array start together: create or check the manifest one process at a time.
            with RunLock.acquire_waiting(run_dir / DIR_LOCK_NAME, what=f"{run_dir}'s manifest"):
                for directory in (run_dir, run_dir / PARTS_DIR, run_dir / SHARDS_DIR):
                    schema.remove_stale_temp_files(directory)
                path = run_dir / MANIFEST_NAME
                if path.exists():
                    old = read_manifest(run_dir)
                    old_identity = {**old, "shard_count": shard_count_of(old)}
                    for field in IDENTITY_FIELDS:
                        if old_identity.get(field) != identity.get(field):
                            if field == "shard_count":
                                raise InputError(f"{run_dir} is split into {old_identity[field]} shards, not "
                                                 f"{shard.count}; use --shard i/{old_identity[field]} (or auto), or "
                                                 "another -o")
                            raise InputError(
                                f"{run_dir} holds a different sweep ({field} differs: {_short(old.get(field))} vs "
                                f"{_short(identity.get(field))}); use another -o, or the original options to resume"
                            )
                    manifest = {**old, **extra, **identity, "resumed": old.get("resumed", 0) + 1, "updated": _now()}
                    manifest.pop("shard", None)  # older manifests' single shard; shards/ records them now
                else:
                    manifest = {**extra, **identity, "run_id": uuid.uuid4().hex[:12], "created": _now(), "resumed": 0}
                _write_json(path, manifest)
            record_path = _shard_record_path(run_dir, shard)
            old_record = _read_json(record_path) or {}
            device = extra.get("device") if isinstance(extra.get("device"), dict) else None
            record = {
                "run_id": manifest["run_id"], "shard": str(shard), "host": host_name(), "pid": os.getpid(),
                "started": _now(), "device_label": identity.get("device_label"), "device": device,
                "versions": extra.get("versions") or (device or {}).get("versions"),
                "resumed": old_record.get("resumed", -1) + 1,
                # The identity is the same, so a finished shard stays finished when re-run.
                "finished": old_record.get("finished") if old_record.get("run_id") == manifest["run_id"] else None,
            }
            _write_json(record_path, record)
        except BaseException:
            lock.release()
            raise
        return cls(run_dir, manifest, shard, lock, record)

    def finish_shard(self) -> None:
        """Record that this shard's sweep completed: every (problem, kernel) pair of the shard is stored."""
        self.shard_record = {**self.shard_record, "finished": _now()}
        _write_json(_shard_record_path(self.run_dir, self.shard), self.shard_record)

    def close(self) -> None:
        """Release the shard's lock.  Idempotent; the process's end releases it too."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def part_files(self) -> list[Path]:
        return part_files(self.run_dir)

    def finished_pairs(self) -> set[tuple[str, str]]:
        """(problem_id, kernel) pairs already stored (by any shard), whatever their status."""
        return set(self.finished_statuses())

    def finished_statuses(self) -> dict[tuple[str, str], str]:
        """Status of every (problem_id, kernel) pair already stored by any shard (an ``ok`` row wins over a failed one)."""
        frame = read_parts(self.run_dir, columns=["problem_id", "kernel", "status"])
        out: dict[tuple[str, str], str] = {}
        for pid, kernel, status in zip(frame["problem_id"].to_list(), frame["kernel"].to_list(),
                                       frame["status"].to_list()):
            if out.get((pid, kernel)) != "ok":
                out[(pid, kernel)] = status
        return out

    def write_part(self, rows: Sequence[Mapping[str, Any]], *, shard: str | None = None) -> Path | None:
        """Write ``rows`` (dataset schema) as one new part file, atomically.  No rows: no file.

        ``shard`` (``"i/n"``), if given, must be this store's shard.

        Raises:
            InputError: the rows violate the schema, or the file cannot be written (disk full, read-only).
        """
        if shard is not None and shard != str(self.shard):
            raise ValueError(f"write_part(shard={shard!r}) on the store of shard {self.shard}")
        if not rows:
            return None
        frame = pl.DataFrame(list(rows), schema_overrides=schema.POLARS_SCHEMA, infer_schema_length=None)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.parts_dir / f"part-{self.shard.tag}-{stamp}-{uuid.uuid4().hex[:6]}.parquet"
        schema.write_dataset(frame, path, self.part_metadata())
        return path

    def write_side_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, key: str = "problem_id") -> Path:
        """Merge ``rows`` into ``RUN_DIR/<name>.parquet`` (newer rows win per ``key``), atomically.

        Shards share the file, so the read-merge-write holds the run directory's lock.
        """
        import pyarrow.parquet as pq

        path = self.run_dir / f"{name}.parquet"
        with RunLock.acquire_waiting(self.run_dir / DIR_LOCK_NAME, what=f"{self.run_dir}'s {name} table"):
            frame = pl.DataFrame(list(rows))
            if path.exists():
                frame = pl.concat([pl.read_parquet(path), frame], how="diagonal_relaxed")
            frame = frame.unique(subset=[key], keep="last", maintain_order=True)
            table = frame.to_arrow().replace_schema_metadata(schema.encode_metadata({"run_id": self.run_id}))
            schema.atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def part_metadata(self) -> dict[str, Any]:
        """The provenance every part file carries: run, shard, device (label and description), versions, host."""
        keys = ("run_id", "device_label", "device", "space", "kernels", "rule", "seed", "created", "shard_count")
        meta = {k: self.manifest[k] for k in keys if k in self.manifest}
        meta.update(shard=str(self.shard), host=self.shard_record["host"], device=self.shard_record["device"],
                    versions=self.shard_record["versions"])
        return meta


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    schema.atomic_write_bytes(path, lambda tmp: tmp.write_text(text + "\n"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _shard_record_path(run_dir: Path, shard: Shard) -> Path:
    return run_dir / SHARDS_DIR / f"{shard.tag}.json"


def shard_count_of(manifest: Mapping[str, Any]) -> int:
    """The shard count of a run directory's manifest (older manifests recorded only ``shard: "i/n"``)."""
    if "shard_count" in manifest:
        return int(manifest["shard_count"])
    try:
        return Shard.parse(str(manifest.get("shard", "0/1"))).count
    except InputError:
        return 1


def recorded_shard_count(run_dir: str | Path) -> int | None:
    """The shard count of an existing run directory, or None if ``run_dir`` holds no manifest yet.

    Raises:
        InputError: the manifest is unreadable or of another schema version.
    """
    if not (Path(run_dir) / MANIFEST_NAME).is_file():
        return None
    return shard_count_of(read_manifest(run_dir))


def shard_records(run_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Shard index -> record (run id, host, started, finished, ...) of a run directory; unreadable ones skipped."""
    records: dict[int, dict[str, Any]] = {}
    for path in sorted((Path(run_dir) / SHARDS_DIR).glob("*of*.json")):
        record = _read_json(path)
        if record is None:
            continue
        try:
            records[Shard.parse(str(record.get("shard"))).index] = record
        except InputError:
            continue
    return records


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
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: unreadable manifest (a JSON {type(manifest).__name__}, not an object)")
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise InputError(
            f"{run_dir}: run directory of kernelbench schema version {version!r}, this kernelbench uses "
            f"{schema.SCHEMA_VERSION}; export it with the kernelbench that made it"
        )
    return manifest


def part_files(run_dir: str | Path) -> list[Path]:
    """Finished part files (temporary files of an interrupted write are ignored)."""
    return sorted((Path(run_dir) / PARTS_DIR).glob("part-*.parquet"))


def read_part(path: Path, *, columns: Sequence[str] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One part file's rows (conformed to the schema unless ``columns``) and its metadata.

    Raises:
        InputError: the part is corrupt or of another schema version (named in the message).
    """
    meta = schema.read_metadata(path)  # version check with a clear message
    try:
        frame = pl.read_parquet(path, columns=list(columns) if columns else None)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"{path}: corrupt part file ({exc}); delete it and re-run the sweep to redo it") from None
    return (frame if columns else schema.conform(frame)), meta


def read_parts(run_dir: str | Path, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """All rows of a run directory's part files, conformed to the schema.

    Raises:
        InputError: a part file is corrupt or of another schema version (named in the message).
    """
    frames = [read_part(path, columns=columns)[0] for path in part_files(run_dir)]
    if not frames:
        empty = schema.empty_frame()
        return empty.select(columns) if columns else empty
    return pl.concat(frames, how="vertical")
