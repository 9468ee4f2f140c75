import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kernelbench import schema
from reformer.data import load_matrix
from reformer.metrics import (
    METRIC_KEYS,
    OPEN_METRIC_KEYS,
    first_applicable,
    oracle_picks,
    random_picks,
    selection_metrics,
    static_order,
)
from reformer.report import save_fit
from reformer.train import fit
from tests.reformer.conftest import QUICK
from tests.reformer.synthetic import synthetic_frame

ROOT = Path(__file__).resolve().parents[2]

NAN = np.nan
# Three problems x three kernels.
TIMES = np.array(
    [
        [1.0, 2.0, NAN],
        [4.0, 1.0, 2.0],
        [NAN, 3.0, 3.1],
    ]
)


def test_metrics_hand_computed():
    picks = np.array([0, 2, 2])  # best, 2x slower, 3.1/3 slower
    static = np.array([1, 0, 1])  # 2.0, 4.0, 3.0
    m = selection_metrics(TIMES, picks, static)
    assert m.top1 == pytest.approx(1 / 3)
    assert m.within5 == pytest.approx(2 / 3)  # 3.1 <= 1.05 * 3
    assert m.oracle_ratio == pytest.approx((1.0 * 0.5 * (3 / 3.1)) ** (1 / 3))
    assert m.sum_ratio == pytest.approx((1 + 2 + 3.1) / (1 + 1 + 3))
    assert m.mean_pick_ms == pytest.approx((1 + 2 + 3.1) / 3)
    assert m.speedup_static_sum == pytest.approx((2 + 4 + 3) / (1 + 2 + 3.1))
    assert m.speedup_static_geomean == pytest.approx((2 * 2 * (3 / 3.1)) ** (1 / 3))
    assert m.n_problems == 3
    assert tuple(m.as_dict()) == METRIC_KEYS + OPEN_METRIC_KEYS  # open keys NaN until a ranking is scored


def test_a_tie_with_the_fastest_is_a_hit():
    times = np.array([[2.0, 2.0]])
    m = selection_metrics(times, np.array([1]), np.array([0]))
    assert m.top1 == 1.0 and m.oracle_ratio == 1.0


def test_picking_a_non_applicable_kernel_is_an_error():
    with pytest.raises(ValueError, match="not applicable"):
        selection_metrics(TIMES, np.array([2, 0, 1]), np.array([0, 0, 1]))


def test_oracle_static_and_first_applicable():
    np.testing.assert_array_equal(oracle_picks(TIMES), [0, 1, 1])
    order = static_order(TIMES)
    # kernel 1 wins twice, kernel 0 once, kernel 2 never.
    np.testing.assert_array_equal(order, [1, 0, 2])
    np.testing.assert_array_equal(first_applicable(np.array([2, 0, 1]), ~np.isnan(TIMES)), [0, 2, 2])
    np.testing.assert_array_equal(first_applicable(np.array([0]), np.array([[False, True]])), [-1])


def test_random_picks_are_applicable_and_seeded():
    applicable = ~np.isnan(np.tile(TIMES, (50, 1)))
    a = random_picks(applicable, seed=3)
    assert applicable[np.arange(len(a)), a].all()
    np.testing.assert_array_equal(a, random_picks(applicable, seed=3))
    assert len(set(a[1::3])) == 3  # problem 2 has three applicable kernels; 50 draws hit all


def test_open_protocol_charges_a_miss_the_slowest_measured_time():
    from reformer.metrics import ranking_metrics

    # Problem 0 picks kernel 2 (not measured: a miss, charged 2.0); problem 1 picks its best; problem 2 its 3.1.
    scores = np.array([[0.0, 1.0, 5.0], [0.0, 9.0, 1.0], [-np.inf, 0.0, 1.0]])
    m = ranking_metrics(TIMES, scores, open_protocol=True, top_ks=(1, 2))
    assert m["open_hit_rate"] == pytest.approx(2 / 3)
    assert m["open_top1"] == pytest.approx(1 / 3)  # a miss never counts, even when charged a time
    assert m["open_within5"] == pytest.approx(2 / 3)
    assert m["open_oracle_ratio"] == pytest.approx((0.5 * 1.0 * 3 / 3.1) ** (1 / 3))
    assert m["open_sum_ratio"] == pytest.approx((2.0 + 1.0 + 3.1) / 5.0)
    # Top-2: problem 0 measures kernels 2 and 1 (best of them 2.0), problem 2 measures 2 and 1 (3.0).
    assert m["open_topk"]["1"]["top1"] == m["open_top1"]
    assert m["open_topk"]["2"] == {"top1": pytest.approx(2 / 3), "oracle_ratio": pytest.approx(0.5 ** (1 / 3)),
                                   "sum_ratio": pytest.approx((2.0 + 1.0 + 3.0) / 5.0)}


def test_closed_top_k_takes_the_best_of_the_first_k_measured():
    from reformer.metrics import ranking_metrics

    scores = np.where(np.isnan(TIMES), -np.inf, np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    m = ranking_metrics(TIMES, scores, open_protocol=False, top_ks=(1, 3))
    assert m["topk"]["1"]["sum_ratio"] == pytest.approx((2.0 + 4.0 + 3.1) / 5.0)
    assert m["topk"]["3"] == {"top1": 1.0, "oracle_ratio": 1.0, "sum_ratio": 1.0}
    with pytest.raises(ValueError, match="not applicable"):
        ranking_metrics(TIMES, np.zeros_like(TIMES), open_protocol=False)


def test_tie_top1_counts_near_ties_of_the_fastest_only_when_rse_is_recorded():
    times = np.array([[1.0, 1.04, 2.0], [1.0, 1.2, NAN], [1.0, 1.2, NAN]])
    rse = np.array([[0.01, 0.01, 0.01], [0.01, 0.01, NAN], [0.1, 0.1, NAN]])
    picks = np.array([1, 1, 1])  # 4 % slower (tie), 20 % slower at rse 1 % (no tie), 20 % at rse 10 % (tie: 28 %)
    m = selection_metrics(times, picks, np.zeros(3, dtype=int), time_rse=rse)
    assert m.top1 == 0.0
    assert m.tie_top1 == pytest.approx(2 / 3)
    assert m.as_dict()["tie_top1"] == pytest.approx(2 / 3)
    assert "tie_top1" not in selection_metrics(times, picks, np.zeros(3, dtype=int)).as_dict()


def test_open_misses_script_splits_the_open_log_loss_of_a_saved_model(tmp_path):
    """benchmarks/bench_open_misses.py: misses' + hits' log loss is the model's own open oracle ratio.

    The table omits the fastest kernel of a third of the problems (as a find-db keeps only some), so the
    model's open picks miss on some of them."""
    frame = synthetic_frame(600, seed=0)
    fastest = pl.col("time_ms") == pl.col("time_ms").min().over("problem_id")
    omitted = fastest & (pl.col("problem_id").hash(seed=1) % 3 == 0) & (pl.len().over("problem_id") > 1)
    dataset = tmp_path / "omitted.parquet"
    schema.write_dataset(frame.filter(~omitted), dataset, {"device": "synthetic", "generator": "tests"})
    model_dir = tmp_path / "model"
    save_fit(model_dir, fit(load_matrix(dataset), dataclasses.replace(QUICK, candidates="measured")))
    out = tmp_path / "misses.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_open_misses.py"), str(model_dir),
                           str(dataset), "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    saved = json.loads((model_dir / "metrics.json").read_text())
    for side in ("validation", "test"):
        got, want = figures[side], saved[side]
        assert got["misses_log_loss"] > 0 and got["hit_rate"] < 1  # the split exercises both parts
        assert got["open_oracle_ratio"] == pytest.approx(want["open_oracle_ratio"], abs=1e-9)
        assert got["hit_rate"] == pytest.approx(want["open_hit_rate"], abs=1e-9)
        assert np.exp(-(got["misses_log_loss"] + got["hits_log_loss"])) == pytest.approx(want["open_oracle_ratio"])
        misses = round((1 - got["hit_rate"]) * got["n_problems"])
        assert sum(got["misses_by_recorded"].values()) == misses
        assert all(1 <= int(recorded) <= 5 for recorded in got["misses_by_recorded"])  # five synthetic kernels


def test_ensemble_script_mixes_the_model_and_lightgbm_and_weight_zero_is_the_model(tmp_path):
    """benchmarks/bench_ensemble.py: w = 0 reproduces the model's own metrics.json, w = 1 differs."""
    dataset = tmp_path / "d.parquet"
    schema.write_dataset(synthetic_frame(400, seed=2), dataset, {"device": "synthetic", "generator": "tests"})
    model_dir = tmp_path / "model"
    save_fit(model_dir, fit(load_matrix(dataset), QUICK))
    out = tmp_path / "ensemble.json"
    script = str(ROOT / "benchmarks" / "bench_ensemble.py")
    proc = subprocess.run([sys.executable, script, str(model_dir), str(dataset), "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    saved = json.loads((model_dir / "metrics.json").read_text())
    for side in ("validation", "test"):
        alone = figures["figures"][side]["0.0"]
        for key in ("open_hit_rate", "open_top1", "open_oracle_ratio", "top1", "oracle_ratio"):
            assert alone[key] == pytest.approx(saved[side][key], abs=1e-9), key
    assert figures["chosen_weight"] in (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
    other = tmp_path / "other.parquet"
    schema.write_dataset(synthetic_frame(200, seed=3), other, {"device": "synthetic", "generator": "tests"})
    bad = subprocess.run([sys.executable, script, str(model_dir), str(other)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "not the one the model was fitted on" in bad.stderr
    assert bad.stderr.strip().count("\n") == 0
