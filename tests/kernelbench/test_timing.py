import math
import statistics

import numpy as np
import pytest

from kernelbench.timing import Measurement, StoppingRule, host_timer, iqr, measure, median_rse


class FakeClock:
    """A clock that advances only when a fake kernel 'runs'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_kernel(clock, durations_ms):
    it = iter(durations_ms)

    def time_one():
        ms = next(it)
        clock.now += ms / 1e3
        return ms

    return time_one


def test_stops_at_min_samples_when_samples_agree():
    clock = FakeClock()
    m = measure(fake_kernel(clock, [1.0] * 100), rule=StoppingRule(warmup=3, min_samples=5), clock=clock)
    assert m.samples_ms == (1.0,) * 5 and m.stop == "converged"
    assert clock.now == pytest.approx(8e-3)  # 3 warm-up + 5 samples


def test_noisy_samples_continue_until_the_budget():
    clock = FakeClock()
    noisy = [1.0, 3.0] * 1000
    rule = StoppingRule(warmup=0, min_samples=3, max_samples=10_000, rse_target=0.001, budget_s=0.1)
    m = measure(fake_kernel(clock, noisy), rule=rule, clock=clock)
    assert m.stop == "budget"
    assert len(m.samples_ms) == 50  # 25 pairs of 1+3 ms = 100 ms
    assert m.median_ms == 2.0 and m.min_ms == 1.0


def test_converges_once_enough_samples_shrink_the_error():
    clock = FakeClock()
    samples = [10.0, 10.5, 9.5, 10.2, 9.8] * 100
    rule = StoppingRule(warmup=0, min_samples=5, rse_target=0.02, budget_s=100)
    m = measure(fake_kernel(clock, samples), rule=rule, clock=clock)
    assert m.stop == "converged" and m.rse <= 0.02
    # one fewer sample would not have met the target
    assert median_rse(m.samples_ms[:-1]) > 0.02 or len(m.samples_ms) == 5


def test_max_samples_and_timeout():
    clock = FakeClock()
    rule = StoppingRule(warmup=0, min_samples=2, max_samples=4, rse_target=1e-9, budget_s=1e9)
    assert measure(fake_kernel(clock, [1, 2, 3, 4, 5]), rule=rule, clock=clock).stop == "max_samples"
    rule = StoppingRule(warmup=1, timeout_s=0.5)
    m = measure(fake_kernel(clock, [600.0, 1.0]), rule=rule, clock=clock)
    assert m.timed_out and m.samples_ms == (600.0,)


def test_statistics_come_from_the_samples():
    m = Measurement((4.0, 1.0, 3.0, 2.0, 100.0), "budget")
    assert m.median_ms == 3.0 and m.min_ms == 1.0
    assert m.iqr_ms == pytest.approx(iqr(m.samples_ms)) == pytest.approx(2.0)
    expected = math.sqrt(math.pi / 2) * (2.0 / 1.349) / math.sqrt(5) / 3.0
    assert m.rse == pytest.approx(expected)
    assert median_rse([1.0]) == math.inf
    assert statistics.median(m.samples_ms) == m.median_ms


def test_host_timer_uses_the_injected_clock():
    clock = FakeClock()
    calls = []

    def run():
        clock.now += 0.004
        calls.append("run")

    def sync():
        clock.now += 0.001
        calls.append("sync")

    assert host_timer(run, clock=clock, sync=sync)() == pytest.approx(5.0)
    assert calls == ["run", "sync"]


def test_invalid_rules_are_rejected():
    with pytest.raises(ValueError):
        StoppingRule(min_samples=0)
    with pytest.raises(ValueError):
        StoppingRule(rse_target=0)


def test_host_timer_averages_short_runs_into_samples_of_at_least_min_sample_ms():
    clock = FakeClock()
    runs = []

    def run():
        clock.now += 20e-6  # 20 µs per call
        runs.append(1)

    time_one = host_timer(run, clock=clock, min_sample_ms=1.0)
    assert time_one() == pytest.approx(0.02)  # the calibration run
    assert len(runs) == 1
    assert time_one() == pytest.approx(0.02)  # reported per run ...
    assert len(runs) == 1 + 50  # ... from 50 runs of 20 µs = 1 ms
    slow = host_timer(lambda: setattr(clock, "now", clock.now + 0.004), clock=clock, min_sample_ms=1.0)
    slow()
    start = clock.now
    assert slow() == pytest.approx(4.0) and clock.now - start == pytest.approx(0.004)  # one run per sample


def test_near_tie_uses_the_floor_and_the_rows_standard_errors():
    from kernelbench.timing import TIE_FLOOR, TIE_Z, near_tie, tie_tolerance

    # Without a standard error (imported rows: None / NaN) only the floor applies.
    assert near_tie(1.0, None, 1.0 + TIE_FLOOR * 0.99, None)
    assert not near_tie(1.0, None, 1.0 + TIE_FLOOR * 1.01, float("nan"))
    assert near_tie(2.0, 0.0, 1.0 / (1.0 + TIE_FLOOR * 0.99) * 2.0, 0.0)  # symmetric in the order
    # Noisy rows widen the tolerance: 2 x hypot(0.03, 0.04) = 10 %.
    assert tie_tolerance(0.03, 0.04) == pytest.approx(TIE_Z * 0.05)
    assert near_tie(1.0, 0.03, 1.09, 0.04) and not near_tie(1.0, 0.03, 1.11, 0.04)
    # Arrays in, arrays out (what info and reformer pass).
    out = near_tie(np.array([1.0, 1.0]), np.array([0.0, 0.03]), np.array([1.09, 1.09]), np.array([0.0, 0.04]))
    assert out.tolist() == [False, True]


def test_measurement_rse_of_known_fake_samples():
    clock = FakeClock()
    durations = [10.0, 10.0, 12.0, 9.0, 11.0, 10.5, 9.5]
    m = measure(fake_kernel(clock, [99.0] + durations), rule=StoppingRule(warmup=1, min_samples=7, max_samples=7),
                clock=clock)
    assert m.samples_ms == tuple(durations)
    expected = math.sqrt(math.pi / 2) * (iqr(durations) / 1.349) / math.sqrt(7) / 10.0
    assert m.rse == pytest.approx(expected) and m.rse > 0


TINY_SPEC = """
name = "tiny"
description = "two small layers"

[[grid]]
batch = 1
in_channels = [4, 8]
out_channels = 8
in_hw = 10
filter = 3
pad = "same"
"""


def test_harness_agreement_benchmark_runs_on_a_tiny_space(tmp_path):
    """benchmarks/bench_harness_agreement.py: kernelbench vs torch.utils.benchmark, repeated, per size bucket."""
    import csv
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_harness_agreement.py"
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC)
    out = tmp_path / "runs.csv"
    done = subprocess.run([sys.executable, str(script), "--spec", str(spec), "--repeats", "2", "--pinning", "on",
                           "--threads", "1", "--budget-s", "0.05", "--tub-min-run-time", "0.02", "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=600, check=True)
    summary = json.loads(done.stdout)
    overall = [line for line in summary["lines"] if line["bucket"] == "all"]
    assert len(overall) == 1 and overall[0]["problems"] == 2 and overall[0]["pinning"] == "on"
    line = overall[0]
    assert line["kb_spread_median"] >= 0 and line["tub_spread_median"] >= 0 and line["kb_rse_median"] >= 0
    assert 0 < line["kb_over_tub_p10"] <= line["kb_over_tub_median"] <= line["kb_over_tub_p90"]
    # Per-bucket lines partition the problems.
    assert sum(x["problems"] for x in summary["lines"] if x["bucket"] != "all") == 2
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    # 2 problems x 2 repeats x 2 harnesses, every time positive.
    assert len(rows) == 8 and {r["harness"] for r in rows} == {"kernelbench", "tub"}
    assert all(float(r["time_ms"]) > 0 for r in rows)
    assert {r["repeat"] for r in rows} == {"0", "1"}
    # Two repeats: one pair per (problem, kernel), its difference is the spread, and tie is a share.
    assert line["kb_pair_median"] == pytest.approx(line["kb_spread_median"])
    assert 0.0 <= line["kb_pair_tie"] <= 1.0


def test_pair_stats_of_the_harness_benchmark_by_hand():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_harness_agreement.py"
    spec = importlib.util.spec_from_file_location("bench_harness_agreement", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # Three repeats of one (problem, kernel): pairs 1.0/1.05, 1.0/1.2, 1.05/1.2; rse 1 % (tolerance: the floor).
    diffs, ties = bench.pair_stats([[1.0, 1.05, 1.2]], [[0.01, 0.01, None]])
    assert diffs == pytest.approx([0.05, 0.2, 1.2 / 1.05 - 1])
    assert ties == [True, False, False]
