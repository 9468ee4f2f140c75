import functools
import os
import time

import pytest

from kernelbench.load import LoadMeter, read_proc_stat_busy_s


class Fake:
    def __init__(self):
        self.wall = 0.0
        self.busy = 0.0
        self.own = 0.0

    def meter(self):
        return LoadMeter(read_busy_s=lambda: self.busy, read_own_s=lambda: self.own, clock=lambda: self.wall)


def test_load_excludes_our_own_cpu_time():
    f = Fake()
    m = f.meter()
    start = m.snapshot()
    f.wall, f.busy, f.own = 1.0, 1.5, 1.0  # we used 1 core-second, others 0.5
    assert m.load_since(start) == pytest.approx(0.5)


def test_unknown_load_is_none_not_a_guess():
    assert LoadMeter(read_busy_s=lambda: None).snapshot() is None
    f = Fake()
    m = f.meter()
    start = m.snapshot()
    f.wall = 0.01  # too short a window for /proc/stat's 10 ms ticks
    assert m.load_since(start) is None


def test_wait_for_quiet_returns_once_the_machine_is_quiet():
    f = Fake()
    loads = iter([0.9, 0.8, 0.1])

    def sleep(s):
        f.wall += s
        f.busy += next(loads) * s

    m = f.meter()
    assert m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, window_s=0.5, sleep=sleep) == pytest.approx(0.1)
    assert f.wall == pytest.approx(1.5)


def test_wait_for_quiet_gives_up_after_max_wait():
    f = Fake()

    def sleep(s):
        f.wall += s
        f.busy += 2 * s

    load = f.meter().wait_for_quiet(threshold_cores=0.3, max_wait_s=1.0, window_s=0.25, sleep=sleep)
    assert load == pytest.approx(2.0) and f.wall == pytest.approx(1.0)


def write_stat(path, user, idle, steal=0):
    # user nice system idle iowait irq softirq steal guest guest_nice (clock ticks), then a per-CPU line.
    path.write_text(f"cpu  {user} 5 10 {idle} 7 1 2 {steal} 0 0\ncpu0 {user} 5 10 {idle} 7 1 2 {steal} 0 0\n")


def test_proc_stat_busy_time_counts_every_busy_field_and_not_idle_or_iowait(tmp_path):
    tick = os.sysconf("SC_CLK_TCK")
    write_stat(tmp_path / "stat", user=300, idle=5000, steal=4)
    assert read_proc_stat_busy_s(tmp_path / "stat") == pytest.approx((300 + 5 + 10 + 1 + 2 + 4) / tick)
    (tmp_path / "other").write_text("intr 1 2 3\n")
    assert read_proc_stat_busy_s(tmp_path / "other") is None
    assert read_proc_stat_busy_s(tmp_path / "missing") is None


def test_load_from_a_controlled_proc_stat(tmp_path):
    """Two snapshots of a stat file 2 s apart: 3 busy core-seconds, 1 of them ours, so others used 1 core."""
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    clock, own = [10.0], [4.0]
    meter = LoadMeter(read_busy_s=functools.partial(read_proc_stat_busy_s, stat), read_own_s=lambda: own[0],
                      clock=lambda: clock[0])
    write_stat(stat, user=1000, idle=9000)
    start = meter.snapshot()
    write_stat(stat, user=1000 + 3 * tick, idle=9000 + tick)
    clock[0], own[0] = 12.0, 5.0
    assert meter.load_since(start) == pytest.approx(1.0)
    # Our own time above the machine's busy delta (tick rounding) is clamped to an idle machine, not negative.
    own[0] = 9.0
    assert meter.load_since(start) == 0.0


def test_real_proc_stat_gives_a_load_between_zero_and_the_core_count():
    m = LoadMeter()
    start = m.snapshot()
    if start is None:
        pytest.skip("no /proc/stat on this system")
    assert start.busy_s > 0  # the machine has been up and busy for some ticks
    time.sleep(0.2)
    load = m.load_since(start)
    # A wrong unit (ticks read as seconds) or a wrong field would land far outside [0, cores].
    assert isinstance(load, float) and 0.0 <= load <= (os.cpu_count() or 1) + 0.5


def test_a_quiet_machine_is_watched_without_sleeping_before_every_kernel():
    """After one quiet window, later waits judge the time since it (our own CPU excluded) instead of sleeping."""
    f = Fake()
    slept = []

    def sleep(s):
        slept.append(s)
        f.wall += s
        f.busy += 0.1 * s

    m = f.meter()
    assert m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, sleep=sleep) == pytest.approx(0.1)
    assert slept == [0.25]
    f.wall += 0.1
    f.busy += 0.1
    f.own += 0.1  # we timed a kernel for 0.1 s at one core: not load
    assert m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, sleep=sleep) == pytest.approx(0.1)  # window still open
    f.wall += 0.4
    f.busy += 0.8 + 0.05
    f.own += 0.8  # 0.5 s since the quiet window ended: 0.05 core-seconds were others' -> 0.1 cores
    assert m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, sleep=sleep) == pytest.approx(0.1)
    assert slept == [0.25]


def test_load_between_waits_sends_the_next_wait_back_to_sleeping():
    f = Fake()
    loads = iter([0.0, 0.0])

    def sleep(s):
        f.wall += s
        f.busy += next(loads) * s

    m = f.meter()
    m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, sleep=sleep)
    f.wall += 1.0
    f.busy += 1.5  # another process kept 1.5 cores busy since the last window
    assert m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, sleep=sleep) == pytest.approx(0.0)
    assert f.wall == pytest.approx(0.25 + 1.0 + 0.25)  # it slept one more (quiet) window
    f.wall += 0.1
    f.busy += 1.0  # inside a window that has not closed yet: the last verdict (quiet) stands
    assert m.wait_for_quiet(threshold_cores=0.3, max_wait_s=10, sleep=sleep) == pytest.approx(0.0)
