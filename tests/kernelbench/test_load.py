import pytest

from kernelbench.load import LoadMeter


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


def test_real_proc_stat_gives_a_nonnegative_load():
    m = LoadMeter()
    start = m.snapshot()
    if start is None:
        pytest.skip("no /proc/stat on this system")
    import time

    time.sleep(0.1)
    load = m.load_since(start)
    assert load is None or load >= 0
