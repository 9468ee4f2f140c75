"""Machine load: how much CPU *other* processes used while we were timing.

``load`` is measured in cores: 0.0 means the machine was otherwise idle, 1.0
means other processes (or the hypervisor, through steal time) kept one core
busy on average.  It is computed from ``/proc/stat`` (all CPUs' busy time)
minus this process's own CPU time (``os.times``), over wall time.  Where
``/proc/stat`` is missing the load is ``None`` (unknown), never a guess.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class CpuTimes:
    """A snapshot: wall clock (s), all CPUs' busy time (s), this process's CPU time (s)."""

    wall_s: float
    busy_s: float
    own_s: float


def read_proc_stat_busy_s(path: str | os.PathLike[str] = "/proc/stat") -> float | None:
    """All CPUs' busy time in seconds from a ``/proc/stat``-format file; None if it is missing or not that format."""
    try:
        with open(path) as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclasses.dataclass(frozen=True)
class LoadMeter:
    """Takes :class:`CpuTimes` snapshots; the readers are injectable for tests."""

    read_busy_s: Callable[[], float | None] = read_proc_stat_busy_s
    read_own_s: Callable[[], float] = _own_cpu_s
    clock: Callable[[], float] = time.monotonic

    def snapshot(self) -> CpuTimes | None:
        busy = self.read_busy_s()
        if busy is None:
            return None
        return CpuTimes(wall_s=self.clock(), busy_s=busy, own_s=self.read_own_s())

    def load_since(self, start: CpuTimes | None) -> float | None:
        """Other processes' CPU use since ``start``, in cores; None if unknown or too short to tell."""
        end = self.snapshot()
        if start is None or end is None:
            return None
        wall = end.wall_s - start.wall_s
        # /proc/stat counts in clock ticks (10 ms); shorter windows are noise.
        if wall < 0.05:
            return None
        other = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
        return max(0.0, other / wall)

    def wait_for_quiet(
        self,
        *,
        threshold_cores: float,
        max_wait_s: float,
        window_s: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float | None:
        """Sleep in ``window_s`` steps until other processes use < ``threshold_cores``, or ``max_wait_s`` passes.

        Returns the last measured load (cores), or None where load cannot be measured.
        """
        waited = 0.0
        load: float | None = None
        while waited < max_wait_s:
            start = self.snapshot()
            if start is None:
                return None
            sleep(window_s)
            waited += window_s
            load = self.load_since(start)
            if load is None or load < threshold_cores:
                return load
        return load
