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


class _Watch:
    """The window a :class:`LoadMeter` is watching: where it started and whether the last one was quiet."""

    def __init__(self) -> None:
        self.since: CpuTimes | None = None
        self.quiet_load: float | None = None  # the last window's load if it was quiet, else None


@dataclasses.dataclass(frozen=True)
class LoadMeter:
    """Takes :class:`CpuTimes` snapshots; the readers are injectable for tests.

    The meter also remembers the window :meth:`wait_for_quiet` last judged, so that on a
    quiet machine back-to-back waits cost no sleep (see there).
    """

    read_busy_s: Callable[[], float | None] = read_proc_stat_busy_s
    read_own_s: Callable[[], float] = _own_cpu_s
    clock: Callable[[], float] = time.monotonic
    _watch: _Watch = dataclasses.field(default_factory=_Watch, init=False, repr=False, compare=False)

    def snapshot(self) -> CpuTimes | None:
        busy = self.read_busy_s()
        if busy is None:
            return None
        return CpuTimes(wall_s=self.clock(), busy_s=busy, own_s=self.read_own_s())

    def load_since(self, start: CpuTimes | None) -> float | None:
        """Other processes' CPU use since ``start``, in cores; None if unknown or too short to tell."""
        end = self.snapshot()
        return _load_between(start, end)

    def wait_for_quiet(
        self,
        *,
        threshold_cores: float,
        max_wait_s: float,
        window_s: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float | None:
        """Return once other processes use < ``threshold_cores``, or after ``max_wait_s`` of waiting.

        The load is watched continuously, in windows of at least ``window_s`` seconds that
        start where the previous call's window ended.  Our own CPU time is not load, so the
        kernels timed between two calls do not count against the machine.  A call returns at
        once when the window it closes (at least ``window_s`` long) was quiet, or when the
        previous window was quiet and the current one is still shorter than ``window_s``;
        otherwise it sleeps in ``window_s`` steps until a window is quiet.  The first call
        always sleeps one window.  Why: a fixed sleep before every kernel cost 0.25 s per
        kernel, most of a sweep of small problems.

        Returns the load (cores) of the last window judged, or None where load cannot be measured.
        """
        watch = self._watch
        now = self.snapshot()
        if now is None:
            return None
        if watch.since is not None:
            if now.wall_s - watch.since.wall_s < window_s:
                if watch.quiet_load is not None:
                    return watch.quiet_load
            else:
                load = _load_between(watch.since, now)
                watch.since = now
                if load is not None and load < threshold_cores:
                    watch.quiet_load = load
                    return load
        waited = 0.0
        load = None
        while waited < max_wait_s:
            start = self.snapshot()
            if start is None:
                return None
            sleep(window_s)
            waited += window_s
            end = self.snapshot()
            load = _load_between(start, end)
            watch.since = end
            if load is None or load < threshold_cores:
                break
        watch.quiet_load = load if load is not None and load < threshold_cores else None
        return load


def _load_between(start: CpuTimes | None, end: CpuTimes | None) -> float | None:
    """Other processes' CPU use between two snapshots, in cores; None if unknown or too short to tell."""
    if start is None or end is None:
        return None
    wall = end.wall_s - start.wall_s
    # /proc/stat counts in clock ticks (10 ms); shorter windows are noise.
    if wall < 0.05:
        return None
    other = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return max(0.0, other / wall)
