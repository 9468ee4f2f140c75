"""Locks on run directories, with real second processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernelbench.errors import InputError
from kernelbench.runlock import LockBusy, RunLock, host_name

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from kernelbench.runlock import RunLock
lock = RunLock.acquire(sys.argv[1], what="test")
print("locked", flush=True)
time.sleep(60)
"""


def holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path):
    path = tmp_path / "x.lock"
    proc = holder(path)
    try:
        with pytest.raises(LockBusy, match=rf"run dir is in use by pid {proc.pid} on host {host_name()} \(since "):
            RunLock.acquire(path, what="run dir")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel released the dead holder's lock; its record is still in the file and is reported.
    assert json.loads(path.read_text())["pid"] == proc.pid
    with RunLock.acquire(path, what="run dir") as lock:
        assert lock.previous["pid"] == proc.pid and lock.previous["host"] == host_name()
        assert json.loads(path.read_text())["pid"] == os.getpid()
    record = json.loads(path.read_text())
    assert record["released"]
    # A cleanly released lock is not reported as taken over.
    with RunLock.acquire(path, what="run dir") as lock:
        assert lock.previous is None


def test_a_lock_recorded_by_another_host_is_taken_over_and_reported(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"pid": 4242, "host": "other-node", "started": "2026-01-01T00:00:00+00:00"}))
    with RunLock.acquire(path, what="run dir") as lock:
        assert lock.previous["host"] == "other-node"


def test_waiting_acquire_gives_up_with_one_line(tmp_path):
    path = tmp_path / "x.lock"
    proc = holder(path)
    try:
        started = time.monotonic()
        with pytest.raises(InputError, match="in use by pid"):
            RunLock.acquire_waiting(path, what="run dir", wait_s=0.3)
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_the_same_process_reopening_takes_its_own_lock_over(tmp_path):
    first = RunLock.acquire(tmp_path / "x.lock", what="run dir")
    second = RunLock.acquire(tmp_path / "x.lock", what="run dir")
    assert second.previous is None
    first.release()  # the stale handle no longer releases anything
    proc = subprocess.run([sys.executable, "-c", "import sys; from kernelbench.runlock import RunLock; "
                           "RunLock.acquire(sys.argv[1], what='x')", str(tmp_path / "x.lock")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0 and "in use by pid" in proc.stderr
    second.release()
