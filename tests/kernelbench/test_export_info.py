import math

import polars as pl
import pytest

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.export import export, merge_runs, to_wide
from kernelbench.info import format_summary, summarize
from kernelbench.shards import Shard
from kernelbench.store import RunStore

from .helpers import frame, problems, rows

IDENTITY = {"space": {"space": "smoke"}, "kernels": ["a", "b", "c"], "rule": {}, "device_label": "cpu:t:1t", "seed": 0}


def make_run(path, times, *, device="cpu:t:1t", samples=5, shard="0/1", finish=True):
    with RunStore.open(path, {**IDENTITY, "device_label": device}, {"device": {"name": device}},
                       shard=Shard.parse(shard)) as store:
        store.write_part(rows(times, device=device, samples=samples, run_id=store.run_id))
        if finish:
            store.finish_shard()
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
    with RunStore.open(tmp_path / "r", IDENTITY, {}) as store:
        store.finish_shard()
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
    assert s["near_ties"] == 1  # p1: c within the 8 % floor of b
    assert s["directions"] == {"fwd": 3} and s["devices"] == ["cpu:test:1t"]
    assert not math.isnan(s["static_geomean"])


def test_summary_treats_near_ties_as_ties_and_shows_the_torch_default_baseline():
    from kernelbench.info import format_summary

    p = problems(5)
    times = {p[0]: {"a": 1.0, "b": 1.03, "torch_default": 1.2},   # a by 3 %: a near-tie (8 % floor)
             p[1]: {"a": 1.0, "b": 1.12, "torch_default": 1.3},   # a by 12 %, but each median is known to 5 %
             p[2]: {"torch_default": 1.0, "b": 2.0},              # a decided win
             p[3]: {"a": 1.0, "torch_default": 1.04},             # no time_rse (imported data): floor only
             p[4]: {"a": 1.0}}                                    # alone: decided
    rse = {p[0]: 0.01, p[1]: 0.05, p[2]: 0.01, p[3]: None, p[4]: None}
    data = rows(times)
    for i, row in enumerate(data):
        row["time_rse"] = next(r for q, r in rse.items() if q.problem_id == row["problem_id"])
        row["load"] = [None, 0.1, 1.5][i % 3]  # 3 of the 11 rows were timed with other processes busy
    s = summarize(frame(data))
    assert (s["load_known_rows"], s["loaded_rows"], s["load_median"]) == (7, 3, pytest.approx(0.1))
    assert s["wins"] == {"a": 4, "torch_default": 1}
    assert s["decided_wins"] == {"a": 1, "torch_default": 1}
    assert s["near_ties"] == 3
    base = s["baseline"]
    assert base["kernel"] == "torch_default" and base["problems"] == 4
    assert base["geomean"] == pytest.approx((1.2 * 1.3 * 1.0 * 1.04) ** 0.25)
    assert base["sum_ratio"] == pytest.approx((1.2 + 1.3 + 1.0 + 1.04) / 4)
    assert base["near_best"] == 2  # p2 (it is the best) and p3 (within 5 %)
    text = format_summary(s, {})
    assert "torch_default (no selector)" in text and "best or a near-tie on 2" in text
    assert "near-ties: 3 of 5 problems" in text and "timed under load: 3 of 7 rows" in text
    # Without the baseline kernel there is no baseline line.
    without = summarize(frame(r for r in data if r["kernel"] != "torch_default"))
    assert without["baseline"] is None and "no selector" not in format_summary(without, {})


def test_a_part_copied_in_from_another_run_is_checked_and_listed(tmp_path):
    import shutil

    p = problems(2)
    here = make_run(tmp_path / "here", {p[0]: {"a": 1.0}}, device="cpu:x:1t")
    other = make_run(tmp_path / "other", {p[1]: {"a": 2.0}}, device="cpu:y:1t")
    (part,) = (other / "parts").glob("part-*.parquet")
    shutil.copy(part, here / "parts" / part.name)
    with pytest.raises(InputError, match=r"different devices \(cpu:x:1t; cpu:y:1t\)"):
        merge_runs([here])
    merged, meta = merge_runs([here], allow_mixed_devices=True)
    assert merged.height == 2
    run_ids = {r["run_id"]: r for r in meta["runs"]}
    assert set(run_ids) == {RunStore.open(here, {**IDENTITY, "device_label": "cpu:x:1t"}, {}).run_id,
                            RunStore.open(other, {**IDENTITY, "device_label": "cpu:y:1t"}, {}).run_id}
    assert {r["device_label"]: r["rows"] for r in meta["runs"]} == {"cpu:x:1t": 1, "cpu:y:1t": 1}
    assert all(r["run_dir"] == str(here) for r in meta["runs"])


def test_parts_must_carry_their_run_and_device_and_agree_with_their_rows(tmp_path):
    p = problems(1)
    run = make_run(tmp_path / "r", {p[0]: {"a": 1.0}})
    (part,) = (run / "parts").glob("part-*.parquet")
    frame_, meta = schema.read_dataset(part)
    schema.write_dataset(frame_.with_columns(pl.lit("someone-else").alias("run_id")), part, meta)
    with pytest.raises(InputError, match="rows name run_id someone-else but the part's metadata says"):
        merge_runs([run])
    schema.write_dataset(frame_, part, {k: v for k, v in meta.items() if k not in ("run_id", "schema_version")})
    with pytest.raises(InputError, match="part file without run_id metadata"):
        merge_runs([run])


def test_devices_keep_every_description_of_a_label_and_runs_their_versions(tmp_path):
    p = problems(2)
    store_args = ({**IDENTITY, "device_label": "cpu:t:1t"},)
    for name, driver, problem in (("a", "1.0", p[0]), ("b", "2.0", p[1])):
        device = {"name": "t", "driver": driver, "versions": {"numpy": driver}}
        with RunStore.open(tmp_path / name, *store_args, {"device": device}) as store:
            store.write_part(rows({problem: {"a": 1.0}}, device="cpu:t:1t", run_id=store.run_id))
            store.finish_shard()
    _, meta = merge_runs([tmp_path / "a", tmp_path / "b"])
    assert [d["driver"] for d in meta["devices"]["cpu:t:1t"]] == ["1.0", "2.0"]
    assert sorted(r["versions"]["numpy"] for r in meta["runs"]) == ["1.0", "2.0"]


def test_shard_sets_across_run_directories(tmp_path):
    p = problems(4)
    make_run(tmp_path / "s0", {p[0]: {"a": 1.0}}, shard="0/3")
    make_run(tmp_path / "s1", {p[1]: {"a": 1.0}}, shard="1/3", finish=False)
    with pytest.raises(InputError, match=r"shard\(s\) 1/3 \(started .* not finished\), 2/3 \(never started\)"):
        merge_runs([tmp_path / "s0", tmp_path / "s1"])
    merged, meta = merge_runs([tmp_path / "s0", tmp_path / "s1"], allow_partial=True)
    assert merged.height == 2 and meta["partial"] and "partial" in meta["coverage"]
    assert [m["shard"] for m in meta["shard_sets"][0]["missing"]] == ["1/3", "2/3"]
    make_run(tmp_path / "s1", {p[1]: {"a": 1.0}}, shard="1/3")
    make_run(tmp_path / "s2", {p[2]: {"a": 1.0}}, shard="2/3")
    merged, meta = merge_runs([tmp_path / "s0", tmp_path / "s1", tmp_path / "s2"])
    assert merged.height == 3 and not meta["partial"] and meta["shard_sets"][0]["finished"] == ["0/3", "1/3", "2/3"]


def test_info_static_order_is_reformers_rule_on_ties():
    """Equal wins are ordered by applicability, not by name; kernels without wins too; exact time ties go to
    the first kernel by name.  ``kernelbench info`` once broke win ties by name and disagreed with reformer."""
    import numpy as np

    from reformer.data import pivot
    from reformer.metrics import static_order

    p = problems(5)
    times = {
        p[0]: {"a": 1.0, "b": 2.0},              # a wins
        p[1]: {"b": 1.0, "d": 3.0},              # b wins
        p[2]: {"a": 4.0, "b": 3.0, "c": 3.0},    # exact tie b/c: b (first by name) wins
        p[3]: {"a": 2.0, "c": 1.0, "d": 5.0},    # c wins
        p[4]: {"d": 2.0, "e": 2.5},              # d wins
    }
    data = frame(rows(times))
    # wins: a 1, b 2, c 1, d 1, e 0; applies: a 3, b 3, c 2, d 3, e 1.
    expected = ["b", "a", "d", "c", "e"]
    assert summarize(data)["static_order"] == expected
    matrix = pivot(data)
    assert [matrix.kernels[j] for j in static_order(matrix.time_ms)] == expected
    assert summarize(data)["wins"] == {"b": 2, "a": 1, "d": 1, "c": 1}
    # static picks b, b, b, a, d: t_static 2, 1, 3, 2, 2 against t_best 1, 1, 3, 1, 2.
    assert np.isclose(summarize(data)["static_sum_ratio"], 10 / 8)


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
