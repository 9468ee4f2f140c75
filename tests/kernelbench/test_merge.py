"""kernelbench merge: datasets of several devices in one file, provenance per source, nothing merged silently."""

import shutil

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import kernelbench
from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.export import merge, merge_datasets
from kernelbench.info import format_summary, summarize
from tests.reformer.synthetic import synthetic_device_frame, synthetic_frame


def run(*args):
    return CliRunner().invoke(kernelbench, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def two(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    schema.write_dataset(synthetic_frame(30), a, {"source": "test", "run_id": "ra", "coverage": "all",
                                                  "devices": {"synthetic": [{"name": "A"}]}})
    schema.write_dataset(synthetic_device_frame(20), b, {"source": "test", "device": {"name": "B"}, "coverage": "some",
                                                         "note": "kept"})
    return a, b


def test_merge_keeps_every_row_its_device_and_each_sources_provenance(two, tmp_path):
    a, b = two
    frame_a, _ = schema.read_dataset(a)
    frame_b, _ = schema.read_dataset(b)
    out = tmp_path / "ab.parquet"
    result = run("merge", a, b, "-o", out)
    assert result.exit_code == 0, result.output
    merged, meta = schema.read_dataset(out)
    assert merged.height == frame_a.height + frame_b.height
    assert merged.group_by("device").len().sort("device").rows() == [("other", frame_b.height),
                                                                     ("synthetic", frame_a.height)]
    # The same problem keeps each device's own times.
    pid = frame_b["problem_id"][0]
    for frame, device in ((frame_a, "synthetic"), (frame_b, "other")):
        mine = merged.filter((pl.col("problem_id") == pid) & (pl.col("device") == device)).sort("kernel")
        alone = frame.filter(pl.col("problem_id") == pid).sort("kernel")
        assert mine["time_ms"].to_list() == alone["time_ms"].to_list()
    assert meta["devices"] == {"synthetic": [{"name": "A"}], "other": [{"name": "B"}]}
    assert [s["path"] for s in meta["sources"]] == [str(a), str(b)]
    assert [s["devices"] for s in meta["sources"]] == [["synthetic"], ["other"]]
    assert [s["rows"] for s in meta["sources"]] == [frame_a.height, frame_b.height]
    assert meta["sources"][0]["sha256"] == schema.file_sha256(a)
    assert meta["sources"][1]["metadata"]["note"] == "kept"
    assert meta["runs"] == [{"run_id": "ra", "dataset": str(a)}]
    assert meta["source"] == "test" and meta["coverage"] == "synthetic: all; other: some"
    assert "2 datasets" in result.output and "other 20 problems" in result.output


def test_merging_different_schema_versions_is_one_line_and_exit_2(two, tmp_path):
    a, b = two
    table = pq.read_table(b)
    raw = dict(table.schema.metadata)
    raw[f"{schema.METADATA_PREFIX}schema_version".encode()] = b"2"
    pq.write_table(table.replace_schema_metadata(raw), b)
    result = run("merge", a, b, "-o", tmp_path / "ab.parquet")
    assert result.exit_code == 2
    assert "different schema versions" in result.stderr and f"{b} version 2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ab.parquet").exists()


def test_a_dataset_given_twice_or_overlapping_rows_are_refused(two, tmp_path):
    a, b = two
    with pytest.raises(InputError, match="is given twice"):
        merge_datasets([a, a])
    shutil.copy(a, tmp_path / "copy.parquet")
    with pytest.raises(InputError, match="same content as"):
        merge_datasets([a, tmp_path / "copy.parquet"])
    # Another measurement of the same device and problems: refused, not deduplicated.
    again = tmp_path / "again.parquet"
    schema.write_dataset(synthetic_frame(10).with_columns(pl.col("time_ms") * 2), again, {"source": "test"})
    with pytest.raises(InputError, match=r"measurement\(s\) are in more than one input"):
        merge_datasets([a, again])
    with pytest.raises(InputError, match="at least two"):
        merge_datasets([a])


def test_info_counts_each_device(two, tmp_path):
    out = tmp_path / "ab.parquet"
    merge(list(two), out)
    frame, meta = schema.read_dataset(out)
    summary = summarize(frame)
    assert summary["problems"] == 50  # (problem, device) pairs: 30 + 20
    assert summary["per_device"]["other"]["problems"] == 20
    assert summary["per_device"]["other"]["kernels"] == 4  # no winograd there
    assert summary["per_device"]["synthetic"]["kernels"] == 5
    assert "devices: other 20 problems" in format_summary(summary, meta)
