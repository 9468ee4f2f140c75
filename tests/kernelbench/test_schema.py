import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kernelbench import schema
from kernelbench.errors import InputError

from .helpers import frame, problems, rows


@pytest.fixture
def dataset():
    p = problems(2)
    return frame(rows({p[0]: {"a": 1.0, "b": 2.0}, p[1]: {"a": 3.0, "b": None}}))


def test_round_trip_keeps_rows_types_and_metadata(tmp_path, dataset):
    path = tmp_path / "d.parquet"
    schema.write_dataset(dataset, path, {"device": {"name": "x"}, "note": "hi"})
    back, meta = schema.read_dataset(path)
    assert back.equals(dataset)
    assert meta["schema_version"] == schema.SCHEMA_VERSION and meta["device"] == {"name": "x"} and meta["note"] == "hi"
    assert pq.read_schema(path).field("in_h").type == pa.int32()
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_and_unknown_columns_are_named(dataset):
    with pytest.raises(InputError, match="missing required column.*kernel"):
        schema.conform(dataset.drop("kernel"))
    with pytest.raises(InputError, match="unknown column.*colour"):
        schema.conform(dataset.with_columns(pl.lit(1).alias("colour")))


def test_invalid_values_are_rejected(tmp_path, dataset):
    with pytest.raises(InputError, match="unknown status.*fine"):
        schema.validate_frame(dataset.with_columns(pl.lit("fine").alias("status")))
    bad = dataset.with_columns(pl.when(pl.col("kernel") == "a").then(0.0).otherwise(pl.col("time_ms")).alias("time_ms"))
    with pytest.raises(InputError, match="time_ms > 0"):
        schema.write_dataset(bad, tmp_path / "bad.parquet", {})
    assert not (tmp_path / "bad.parquet").exists()
    # Output sizes are derived (MIOpen's default mode, clamped to 1); a stored one that disagrees is an error.
    with pytest.raises(InputError, match="out_h differs from max"):
        schema.validate_frame(dataset.with_columns(pl.lit(-1, dtype=pl.Int32).alias("out_h")))


def test_other_version_corrupt_and_foreign_files_give_one_clear_error(tmp_path, dataset):
    path = tmp_path / "d.parquet"
    schema.write_dataset(dataset, path, {})
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"kernelbench.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v99.parquet")
    with pytest.raises(InputError, match="schema version 99"):
        schema.read_dataset(tmp_path / "v99.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        schema.read_dataset(tmp_path / "junk.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")
    with pytest.raises(InputError, match="not a kernelbench dataset"):
        schema.read_dataset(tmp_path / "foreign.parquet")
    with pytest.raises(InputError, match="no such file"):
        schema.read_dataset(tmp_path / "absent.parquet")


def test_failed_write_leaves_the_old_file_intact(tmp_path, dataset):
    path = tmp_path / "d.parquet"
    schema.write_dataset(dataset, path, {})
    before = path.read_bytes()

    def explode(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        schema.atomic_write_bytes(path, explode)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*tmp"))


def test_unwritable_destination_is_an_input_error(tmp_path, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        schema.write_dataset(dataset, blocker / "d.parquet", {})


def test_written_files_get_ordinary_permissions(tmp_path, dataset):
    import os

    path = tmp_path / "d.parquet"
    schema.write_dataset(dataset, path, {})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_statuses_are_the_status_enum(dataset):
    from kernelbench.status import Status

    assert schema.STATUSES == tuple(s.value for s in Status)
    for status in Status:  # every status a sweep can write is accepted
        timed = dataset.filter(pl.col("time_ms").is_not_null())
        schema.validate_frame(timed.with_columns(pl.lit(status.value).alias("status")))
