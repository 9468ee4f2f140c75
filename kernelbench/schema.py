"""The dataset contract: columns, types, Parquet metadata, validation on read.

Long format, one row per (problem, kernel).  See ``docs/dataset-format.md``;
a change to :data:`COLUMNS` or to the meaning of a column bumps
:data:`SCHEMA_VERSION`.

Metadata is stored as Parquet key-value metadata.  Every key is prefixed with
``kernelbench.``; values are JSON text.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kernelbench.errors import InputError
from kernelbench.problem import CATEGORICAL_FIELDS, DERIVED_FIELDS, INT_FIELDS
from kernelbench.validate import check_integral, check_values, output_size_columns  # noqa: F401 (re-exported)

SCHEMA_VERSION = 1
METADATA_PREFIX = "kernelbench."

#: Column name -> Arrow type.  Order is the on-disk order.
COLUMNS: dict[str, pa.DataType] = {
    "problem_id": pa.string(),
    **{f: pa.string() for f in CATEGORICAL_FIELDS},
    **{f: pa.int32() for f in INT_FIELDS},
    **{f: pa.int32() for f in DERIVED_FIELDS},
    "kernel": pa.string(),
    "algorithm": pa.string(),
    "status": pa.string(),
    "error": pa.string(),
    "time_ms": pa.float64(),
    "time_ms_min": pa.float64(),
    "time_ms_iqr": pa.float64(),
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
}
ARROW_SCHEMA = pa.schema([pa.field(name, typ) for name, typ in COLUMNS.items()])
POLARS_SCHEMA: dict[str, pl.DataType] = dict(pl.from_arrow(ARROW_SCHEMA.empty_table()).schema)

#: Columns that must be present and non-null in every row.
NON_NULL = ("problem_id", *CATEGORICAL_FIELDS, *INT_FIELDS, *DERIVED_FIELDS, "kernel", "algorithm", "status", "device", "source")
STATUSES = ("ok", "wrong_result", "error", "timeout", "unavailable")


def empty_frame() -> pl.DataFrame:
    """A zero-row frame with the dataset schema."""
    return pl.DataFrame(schema=POLARS_SCHEMA)


def conform(frame: pl.DataFrame, *, where: str = "dataset") -> pl.DataFrame:
    """Add missing optional columns as nulls, cast to the schema, order columns.

    Raises:
        InputError: a required column is missing, a value cannot be cast, or a float value
            of an integer column is not a whole number (a cast would truncate it).
    """
    missing = [c for c in NON_NULL if c not in frame.columns]
    if missing:
        raise InputError(f"dataset is missing required column(s): {', '.join(missing)}")
    extra = [c for c in frame.columns if c not in COLUMNS]
    if extra:
        raise InputError(f"dataset has unknown column(s): {', '.join(extra)}")
    check_integral(frame, POLARS_SCHEMA, where=where)
    try:
        return frame.select(
            [
                (pl.col(c) if c in frame.columns else pl.lit(None)).cast(typ, strict=True).alias(c)
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


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    Raises:
        InputError: the directory cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    frame = conform(frame, where=str(path))
    validate_frame(frame, where=str(path))
    return frame, meta
