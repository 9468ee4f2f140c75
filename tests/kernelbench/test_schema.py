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
    with pytest.raises(InputError, match="have no plausible time_ms"):
        schema.write_dataset(bad, tmp_path / "bad.parquet", {})
    assert not (tmp_path / "bad.parquet").exists()
    # Output sizes are derived (MIOpen's default mode, clamped to 1); a stored one that disagrees is an error.
    with pytest.raises(InputError, match="have an out_h other than max"):
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


# ---------------------------------------------------------------- values checked on read (one line: count + first row)

BAD_ROWS = [3, 5]  # kernel "b" of the second and third problem


def _write_raw(frame, path):
    """Write ``frame`` as a dataset file without the checks of ``write_dataset`` (a file from elsewhere)."""
    pq.write_table(frame.to_arrow().replace_schema_metadata(schema.encode_metadata({})), path)


def _set(column, value):
    """``column`` = ``value`` on the rows :data:`BAD_ROWS`, unchanged elsewhere."""
    return pl.when(pl.int_range(pl.len()).is_in(BAD_ROWS)).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)


@pytest.fixture
def six_rows():
    """Three problems x kernels a, b, all ok: a valid dataset the cases below spoil on rows 3 and 5."""
    p = problems(3)
    return frame(rows({q: {"a": 1.0 + i, "b": 2.0 + i} for i, q in enumerate(p)}))


@pytest.mark.parametrize(
    "change, detail",
    [
        (_set("time_ms", float("nan")), "time_ms=nan"),
        (_set("time_ms", float("inf")), "time_ms=inf"),
        (_set("time_ms", float("-inf")), "time_ms=-inf"),
        (_set("time_ms", 0.0), "time_ms=0.0"),
        (_set("time_ms", -1.5), "time_ms=-1.5"),
        (_set("time_ms", 1e308), "time_ms=1e+308"),
        (_set("time_ms", 1e-320), "time_ms=1e-320"),
        (_set("time_ms", None), "time_ms=None"),
        (_set("batch", -32), "batch=-32 must be >= 1"),
        (_set("in_h", 0), "in_h=0 must be >= 1"),
        (_set("groups", 0), "groups=0 must be >= 1"),
        (_set("stride_w", 0), "stride_w=0 must be >= 1"),
        (_set("pad_h", -1), "pad_h=-1 must be >= 0"),
        (_set("direction", "sideways"), "direction='sideways' is not one of"),
        (_set("dtype", "fp64"), "dtype='fp64' is not one of"),
        (_set("layout", "NCDHW"), "layout='NCDHW' must be one of"),
        (_set("in_d", 2), "in_d=2 must be 1 for a 2D problem"),
        (_set("groups", 3), "in_channels=8 is not divisible by groups=3"),
        (_set("in_channels", 512.5), "in_channels=512.5"),
        (_set("batch", float("nan")), "batch=nan"),
        (_set("problem_id", "0123456789abcdef"), "the fields give"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_bad_value_is_refused_with_the_count_and_first_row(tmp_path, six_rows, change, detail):
    path = tmp_path / "bad.parquet"
    spoilt = six_rows.with_columns(change)
    _write_raw(spoilt, path)
    with pytest.raises(InputError) as info:
        schema.read_dataset(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: 2 row(s) ")
    assert f"the first is row 3 (problem_id {spoilt['problem_id'][3]}, kernel b): " in message
    assert detail in message


def test_one_problem_id_on_every_row_is_refused(tmp_path, six_rows):
    path = tmp_path / "bad.parquet"
    _write_raw(six_rows.with_columns(pl.lit(six_rows["problem_id"][0]).alias("problem_id")), path)
    with pytest.raises(InputError, match=r": 4 row\(s\) have a problem_id that is not the id of their problem fields; "
                                         r"the first is row 2 "):
        schema.read_dataset(path)


def test_a_pair_twice_in_a_run_is_refused_and_across_runs_allowed(tmp_path, six_rows):
    path = tmp_path / "bad.parquet"
    _write_raw(pl.concat([six_rows, six_rows[BAD_ROWS]]), path)
    with pytest.raises(InputError, match=r": 2 row\(s\) repeat a \(problem, kernel\) pair .* the first is row 6 "
                                         r".*kernel b\): run_id 'r1'"):
        schema.read_dataset(path)
    # The same pairs measured again in another run are repeated measurements: read as they are.
    again = pl.concat([six_rows, six_rows[BAD_ROWS].with_columns(pl.lit("r2").alias("run_id"))])
    schema.write_dataset(again, path, {})
    assert schema.read_dataset(path)[0].height == 8


def test_the_checks_guard_writing_too(tmp_path, six_rows):
    with pytest.raises(InputError, match=r"2 row\(s\) with status 'ok' have no plausible time_ms"):
        schema.write_dataset(six_rows.with_columns(_set("time_ms", float("nan"))), tmp_path / "d.parquet", {})
    assert not (tmp_path / "d.parquet").exists()


def test_time_bounds_are_inclusive(tmp_path, six_rows):
    from kernelbench.validate import TIME_MS_RANGE

    low, high = TIME_MS_RANGE
    path = tmp_path / "d.parquet"
    schema.write_dataset(six_rows.with_columns(pl.Series("time_ms", [low, high, low, high, 1.0, 2.0])), path, {})
    assert schema.read_dataset(path)[0]["time_ms"].to_list()[:4] == [low, high, low, high]
