import math

import polars as pl
import pytest

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.export import export, merge_runs, to_wide
from kernelbench.info import format_summary, summarize
from kernelbench.store import RunStore

from .helpers import frame, problems, rows

IDENTITY = {"space": {"space": "smoke"}, "kernels": ["a", "b", "c"], "rule": {}, "device_label": "cpu:t:1t", "seed": 0}


def make_run(path, times, *, device="cpu:t:1t", samples=5, shard="0/1"):
    store = RunStore.open(path, {**IDENTITY, "device_label": device}, {"shard": shard})
    store.write_part(rows(times, device=device, samples=samples, run_id=store.run_id), shard=shard)
    return path


def test_merge_shards_dedup_keeps_most_samples_and_drops_failures(tmp_path):
    p = problems(3)
    a = make_run(tmp_path / "s0", {p[0]: {"a": 1.0, "b": 2.0}, p[1]: {"a": 5.0, "b": None}}, samples=5, shard="0/2")
    b = make_run(tmp_path / "s1", {p[0]: {"a": 1.5}, p[2]: {"c": 4.0}}, samples=50, shard="1/2")
    merged, meta = merge_runs([a, b])
    assert merged.height == 4  # p0/a (deduplicated), p0/b, p1/a, p2/c; p1/b failed
    kept = merged.filter((pl.col("problem_id") == p[0].problem_id) & (pl.col("kernel") == "a"))
    assert kept["time_ms"].to_list() == [1.5] and kept["samples"].to_list() == [50]
    assert len(meta["runs"]) == 2
    with_failed, _ = merge_runs([a, b], keep_failed=True)
    assert with_failed.height == 5 and with_failed.filter(pl.col("status") == "error").height == 1


def test_mixed_devices_are_refused_unless_allowed(tmp_path):
    p = problems(1)
    a = make_run(tmp_path / "a", {p[0]: {"a": 1.0}}, device="cpu:x:1t")
    b = make_run(tmp_path / "b", {p[0]: {"a": 2.0}}, device="cpu:y:1t")
    with pytest.raises(InputError, match="different devices"):
        merge_runs([a, b])
    merged, _ = merge_runs([a, b], allow_mixed_devices=True)
    assert merged.height == 2


def test_export_long_and_wide(tmp_path):
    p = problems(2)
    run = make_run(tmp_path / "r", {p[0]: {"a": 1.0, "b": 2.0}, p[1]: {"b": 3.0}})
    export([run], tmp_path / "long.parquet")
    back, meta = schema.read_dataset(tmp_path / "long.parquet")
    assert back.height == 3 and meta["format"] == "long" and "cpu:t:1t" in meta["devices"]
    export([run], tmp_path / "wide.parquet", fmt="wide")
    wide = pl.read_parquet(tmp_path / "wide.parquet")
    assert wide.height == 2 and {"a", "b"} <= set(wide.columns)
    row = wide.filter(pl.col("problem_id") == p[1].problem_id)
    assert row["a"].to_list() == [None] and row["b"].to_list() == [3.0]
    assert to_wide(back).height == 2


def test_empty_runs_are_an_error(tmp_path):
    RunStore.open(tmp_path / "r", IDENTITY, {})
    with pytest.raises(InputError, match="no measurements"):
        merge_runs([tmp_path / "r"])


def test_summary_counts_wins_and_static_ratios():
    p = problems(3)
    # a wins twice, b once; static order a, b, c.
    times = {p[0]: {"a": 1.0, "b": 2.0}, p[1]: {"a": 2.0, "b": 1.0, "c": 1.04}, p[2]: {"a": 3.0, "c": 6.0}}
    s = summarize(frame(rows(times)))
    assert s["problems"] == 3 and s["kernels"] == 3 and s["rows"] == 7
    assert s["wins"] == {"a": 2, "b": 1}
    assert s["applies"] == {"a": 3, "b": 2, "c": 2}
    assert s["static_order"] == ["a", "b", "c"]
    # static picks a everywhere: ratios 1, 2, 1
    assert s["static_geomean"] == pytest.approx(2 ** (1 / 3))
    assert s["static_sum_ratio"] == pytest.approx((1 + 2 + 3) / (1 + 1 + 3))
    assert s["near_ties"] == 1  # p1: c within 5 % of b
    assert s["directions"] == {"fwd": 3} and s["devices"] == ["cpu:test:1t"]
    assert not math.isnan(s["static_geomean"])


def test_summary_counts_a_pair_measured_in_two_runs_once_and_single_kernel_problems():
    p = problems(3)
    first = rows({p[0]: {"a": 1.0, "b": 2.0}, p[1]: {"a": 2.0}, p[2]: {"b": 1.0}}, run_id="r1")
    again = rows({p[0]: {"a": 3.0, "b": 1.5}}, run_id="r2")  # p0 again: medians a 2.0, b 1.75
    s = summarize(frame(first + again))
    assert s["rows"] == 6 and s["ok_rows"] == 6
    assert s["applies"] == {"a": 2, "b": 2}  # not 3 and 3
    assert s["wins"] == {"a": 1, "b": 2}  # p0 b (by its fastest row it would be a), p1 a, p2 b
    assert s["single_kernel_problems"] == 2
    text = format_summary(s, {})
    assert "single measured kernel: 2 of 3 problems (66.7%) offer no choice" in text
    only = summarize(frame(rows({p[0]: {"a": 1.0}, p[1]: {"b": 2.0}})))
    assert "every one of the 2 problems, so nothing can be learned or scored" in format_summary(only, {})
