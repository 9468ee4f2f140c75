"""Run directories shared by concurrent processes: locks, SLURM job arrays, export of shard sets.

Every sweep here is a real process (``python -m cli sweep``), killed with SIGKILL where the test
says so.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cli import kernelbench
from kernelbench import schema
from kernelbench.runlock import host_name

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
name = "array"
[grid]
batch = [1, 2, 3]
in_channels = [4]
out_channels = [8]
in_hw = [10, 12, 14, 16]
filter = [3]
pad = [1]
"""
FAST = ["--kernels", "torch_default,onednn_nchw", "--threads", "1", "--budget-s", "0.1", "--rse", "1e-9",
        "--warmup", "0", "--min-samples", "2", "--flush-every-s", "0", "--no-progress", "--device", "cpu"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
             "RANK", "WORLD_SIZE"):
    ENV.pop(name, None)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import cli; cli.kernelbench()", *args]


def sweep(spec: Path, out: Path, *extra: str) -> list[str]:
    return cli("sweep", "--spec", str(spec), "-o", str(out), *FAST, *extra)


def in_process(*args: str):
    """The CLI in this process (no start-up cost) for the steps that are not the concurrent ones under test."""
    return CliRunner().invoke(kernelbench, list(args))


def array_env(task: int, count: int, low: int, high: int) -> dict[str, str]:
    return {**ENV, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high)}


def wait_for(condition, *, timeout_s: float = 120.0, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def lock_pid(path: Path) -> int | None:
    try:
        return json.loads(path.read_text()).get("pid")
    except (OSError, ValueError):
        return None


def exported_pairs(path: Path) -> list[tuple[str, str]]:
    frame, _ = schema.read_dataset(path)
    return sorted(zip(frame["problem_id"].to_list(), frame["kernel"].to_list()))


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "array.toml"
    path.write_text(SPEC)
    return path


@pytest.mark.slow
def test_two_sweeps_on_one_run_directory_the_second_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, spec):
    run = tmp_path / "run"
    slow = ("--budget-s", "0.4")  # the first sweep must outlive the second one's start (seconds of imports)
    first = subprocess.Popen(sweep(spec, run, *slow), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    wait_for(lambda: lock_pid(run / "shards" / "0of1.lock") == first.pid, what="the first sweep's lock")
    # Different options (the case of the issue: rows of a run the metadata did not list): refused, one line.
    second = subprocess.run(sweep(spec, run), cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert first.poll() is None, "the first sweep ended too early for this test"
    assert second.returncode == 2, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert lines[-1] == (f"Error: {run} is in use by pid {first.pid} on host {host_name()} (since "
                         f"{json.loads((run / 'shards' / '0of1.lock').read_text())['started']}); wait for it to "
                         "finish, or use another -o")
    assert "Traceback" not in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = in_process(*sweep(spec, run, *slow)[3:])
    assert third.exit_code == 0, third.output
    assert f"took over the lock of pid {first.pid} on host {host_name()}" in third.output
    export = in_process("export", str(run), "-o", str(tmp_path / "d.parquet"), "--keep-failed")
    assert export.exit_code == 0, export.output
    _, meta = schema.read_dataset(tmp_path / "d.parquet")
    assert {r["run_id"] for r in meta["runs"]} == {json.loads((run / "manifest.json").read_text())["run_id"]}


@pytest.mark.slow
def test_a_slurm_array_of_four_with_one_task_killed_and_resubmitted_exports_the_unsharded_pairs(tmp_path, spec):
    clean = in_process(*sweep(spec, tmp_path / "clean")[3:])
    assert clean.exit_code == 0, clean.output
    export = in_process("export", str(tmp_path / "clean"), "-o", str(tmp_path / "clean.parquet"), "--keep-failed")
    assert export.exit_code == 0, export.output
    expected = exported_pairs(tmp_path / "clean.parquet")
    assert len(expected) == 12 * 2

    run = tmp_path / "array"
    killed = 2  # shard 2 of 4: problems 2, 6, 10
    # sbatch --array=0-3: one command line for every task.
    tasks = {i: subprocess.Popen(sweep(spec, run, "--shard", "auto"), cwd=ROOT, env=array_env(i, 4, 0, 3),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)}
    wait_for(lambda: list((run / "parts").glob(f"part-{killed}of4-*.parquet")), what="a part of the task to kill")
    tasks[killed].send_signal(signal.SIGKILL)
    tasks[killed].wait()
    record = json.loads((run / "shards" / f"{killed}of4.json").read_text())
    assert record["finished"] is None, "the task finished before it was killed; the test needs a slower sweep"
    for i, proc in tasks.items():
        if i != killed:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err

    # Export refuses the incomplete set and says which shard is missing.
    refused = in_process("export", str(run), "-o", str(tmp_path / "d.parquet"))
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    message = refused.output.strip().splitlines()[-1]
    assert f"shard(s) {killed}/4 (started " in message and "not finished" in message and "--allow-partial" in message
    assert not (tmp_path / "d.parquet").exists()
    partial = in_process("export", str(run), "-o", str(tmp_path / "partial.parquet"), "--allow-partial",
                         "--keep-failed")
    assert partial.exit_code == 0, partial.output
    assert f"shard(s) {killed}/4 not finished" in partial.output
    _, meta = schema.read_dataset(tmp_path / "partial.parquet")
    assert meta["partial"] is True
    (shard_set,) = meta["shard_sets"]
    assert [m["shard"] for m in shard_set["missing"]] == [f"{killed}/4"]
    assert set(exported_pairs(tmp_path / "partial.parquet")) < set(expected)

    # Resubmitted alone (sbatch --array=2: a one-task array), the same command line runs shard 2 of 4.
    resubmitted = subprocess.run(sweep(spec, run, "--shard", "auto"), cwd=ROOT, env=array_env(killed, 1, killed, killed),
                                 capture_output=True, text=True)
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert f"(shard {killed}/4)" in resubmitted.stderr and "took over the lock of pid" in resubmitted.stderr
    done = in_process("export", str(run), "-o", str(tmp_path / "d.parquet"), "--keep-failed")
    assert done.exit_code == 0, done.output
    assert exported_pairs(tmp_path / "d.parquet") == expected
    frame, meta = schema.read_dataset(tmp_path / "d.parquet")
    assert meta["partial"] is False and meta["shard_sets"][0]["finished"] == ["0/4", "1/4", "2/4", "3/4"]
    assert {r["shard"] for r in meta["runs"]} == {"0/4", "1/4", "2/4", "3/4"}
    assert all(r["finished"] and r["versions"] for r in meta["runs"])
    assert sum(r["rows"] for r in meta["runs"]) == frame.height == len(expected)
    assert frame.filter(pl.col("status") == "ok").height == len(expected)


def test_shard_auto_outside_an_array_is_one_line(tmp_path):
    unset = {name: None for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE")}
    result = CliRunner().invoke(kernelbench, ["sweep", "--space", "smoke", "--shard", "auto", "-o", str(tmp_path / "r"),
                                              "--device", "cpu"], env=unset)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == ("Error: --shard auto: neither SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT "
                                     "(a SLURM job array) nor RANK/WORLD_SIZE (torchrun) is set; give --shard i/n")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_sigterm_of_a_time_limit_keeps_the_rows_measured_since_the_last_flush(tmp_path, spec):
    run = tmp_path / "run"
    # No flush before the end: without the SIGTERM handler every row would be lost.  In-process measuring, so
    # rows exist 2 s in (a worker process's first start can take longer than that on a loaded machine).
    proc = subprocess.Popen(sweep(spec, run, "--budget-s", "0.3", "--flush-every-s", "3600", "--isolation", "none"),
                            cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run / "shards" / "0of1.json").exists(), what="the sweep's start")
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "finished work is saved" in err
    parts = list((run / "parts").glob("part-*.parquet"))
    assert len(parts) == 1 and 0 < pl.read_parquet(parts[0]).height < 24
    assert json.loads((run / "shards" / "0of1.json").read_text())["finished"] is None
