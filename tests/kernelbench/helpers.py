"""Builders of small, real datasets for tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from kernelbench.problem import ConvProblem, problem_2d


def problems(n: int) -> list[ConvProblem]:
    return [problem_2d(batch=1 + i % 3, in_channels=4 * (1 + i % 4), out_channels=8, in_h=8 + i, in_w=8 + i,
                       filter_h=3, filter_w=3, pad_h=1, pad_w=1) for i in range(n)]


def rows(times: Mapping[ConvProblem, Mapping[str, float | None]], *, device: str = "cpu:test:1t",
         run_id: str = "r1", samples: int = 5) -> list[dict]:
    """Dataset rows: ``times[problem][kernel]`` in ms, or None for a failed (error) row."""
    out = []
    for problem, by_kernel in times.items():
        for kernel, t in by_kernel.items():
            row = problem.as_row()
            row.update(kernel=kernel, algorithm="direct", status="ok" if t is not None else "error",
                       error=None if t is not None else "boom", time_ms=t, time_ms_min=t, time_ms_iqr=0.0 if t else None,
                       samples=samples, device=device, source="test", run_id=run_id)
            out.append(row)
    return out


def frame(rows_: Iterable[dict]) -> pl.DataFrame:
    from kernelbench import schema

    return schema.conform(pl.DataFrame(list(rows_), schema_overrides=schema.POLARS_SCHEMA, infer_schema_length=None))


def mount_tmpfs(path, *, size_kib: int, read_only: bool = False):
    """Mount a ``size_kib`` tmpfs on ``path`` (made if missing), or ``pytest.skip`` where mounting is not allowed.

    Disk-full and read-only faults are injected for real with it: tests run as root, for whom
    ``chmod`` does not stop writes.  Returns a function that unmounts it.
    """
    import os
    import subprocess

    import pytest

    os.makedirs(path, exist_ok=True)
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return lambda: subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory) -> None:
    """Write a file into ``directory`` until its filesystem is full (ENOSPC)."""
    import errno
    import os

    with open(os.path.join(directory, "filler"), "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 1024)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def remount_read_only(path) -> None:
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


#: A 6-problem grid spec for quick CLI sweeps (the problems' kernels run in milliseconds).
TINY_SPEC = """
name = "tiny"
[grid]
batch = [1, 2]
in_channels = [4]
out_channels = [8]
in_hw = [10, 12, 14]
filter = [3]
pad = [1]
"""
