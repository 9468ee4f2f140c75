import statistics
import time

import numpy as np
import polars as pl
import pytest

from kernelbench.backends import CpuBackend
from kernelbench.errors import InputError
from kernelbench.kernels.base import Kernel, Prepared
from kernelbench.reference import reference_output
from kernelbench.spaces import SpaceEntry
from kernelbench.store import RunStore, read_parts
from kernelbench.sweep import Shard, SweepOptions, run_sweep
from kernelbench.timing import StoppingRule, median_rse

from .helpers import problems


def _applies(problem):
    return None


def fake(name, make_output, *, applies=_applies, unavailable=lambda: None, sleep_s=0.0):
    """A kernel whose output is ``make_output(reference)``."""

    def prepare(problem, inputs):
        out = make_output(reference_output(problem, inputs).astype(np.float32))

        def run():
            if sleep_s:
                time.sleep(sleep_s)
            return out

        return Prepared(run=run, result=np.asarray, workspace_bytes=123)

    return Kernel(name=name, algorithm="direct", backend="cpu", applies=applies, prepare=prepare,
                  unavailable=unavailable)


def raising_prepare(problem, inputs):
    raise RuntimeError("boom\nsecond line")


KERNELS = [
    fake("good", lambda ref: ref),
    fake("wrong", lambda ref: ref * 1.5),
    Kernel(name="raises", algorithm="direct", backend="cpu", applies=_applies, prepare=raising_prepare),
    fake("slow", lambda ref: ref, sleep_s=0.05),
    fake("missing", lambda ref: ref, unavailable=lambda: "not in this build"),
    fake("never", lambda ref: ref, applies=lambda p: "does not apply"),
]
# In-process: these kernels are closures, which a worker process cannot receive (test_worker.py covers that mode).
FAST = SweepOptions(rule=StoppingRule(warmup=1, min_samples=3, budget_s=0.05, timeout_s=0.02), flush_every_s=0,
                    isolation="none")


@pytest.fixture
def entries():
    return [SpaceEntry(problem=p, network="test", layer=f"l{i}") for i, p in enumerate(problems(3))]


def open_store(path, kernels=KERNELS, shard=Shard()):
    backend = CpuBackend(threads=1)
    identity = {"space": {"space": "test"}, "kernels": [k.name for k in kernels], "rule": {}, "seed": 0,
                "device_label": backend.device_label}
    return backend, RunStore.open(path, identity, {}, shard=shard)


def test_every_status_is_recorded_and_only_correct_kernels_are_timed(tmp_path, entries):
    backend, store = open_store(tmp_path / "run")
    summary = run_sweep(entries, KERNELS, backend=backend, store=store, options=FAST, progress=False)
    frame = read_parts(tmp_path / "run")
    assert frame.height == 3 * 5  # "never" does not apply: no rows
    by_kernel = {k: frame.filter(pl.col("kernel") == k) for k in frame["kernel"].unique()}
    assert set(by_kernel["good"]["status"]) == {"ok"}
    good = by_kernel["good"]
    assert (good["time_ms"] > 0).all() and (good["samples"] >= 3).all()
    assert (good["time_ms_min"] <= good["time_ms"]).all() and (good["max_rel_error"] < 1e-6).all()
    assert (good["workspace_bytes"] == 123).all() and (good["network"] == "test").all()
    wrong = by_kernel["wrong"]
    assert set(wrong["status"]) == {"wrong_result"}
    assert wrong["time_ms"].null_count() == 3 and wrong["samples"].null_count() == 3
    assert (wrong["max_rel_error"] > 0.4).all() and "tolerance" in wrong["error"][0]
    assert set(by_kernel["raises"]["status"]) == {"error"}
    assert by_kernel["raises"]["error"][0] == "RuntimeError: boom"
    assert set(by_kernel["slow"]["status"]) == {"timeout"}
    assert by_kernel["slow"]["time_ms"].null_count() == 3
    assert set(by_kernel["missing"]["status"]) == {"unavailable"}
    assert summary.status_counts == {"ok": 3, "wrong_result": 3, "error": 3, "timeout": 3, "unavailable": 3}
    assert summary.kernel_time_s > 0 and summary.wall_s >= summary.kernel_time_s


def test_rerun_resumes_without_duplicates(tmp_path, entries):
    backend, store = open_store(tmp_path / "run")

    class Stop(Exception):
        pass

    def stop_after_first(index):
        raise Stop

    with pytest.raises(Stop):
        run_sweep(entries, KERNELS, backend=backend, store=store, options=FAST, progress=False,
                  on_problem_done=stop_after_first)
    assert read_parts(tmp_path / "run").height == 5
    backend, store = open_store(tmp_path / "run")
    summary = run_sweep(entries, KERNELS, backend=backend, store=store, options=FAST, progress=False)
    assert summary.problems_skipped == 1 and summary.rows_written == 10
    frame = read_parts(tmp_path / "run")
    assert frame.height == 15 and frame.select("problem_id", "kernel").is_duplicated().sum() == 0
    again = run_sweep(entries, KERNELS, backend=backend, store=store, options=FAST, progress=False)
    assert again.rows_written == 0 and again.problems_skipped == 3


def test_shards_partition_the_problem_list(tmp_path, entries):
    seen = []
    for i in range(2):
        backend, store = open_store(tmp_path / f"s{i}", KERNELS[:1], shard=Shard(i, 2))
        run_sweep(entries, KERNELS[:1], backend=backend, store=store, progress=False,
                  options=SweepOptions(rule=FAST.rule, shard=Shard(i, 2), isolation="none"))
        seen.append(set(read_parts(tmp_path / f"s{i}")["problem_id"]))
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == {e.problem.problem_id for e in entries}
    assert Shard.parse("1/2").select(entries) == [entries[1]]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "x", "1/0", "1/2/3"])
def test_bad_shards_are_refused(text):
    with pytest.raises(InputError, match="--shard"):
        Shard.parse(text)


def test_quiet_wait_re_times_loaded_samples(tmp_path, entries):
    class Meter:
        def __init__(self):
            self.loads = iter([2.0, 0.0])
            self.waits = 0

        def snapshot(self):
            return object()

        def load_since(self, start):
            return next(self.loads)

        def wait_for_quiet(self, **kwargs):
            self.waits += 1
            return 0.0

    meter = Meter()
    backend, store = open_store(tmp_path / "run", KERNELS[:1])
    options = SweepOptions(rule=FAST.rule, quiet_wait=True, isolation="none")
    run_sweep(entries[:1], KERNELS[:1], backend=backend, store=store, options=options, progress=False, meter=meter)
    frame = read_parts(tmp_path / "run")
    assert meter.waits == 2 and frame["load"].to_list() == [0.0]


class ScriptedBackend(CpuBackend):
    """A CPU backend whose timer returns scripted samples (ms) instead of timing the kernel."""

    def __init__(self, samples_ms):
        super().__init__(threads=1)
        self.samples_ms = samples_ms

    def timer(self, prepared):
        it = iter(self.samples_ms)
        return lambda: next(it)


@pytest.mark.parametrize(("samples", "rule"), [
    ([5.0, 4.0, 4.0, 6.0, 4.5, 5.5, 5.0], StoppingRule(warmup=1, min_samples=6, max_samples=6)),
    ([5.0, 4.0], StoppingRule(warmup=1, min_samples=1, max_samples=1)),
], ids=["six-samples", "one-sample"])
def test_rows_record_the_relative_standard_error_of_their_samples(tmp_path, entries, samples, rule):
    backend = ScriptedBackend(samples)
    identity = {"space": {"space": "test"}, "kernels": ["good"], "rule": {}, "seed": 0,
                "device_label": backend.device_label}
    store = RunStore.open(tmp_path / "run", identity, {})
    run_sweep(entries[:1], KERNELS[:1], backend=backend, store=store, options=SweepOptions(rule=rule, isolation="none"),
              progress=False)
    row = read_parts(tmp_path / "run").row(0, named=True)
    timed = samples[1:]  # the first is the warm-up
    assert row["samples"] == len(timed) and row["time_ms"] == pytest.approx(statistics.median(timed))
    if len(timed) > 1:
        assert row["time_rse"] == pytest.approx(median_rse(timed)) and row["time_rse"] > 0
    else:
        assert row["time_rse"] is None  # one sample: no estimate, not inf
