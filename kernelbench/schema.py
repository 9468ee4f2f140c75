"""The dataset contract: columns, types, Parquet metadata, validation on read.

Long format, one row per (problem, kernel).  See ``docs/dataset-format.md``;
a change to :data:`COLUMNS` or to the meaning of a column bumps
:data:`SCHEMA_VERSION`.

Metadata is stored as Parquet key-value metadata.  Every key is prefixed with
``kernelbench.``; values are JSON text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kernelbench.errors import InputError
from kernelbench.problem import CATEGORICAL_FIELDS, DEFAULT_PAD_MODE, DERIVED_FIELDS, INT_FIELDS, PAD_MODE_FIELD
from kernelbench.status import Status
from kernelbench.validate import check_integral, check_values, output_size_columns  # noqa: F401 (re-exported)

SCHEMA_VERSION = 1
METADATA_PREFIX = "kernelbench."

#: Column name -> Arrow type.  Order is the on-disk order.
COLUMNS: dict[str, pa.DataType] = {
    "problem_id": pa.string(),
    **{f: pa.string() for f in CATEGORICAL_FIELDS},
    PAD_MODE_FIELD: pa.string(),
    **{f: pa.int32() for f in INT_FIELDS},
    **{f: pa.int32() for f in DERIVED_FIELDS},
    "kernel": pa.string(),
    "algorithm": pa.string(),
    "status": pa.string(),
    "error": pa.string(),
    "time_ms": pa.float64(),
    "time_ms_min": pa.float64(),
    "time_ms_iqr": pa.float64(),
    "time_rse": pa.float64(),
    "samples": pa.int32(),
    "max_rel_error": pa.float64(),
    "workspace_bytes": pa.int64(),
    "threads": pa.int32(),
    "load": pa.float64(),
    "throttled": pa.bool_(),
    "device": pa.string(),
    "source": pa.string(),
    "run_id": pa.string(),
    "network": pa.string(),
    "miopen_key": pa.string(),
    "measure_s": pa.float64(),
    "predicted_rank": pa.int32(),
    "predicted_prob": pa.float64(),
}
ARROW_SCHEMA = pa.schema([pa.field(name, typ) for name, typ in COLUMNS.items()])
POLARS_SCHEMA: dict[str, pl.DataType] = dict(pl.from_arrow(ARROW_SCHEMA.empty_table()).schema)

#: Columns that must be present and non-null in every row.
NON_NULL = ("problem_id", *CATEGORICAL_FIELDS, *INT_FIELDS, *DERIVED_FIELDS, "kernel", "algorithm", "status", "device", "source")
#: Values of the ``status`` column: those of :class:`kernelbench.status.Status`, in its order.
STATUSES = tuple(s.value for s in Status)
#: Columns added after version 1 was first written, with the value a file without them means.
#: Adding one keeps files readable both ways round, so it does not bump :data:`SCHEMA_VERSION`.
COLUMN_DEFAULTS: dict[str, Any] = {PAD_MODE_FIELD: DEFAULT_PAD_MODE}


def empty_frame() -> pl.DataFrame:
    """A zero-row frame with the dataset schema."""
    return pl.DataFrame(schema=POLARS_SCHEMA)


def conform(frame: pl.DataFrame, *, where: str = "dataset") -> pl.DataFrame:
    """Add missing optional columns (as nulls, or their :data:`COLUMN_DEFAULTS`), cast to the schema, order columns.

    Raises:
        InputError: a required column is missing, a value cannot be cast, or a float value
            of an integer column is not a whole number (a cast would truncate it).
    """
    missing = [c for c in NON_NULL if c not in frame.columns]
    if missing:
        raise InputError(f"{where} is missing required column(s): {', '.join(missing)}")
    extra = [c for c in frame.columns if c not in COLUMNS]
    if extra:
        raise InputError(f"{where} has unknown column(s): {', '.join(extra)}")
    check_integral(frame, POLARS_SCHEMA, where=where)
    try:
        return frame.select(
            [
                (pl.col(c) if c in frame.columns else pl.lit(COLUMN_DEFAULTS.get(c))).cast(typ, strict=True).alias(c)
                for c, typ in POLARS_SCHEMA.items()
            ]
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise InputError(f"dataset column has the wrong type: {exc}") from None


def validate_frame(frame: pl.DataFrame, *, where: str = "dataset") -> None:
    """Check a conformed frame's values (``docs/dataset-format.md``, "What is checked").

    Raises:
        InputError: one line naming the number of bad rows and the first: nulls in required
            columns, unknown statuses, or any check of :func:`kernelbench.validate.check_values`
            (problem fields, ``out_*``, ``problem_id``, ``ok`` times, duplicated pairs in a run).
    """
    nulls = [c for c in NON_NULL if frame[c].null_count()]
    if nulls:
        raise InputError(f"{where}: null values in required column(s): {', '.join(nulls)}")
    bad_status = sorted(set(frame["status"].unique().to_list()) - set(STATUSES))
    if bad_status:
        raise InputError(f"{where}: unknown status value(s): {', '.join(bad_status)}")
    check_values(frame, where=where)


def encode_metadata(metadata: Mapping[str, Any]) -> dict[bytes, bytes]:
    out = {f"{METADATA_PREFIX}{k}".encode(): json.dumps(v, sort_keys=True, default=str).encode() for k, v in metadata.items()}
    out[f"{METADATA_PREFIX}schema_version".encode()] = str(SCHEMA_VERSION).encode()
    return out


def decode_metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        k = key.decode(errors="replace")
        if not k.startswith(METADATA_PREFIX):
            continue
        try:
            out[k[len(METADATA_PREFIX) :]] = json.loads(value)
        except ValueError:
            out[k[len(METADATA_PREFIX) :]] = value.decode(errors="replace")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Temporary files of :func:`atomic_write_bytes`: ``.<name>.<pid>@<host>.<random>.tmp`` beside the target.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[^/]+)\.[A-Za-z0-9_]+\.tmp$")
#: Those of kernelbench versions that did not record the writer: ``.<name>.<random>.tmp``.
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")
#: A temporary file whose writer cannot be checked (another host, an older kernelbench) is stale after this.
STALE_TEMP_AGE_S = 24 * 3600.0


def io_error_reason(exc: BaseException) -> str:
    """The system's reason for a failed write, e.g. ``"No space left on device"``.

    Arrow and safetensors wrap the errno in their own text (``"... [errno 28] ..."``,
    ``"... code: 28 ..."``); the errno's standard text is returned when one is found.
    """
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"errno\]?\s*[=:]?\s*(\d+)|\bcode:\s*(\d+)", str(exc), re.IGNORECASE)
    if found:
        return os.strerror(int(found.group(1) or found.group(2)))
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def remove_stale_temp_files(directory: str | os.PathLike[str], *, name: str | None = None) -> list[Path]:
    """Delete temporary files that killed :func:`atomic_write_bytes` calls left in ``directory``.

    A file is stale when its writer was a process of this host that no longer runs, or, when the
    writer cannot be checked (another host on a shared filesystem, a file of an older kernelbench),
    when it is older than :data:`STALE_TEMP_AGE_S`.  ``name`` limits the clean-up to the temporary
    files of one target file (``export`` passes its output's name).  Never raises: a file that cannot
    be removed is left alone.  Returns the files removed.
    """
    from kernelbench.runlock import host_name

    directory = Path(directory)
    removed: list[Path] = []
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    except OSError:
        return removed
    host, now = host_name(), time.time()
    for path in candidates:
        match = _TEMP_NAME.match(path.name)
        legacy = None if match else _LEGACY_TEMP_NAME.match(path.name)
        target = (match or legacy).group("name") if (match or legacy) else None
        if target is None or (name is not None and target != name):
            continue
        try:
            if match and match.group("host") == host:
                stale = not _pid_alive(int(match.group("pid")))
            else:
                stale = now - path.stat().st_mtime > STALE_TEMP_AGE_S
            if stale:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    The temporary file is named after the writing process (pid and host), so that a later
    :func:`remove_stale_temp_files` can tell a killed writer's leftovers from a live writer's file;
    on any failure it is deleted here.

    Raises:
        InputError: the directory cannot be written (read-only, disk full, quota, permissions), with
            the path and the system's reason.
    """
    from kernelbench.runlock import host_name

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{host_name()}.", suffix=".tmp",
                                   dir=path.parent)
        os.close(fd)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {io_error_reason(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dataset(frame: pl.DataFrame, path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> None:
    """Validate ``frame`` and write it atomically as Parquet with ``metadata``.

    Raises:
        InputError: the frame violates the schema, or the path cannot be written.
    """
    frame = conform(frame, where=str(path))
    validate_frame(frame, where=str(path))
    table = frame.to_arrow().cast(ARROW_SCHEMA)
    table = table.replace_schema_metadata(encode_metadata(metadata))
    atomic_write_bytes(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (identifies the exact dataset a model was trained on, or a merge's source)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``kernelbench.*`` metadata of a Parquet file, decoded.

    Raises:
        InputError: the file is missing, not Parquet, or of another schema version.
    """
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = decode_metadata(schema.metadata)
    version = meta.get("schema_version")
    if version is None:
        raise InputError(f"{path}: not a kernelbench dataset (no kernelbench.schema_version metadata)")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"{path}: dataset schema version {version}, this kernelbench reads version {SCHEMA_VERSION}; "
            "re-export it with a matching kernelbench"
        )
    return meta


def read_dataset(path: str | os.PathLike[str]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read and validate a dataset.  Returns ``(frame, metadata)``.

    Raises:
        InputError: unreadable file, other schema version, missing columns, invalid values.
    """
    meta = read_metadata(path)
    if meta.get("format") == "wide":
        raise InputError(f"{path}: a wide export (kernelbench export --format wide, one column per kernel, for "
                         "other tools); this command reads the long format: export the run again without --format")
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    frame = conform(frame, where=str(path))
    validate_frame(frame, where=str(path))
    return frame, meta
