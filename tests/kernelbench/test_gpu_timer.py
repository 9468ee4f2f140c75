"""Event timer, L2 flush and stopping-rule integration, with fake CUDA events (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

from kernelbench.gpu.events import EventApi, event_timer
from kernelbench.gpu.l2 import DEFAULT_FLUSH_BYTES, L2Flusher, flush_bytes, flush_bytes_from_properties
from kernelbench.timing import StoppingRule, measure
from tests.kernelbench.cuda_harness.fakes import FakeEvent, FakeGpu


def test_event_timer_times_only_the_run_and_flushes_before_the_start_event():
    gpu = FakeGpu(kernel_ms=[1.5, 2.5])
    runs = iter(gpu.kernel_ms)
    time_one = event_timer(lambda: gpu.launch("run", next(runs)), api=gpu.api(),
                           before=lambda: gpu.launch("flush", 7.0))
    assert time_one() == pytest.approx(1.5)
    assert time_one() == pytest.approx(2.5)  # the 7 ms flush is never inside the interval
    assert gpu.log == ["flush", "record", "run", "record", "sync"] * 2


def test_event_timer_calls_after_once_per_sample_when_complete():
    gpu = FakeGpu(kernel_ms=[1.0])
    seen: list[bool] = []
    end_events: list[FakeEvent] = []

    def new_event() -> FakeEvent:
        event = FakeEvent(gpu)
        end_events.append(event)
        return event

    api = EventApi(new_event=new_event, elapsed_ms=gpu.elapsed_ms, stream=gpu.stream)
    time_one = event_timer(lambda: gpu.launch("run", 1.0), api=api, after=lambda: seen.append(end_events[1].synchronized))
    time_one()
    time_one()
    assert seen == [True, True]


def test_event_timer_propagates_kernel_errors():
    gpu = FakeGpu(kernel_ms=[])

    def failing() -> None:
        raise RuntimeError("cudaErrorIllegalAddress")

    with pytest.raises(RuntimeError, match="IllegalAddress"):
        event_timer(failing, api=gpu.api())()


def test_stopping_rule_runs_on_event_samples_with_untimed_warmup():
    # Warm-up absorbs a slow first run (compilation); then 1.0 ms +- tiny noise converges quickly.
    times = [250.0, 1.0] + [1.0 + 0.001 * (i % 3) for i in range(100)]
    gpu = FakeGpu(kernel_ms=times)
    runs = iter(times)
    flushes = []
    time_one = event_timer(lambda: gpu.launch("run", next(runs)), api=gpu.api(),
                           before=lambda: flushes.append(1))
    fake_clock = iter(range(1000)).__next__
    result = measure(time_one, rule=StoppingRule(warmup=2, min_samples=5, rse_target=0.02, budget_s=100),
                     clock=fake_clock)
    assert result.stop == "converged"
    assert len(result.samples_ms) == 5
    assert 250.0 not in result.samples_ms
    assert result.median_ms == pytest.approx(1.001)
    assert len(flushes) == 2 + 5  # every run, warm-up included, starts from a cold L2


def test_stopping_rule_budget_and_timeout_with_event_samples():
    noisy = [1.0, 3.0] * 50
    gpu = FakeGpu(kernel_ms=noisy)
    runs = iter(noisy)
    time_one = event_timer(lambda: gpu.launch("run", next(runs)), api=gpu.api())
    ticks = iter(np.arange(0, 100, 0.25)).__next__
    result = measure(time_one, rule=StoppingRule(warmup=0, min_samples=3, rse_target=1e-6, budget_s=1.0), clock=ticks)
    assert result.stop == "budget" and len(result.samples_ms) >= 3

    slow = iter([5000.0])
    gpu2 = FakeGpu(kernel_ms=[5000.0])
    timeout = measure(event_timer(lambda: gpu2.launch("run", next(slow)), api=gpu2.api()),
                      rule=StoppingRule(warmup=1, timeout_s=1.0))
    assert timeout.timed_out


@pytest.mark.parametrize(("l2", "expected"), [(40 * 2**20, 80 * 2**20), (50 * 2**20, 100 * 2**20), (0, DEFAULT_FLUSH_BYTES)])
def test_flush_size_is_twice_l2_or_a_safe_default(l2, expected):
    assert flush_bytes(l2) == expected
    assert flush_bytes_from_properties({"l2CacheSize": l2, "name": b"GPU"}) == expected
    assert flush_bytes_from_properties({}) == DEFAULT_FLUSH_BYTES


def test_flush_size_rejects_a_factor_below_one():
    with pytest.raises(ValueError):
        flush_bytes(1024, factor=0)


def test_l2_flusher_writes_its_whole_buffer_with_a_new_value_each_time():
    flusher = L2Flusher(4096, xp=np)
    flusher()
    first = flusher._buffer.copy()
    flusher()
    assert flusher.calls == 2 and flusher.nbytes == 4096 and flusher._buffer.size == 4096
    assert (first == 1).all() and (flusher._buffer == 2).all()
    with pytest.raises(ValueError):
        L2Flusher(0, xp=np)
