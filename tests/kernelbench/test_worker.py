"""The measurement worker with real faults: hung kernels are killed (status timeout), crashing ones are errors,
and the sweep goes on with a fresh worker."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernelbench.backends import CpuBackend
from kernelbench.kernels.registry import all_kernels, select_kernels
from kernelbench.spaces import SpaceEntry
from kernelbench.store import RunStore, read_parts
from kernelbench.sweep import SweepOptions, run_sweep
from kernelbench.timing import StoppingRule
from kernelbench.worker import (
    PRELOAD,
    TIMED_OUT,
    UNLOADABLE,
    Done,
    Failure,
    Worker,
    kernel_message,
    signal_text,
)

from . import faulty_kernels as fk
from .helpers import problems

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S, GRACE_S = 0.3, 0.5
KILL_AFTER_S = TIMEOUT_S + GRACE_S
FAULTS = SweepOptions(rule=StoppingRule(warmup=1, min_samples=3, budget_s=0.05, timeout_s=TIMEOUT_S),
                      kill_grace_s=GRACE_S, flush_every_s=0)
REGISTRY = [k.name for k in all_kernels("cpu")]
(NUMPY,) = select_kernels("cpu", "numpy_im2col_gemm")


def entries(n=1):
    return [SpaceEntry(problem=p, network="test", layer=f"l{i}") for i, p in enumerate(problems(n))]


def sweep(tmp_path, kernels, n=1, options=FAULTS):
    backend = CpuBackend(threads=1)
    identity = {"space": {"space": "test"}, "kernels": [k.name for k in kernels], "rule": {}, "seed": 0,
                "device_label": backend.device_label}
    store = RunStore.open(tmp_path / "run", identity, {})
    summary = run_sweep(entries(n), kernels, backend=backend, store=store, options=options, progress=False)
    frame = read_parts(tmp_path / "run")
    return summary, {row["kernel"]: row for row in frame.iter_rows(named=True)}


def worker():
    return Worker(backend="cpu", threads=1, device_label=CpuBackend(threads=1).device_label)


def measure(w, kernel, entry):
    return w.measure(entry, kernel_message(kernel, REGISTRY), options=FAULTS, run_id="r",
                     step_limits_s=FAULTS.step_limits_s())


def gone(pid, within_s=10.0):
    """True once ``pid`` has exited (no /proc entry, or a zombie) within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_hung_kernels_are_recorded_as_timeout_and_the_next_kernels_are_measured(tmp_path):
    kernels = [fk.SLEEPS, fk.GOOD, fk.SPINS, fk.HANGS_IN_PREPARE, fk.HANGS_WHILE_TIMED, NUMPY]
    summary, rows = sweep(tmp_path, kernels)
    steps = {"sleeps_forever": "checked run", "spins_forever": "checked run", "hangs_in_prepare": "prepare",
             "hangs_while_timed": "timing"}
    for name, step in steps.items():
        assert rows[name]["status"] == "timeout", rows[name]
        assert rows[name]["error"] == (f"{step} did not finish within {KILL_AFTER_S:g} s (timeout_s {TIMEOUT_S:g} "
                                       f"+ kill_grace_s {GRACE_S:g}); the worker process was killed")
        assert rows[name]["time_ms"] is None
    for name in ("good", "numpy_im2col_gemm"):  # measured after a kill, by a fresh worker
        assert rows[name]["status"] == "ok" and rows[name]["time_ms"] > 0 and rows[name]["samples"] >= 3
    assert summary.status_counts == {"timeout": 4, "ok": 2}


def test_a_hang_is_killed_at_its_limit_and_a_fresh_worker_takes_the_next_kernel():
    entry = entries()[0]
    with worker() as w:
        assert isinstance(measure(w, fk.GOOD, entry), Done)  # the first start is not part of the clock below
        first_pid = w.pid
        started = time.monotonic()
        outcome = measure(w, fk.SPINS, entry)
        elapsed = time.monotonic() - started
        assert outcome == Failure(TIMED_OUT, "checked run", outcome.message) and "killed" in outcome.message
        assert KILL_AFTER_S <= elapsed < KILL_AFTER_S + 3.0, elapsed
        assert gone(first_pid) and w.pid is None
        after = measure(w, fk.GOOD, entry)
        assert isinstance(after, Done) and after.row["status"] == "ok"
        assert w.starts == 2 and w.pid != first_pid


def test_crashing_kernels_are_errors_with_the_signal_and_the_sweep_goes_on(tmp_path):
    summary, rows = sweep(tmp_path, [fk.SEGFAULTS, fk.GOOD, fk.EXITS, NUMPY])
    assert rows["segfaults"]["status"] == "error"
    assert rows["segfaults"]["error"] == "the worker process died (signal SIGSEGV) during checked run"
    assert rows["exits"]["status"] == "error"
    assert rows["exits"]["error"] == "the worker process died (exit status 3) during checked run"
    assert rows["good"]["status"] == rows["numpy_im2col_gemm"]["status"] == "ok"
    assert summary.status_counts == {"error": 2, "ok": 2}


def test_a_kernel_the_worker_cannot_load_is_an_error_and_the_worker_goes_on():
    entry = entries()[0]
    with worker() as w:
        outcome = measure(w, fk.UNLOADABLE, entry)
        assert outcome == Failure(UNLOADABLE, "idle", "the worker process cannot load the kernel: "
                                                      "RuntimeError: this kernel cannot be loaded here")
        assert isinstance(measure(w, fk.GOOD, entry), Done) and w.starts == 1


def test_one_worker_serves_every_kernel_and_problem_until_a_fault():
    first, second = entries(2)
    with worker() as w:
        outcomes = [measure(w, fk.GOOD, first), measure(w, NUMPY, first), measure(w, fk.GOOD, second)]
        assert all(isinstance(o, Done) and o.row["status"] == "ok" for o in outcomes)
        assert w.starts == 1
        assert [o.row["problem_id"] for o in outcomes] == [first.problem.problem_id] * 2 + [second.problem.problem_id]


def test_worker_rows_equal_in_process_rows_except_for_times(tmp_path):
    kernels = [fk.GOOD, NUMPY]
    _, worker_rows = sweep(tmp_path / "w", kernels, n=2)
    inproc = SweepOptions(rule=FAULTS.rule, flush_every_s=0, isolation="none")
    _, inproc_rows = sweep(tmp_path / "n", kernels, n=2, options=inproc)
    varying = {"time_ms", "time_ms_min", "time_ms_iqr", "time_rse", "measure_s", "samples", "load", "run_id"}
    for name in worker_rows:
        a = {k: v for k, v in worker_rows[name].items() if k not in varying}
        b = {k: v for k, v in inproc_rows[name].items() if k not in varying}
        assert a == b


def test_kernels_travel_by_pickle_or_by_registry_name():
    (onednn,) = select_kernels("cpu", "onednn_nchw")
    assert kernel_message(NUMPY, REGISTRY) == ("name", "numpy_im2col_gemm")  # built from closures
    assert kernel_message(onednn, REGISTRY)[0] == "pickle"
    assert kernel_message(fk.GOOD, REGISTRY)[0] == "pickle"
    closure = fk.kernel("local", lambda problem, inputs: None)
    with pytest.raises(ValueError, match="kernel 'local' cannot be sent to a worker process.*isolation='none'"):
        kernel_message(closure, REGISTRY)


def test_signal_text():
    assert signal_text(-signal.SIGSEGV) == "signal SIGSEGV"
    assert signal_text(-signal.SIGKILL) == "signal SIGKILL"
    assert signal_text(3) == "exit status 3"


def test_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="isolation='thread'"):
        SweepOptions(isolation="thread")
    with pytest.raises(ValueError, match="kill_grace_s"):
        SweepOptions(kill_grace_s=-1)
    with pytest.raises(ValueError, match="max_memory_gb"):
        SweepOptions(max_memory_gb=0)
    backend = CpuBackend(threads=1)
    store = RunStore.open(tmp_path / "run", {"space": {}, "kernels": [], "rule": {}, "seed": 0,
                                             "device_label": backend.device_label}, {})
    with pytest.raises(ValueError, match="meter"):
        run_sweep(entries(), [fk.GOOD], backend=backend, store=store, options=FAULTS, meter=object(), progress=False)


def test_the_fork_server_preloads_no_polars():
    """Importing polars starts threads; a fork server holding them would fork them in an unknown state."""
    code = f"import sys\nfor m in {list(PRELOAD)!r}: __import__(m)\nprint('polars' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


KILLED_SWEEP = """
import sys
from kernelbench.backends import CpuBackend
from kernelbench.spaces import SpaceEntry
from kernelbench.store import RunStore
from kernelbench.sweep import SweepOptions, run_sweep
from kernelbench.timing import StoppingRule
from tests.kernelbench import faulty_kernels as fk
from tests.kernelbench.helpers import problems

if __name__ == "__main__":
    backend = CpuBackend(threads=1)
    store = RunStore.open(sys.argv[1], {"space": {}, "kernels": [], "rule": {}, "seed": 0,
                                        "device_label": backend.device_label}, {})
    entry = SpaceEntry(problem=problems(1)[0], network="t", layer="l")
    run_sweep([entry], [fk.SPINS_AND_REPORTS], backend=backend, store=store, progress=False,
              options=SweepOptions(rule=StoppingRule(timeout_s=600)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_killed_or_interrupted_sweep_leaves_no_worker_spinning(tmp_path, sig):
    """SIGKILL: the worker notices its sweep is gone and kills itself.  SIGINT (Ctrl-C): the sweep kills its
    busy worker at once, instead of asking it to stop (which a spinning kernel never hears)."""
    script = tmp_path / "killed_sweep.py"
    script.write_text(KILLED_SWEEP)
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, fk.PID_FILE_ENV: str(pid_file), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # the first worker imports torch: slow on a loaded machine
        while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert pid_file.exists(), "the worker never reached the spinning kernel"
        worker_pid = int(pid_file.read_text())
        assert worker_pid != proc.pid and not gone(worker_pid, within_s=0.5)  # spinning
        proc.send_signal(sig)
        assert gone(worker_pid, within_s=3.0), "the worker outlived its sweep"
    finally:
        proc.kill()
        proc.wait()


def test_the_memory_limit_is_per_kernel_a_lean_kernel_is_measured_where_the_generic_bound_refuses(tmp_path):
    """A 7x7 stem with 64 outputs: kn2row's partial images (103 MB) dominate the generic bound, the
    inputs and reference take ~4 MB.  With a 50 MB limit the kernel without its own estimate is refused
    and the one that declares no workspace is measured, in the same sweep and worker."""
    from kernelbench.problem import memory_estimate, problem_2d
    from kernelbench.sweep import memory_refusal

    stem = problem_2d(batch=1, in_channels=1, out_channels=64, in_h=64, in_w=64, filter_h=7, filter_w=7,
                      pad_h=3, pad_w=3)
    assert memory_estimate(stem).peak_bytes > 100e6 > 5e6 > memory_estimate(stem, kernel_workspace_bytes=0).peak_bytes
    assert memory_refusal(stem, fk.LEAN, max_memory_gb=0.05) is None
    backend = CpuBackend(threads=1)
    store = RunStore.open(tmp_path / "run", {"space": {}, "kernels": [], "rule": {}, "seed": 0,
                                             "device_label": backend.device_label}, {})
    summary = run_sweep([SpaceEntry(problem=stem, network="t", layer="stem")], [fk.GOOD, fk.LEAN], backend=backend,
                        store=store, options=dataclasses.replace(FAULTS, max_memory_gb=0.05), progress=False)
    assert summary.status_counts == {"unavailable": 1, "ok": 1}
    rows = {row["kernel"]: row for row in read_parts(tmp_path / "run").iter_rows(named=True)}
    assert rows["lean"]["status"] == "ok" and rows["lean"]["error"] is None
    assert rows["good"]["status"] == "unavailable"
    assert rows["good"]["error"] == memory_refusal(stem, fk.GOOD, max_memory_gb=0.05)
    assert rows["good"]["error"].startswith("estimated peak memory 0.1 GB (inputs 0.0 GB")
    assert rows["good"]["error"].endswith("> max_memory_gb 0.05 GB")


def test_a_problem_too_big_for_memory_is_unavailable_and_the_worker_never_starts(tmp_path, monkeypatch):
    from kernelbench.problem import problem_2d

    def no_start(self):
        raise AssertionError("a worker was started for a problem over the memory limit")

    monkeypatch.setattr(Worker, "_start", no_start)
    huge = problem_2d(batch=2_000_000_000, in_channels=64, out_channels=64, in_h=56, in_w=56, filter_h=3,
                      filter_w=3, pad_h=1, pad_w=1)
    backend = CpuBackend(threads=1)
    store = RunStore.open(tmp_path / "run", {"space": {}, "kernels": [], "rule": {}, "seed": 0,
                                             "device_label": backend.device_label}, {})
    summary = run_sweep([SpaceEntry(problem=huge, network="t", layer="l")], [fk.GOOD, fk.SPINS], backend=backend,
                        store=store, options=FAULTS, progress=False)  # default limit: half the machine's memory
    assert summary.status_counts == {"unavailable": 2}
    errors = read_parts(tmp_path / "run")["error"].to_list()
    assert all(e.startswith("estimated peak memory ") and " > max_memory_gb " in e for e in errors), errors
