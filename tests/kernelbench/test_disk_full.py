"""A full disk and a read-only filesystem, injected for real on a small tmpfs: one-line errors, no
temporary files left behind; and the removal of temporary files that killed writers left."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli import kernelbench
from kernelbench import schema
from kernelbench.runlock import host_name
from kernelbench.shards import Shard
from kernelbench.store import RunStore

from .helpers import fill, mount_tmpfs, problems, remount_read_only, rows

IDENTITY = {"space": {"space": "smoke"}, "kernels": ["a"], "rule": {}, "device_label": "cpu:t:1t", "seed": 0}
DEVICE = {"device": {"name": "t", "padding": "x" * 2000}}  # part files of a few KiB, like a real device description
FAST = ["--kernels", "torch_default", "--threads", "1", "--budget-s", "0.02", "--warmup", "0", "--min-samples", "2",
        "--flush-every-s", "0", "--no-progress", "--device", "cpu"]


@pytest.fixture
def small_fs(tmp_path):
    mounted = []

    def make(size_kib: int, name: str = "fs"):
        path = tmp_path / name
        mounted.append(mount_tmpfs(path, size_kib=size_kib))
        return path

    yield make
    for unmount in reversed(mounted):
        unmount()


def finished_run(path, n_problems=3):
    with RunStore.open(path, IDENTITY, DEVICE) as store:
        store.write_part(rows({p: {"a": 1.0} for p in problems(n_problems)}, device="cpu:t:1t", run_id=store.run_id))
        store.finish_shard()
    return path


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and text in lines[-1], lines


def temp_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_export_onto_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, small_fs):
    run = finished_run(tmp_path / "run")
    fs = small_fs(256)
    out = fs / "d.parquet"
    assert CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(out)]).exit_code == 0
    before = out.read_bytes()
    finished_run(run)  # more rows: the new file is larger than the free space
    for i in range(3, 60):
        with RunStore.open(run, IDENTITY, DEVICE) as store:
            store.write_part(rows({problems(i + 1)[i]: {"a": 1.0}}, device="cpu:t:1t", run_id=store.run_id))
    fill(fs)
    result = CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(out)])
    one_line_error(result, f"cannot write {out}: No space left on device")
    assert out.read_bytes() == before and temp_files(fs) == []


def test_export_onto_a_read_only_filesystem_is_one_line(tmp_path, small_fs):
    run = finished_run(tmp_path / "run")
    fs = small_fs(64)
    remount_read_only(fs)
    result = CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(fs / "d.parquet")])
    one_line_error(result, f"cannot write {fs / 'd.parquet'}: Read-only file system")


@pytest.mark.slow
def test_a_sweep_that_fills_the_disk_stops_with_one_line_and_resumes_after(tmp_path, small_fs):
    fs = small_fs(2048)
    run = fs / "run"
    args = ["sweep", "--space", "smoke", "-o", str(run), *FAST]
    # Leave room for the manifest, the shard record and a few part files only.
    with open(fs / "filler", "wb") as fh:
        fh.write(b"\0" * (1984 * 1024))
    result = CliRunner().invoke(kernelbench, args)
    one_line_error(result, "No space left on device")
    assert temp_files(run) == [] and temp_files(run / "parts") == []
    stored = len(list((run / "parts").glob("part-*.parquet")))
    os.remove(fs / "filler")
    again = CliRunner().invoke(kernelbench, args)
    assert again.exit_code == 0, again.output
    assert stored >= 1 and f"({stored} already done)" in again.output


def test_a_sweep_on_a_read_only_filesystem_is_one_line(tmp_path, small_fs):
    fs = small_fs(64)
    remount_read_only(fs)
    result = CliRunner().invoke(kernelbench, ["sweep", "--space", "smoke", "-o", str(fs / "run"), *FAST])
    one_line_error(result, "Read-only file system")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_of_killed_writers_are_removed_on_the_next_start(tmp_path):
    host = host_name()
    dead, alive = dead_pid(), os.getppid()
    out = tmp_path / "d.parquet"
    leftovers = {
        f".d.parquet.{dead}@{host}.abcd1234.tmp": False,  # a killed export: removed
        f".d.parquet.{alive}@{host}.abcd1234.tmp": True,  # a live export's: kept
        f".d.parquet.{dead}@other-node.abcd1234.tmp": True,  # another host's, young: cannot tell, kept
        ".d.parquet.zzzz9999.tmp": True,  # an older kernelbench's, young: kept
        f".other.parquet.{dead}@{host}.abcd1234.tmp": True,  # another file's: not export's business
    }
    for name in leftovers:
        (tmp_path / name).write_bytes(b"x" * 1000)
    old = tmp_path / ".d.parquet.yyyy8888.tmp"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))  # older than a day: removed
    leftovers[old.name] = False
    run = finished_run(tmp_path / "run")
    assert CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(out)]).exit_code == 0
    assert set(temp_files(tmp_path)) == {name for name, kept in leftovers.items() if kept}

    # The store cleans its own directories when a sweep opens them.
    stale = run / "parts" / f".part-0of1-x.parquet.{dead}@{host}.abcd1234.tmp"
    stale.write_bytes(b"half a part")
    manifest_tmp = run / f".manifest.json.{dead}@{host}.abcd1234.tmp"
    manifest_tmp.write_bytes(b"{")
    RunStore.open(run, IDENTITY, DEVICE, shard=Shard()).close()
    assert not stale.exists() and not manifest_tmp.exists()


def test_atomic_write_names_its_temporary_file_after_the_writer(tmp_path):
    seen = []
    schema.atomic_write_bytes(tmp_path / "f.bin", lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"1")))
    assert seen[0].startswith(f".f.bin.{os.getpid()}@{host_name()}.") and seen[0].endswith(".tmp")
    assert (tmp_path / "f.bin").read_bytes() == b"1" and temp_files(tmp_path) == []
