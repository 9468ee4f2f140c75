"""Adaptive timing: warm up, then sample until the median is known well enough.

The stopping rule is backend-neutral.  A backend supplies ``time_one()``, which
runs the kernel once and returns the elapsed time of that run in milliseconds
(host clock around the call on the CPU, CUDA events on the GPU).  The rule's
wall-time budget is measured with an injectable ``clock`` so it can be tested
with a fake one.

Statistics are always computed from the stored samples (:class:`Measurement`
keeps only the samples), never accumulated separately.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: sqrt(pi / 2): asymptotic ratio of the standard error of the median to that of the mean (normal data).
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)
#: IQR / 1.349 estimates the standard deviation of normal data, robustly to outliers.
_IQR_TO_SIGMA = 1.0 / 1.349


@dataclasses.dataclass(frozen=True)
class StoppingRule:
    """When to stop sampling one kernel.

    Attributes:
        warmup: untimed runs before sampling (absorb lazy allocation, caches, compilation).
        min_samples: never stop with fewer samples.
        max_samples: always stop at this many samples.
        rse_target: stop once the relative standard error of the median is at most this (0.02 = 2 %).
        budget_s: stop once this much wall time (seconds, measured by the clock) has been spent
            sampling, even if the target was not reached; ``min_samples`` still applies unless a
            single sample exceeds ``timeout_s``.
        timeout_s: a single run longer than this ends the measurement with ``timed_out``.
    """

    warmup: int = 2
    min_samples: int = 5
    max_samples: int = 200
    rse_target: float = 0.02
    budget_s: float = 1.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_samples < 1 or self.max_samples < self.min_samples:
            raise ValueError("need warmup >= 0 and 1 <= min_samples <= max_samples")
        if not (self.rse_target > 0 and self.budget_s > 0 and self.timeout_s > 0):
            raise ValueError("rse_target, budget_s and timeout_s must be > 0")


def median_rse(samples_ms: Sequence[float]) -> float:
    """Relative standard error of the median: ``sqrt(pi/2) * sigma / sqrt(n) / median``.

    ``sigma`` is estimated from the IQR (robust to the occasional preempted run).
    Returns ``inf`` for fewer than 2 samples or a non-positive median.
    """
    n = len(samples_ms)
    if n < 2:
        return math.inf
    med = statistics.median(samples_ms)
    if med <= 0:
        return math.inf
    sigma = iqr(samples_ms) * _IQR_TO_SIGMA
    return _MEDIAN_SE_FACTOR * sigma / math.sqrt(n) / med


def iqr(samples: Sequence[float]) -> float:
    """Interquartile range (same unit as the samples); 0 for fewer than 2 samples."""
    if len(samples) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q3 - q1


#: Relative difference below which two medians are a tie whatever their samples say: the run-to-run
#: reproducibility of CPU medians (between sweeps, processes and hours), which is larger than the
#: sampling error one sweep sees.  Set to the p90 of the difference between two sweeps' medians of the same
#: (problem, kernel) on a quiet machine at one thread (``benchmarks/bench_harness_agreement.py``; figures in
#: docs/cpu-timing.md), so that about nine in ten re-measurements of one kernel count as a tie with it.
TIE_FLOOR = 0.08
#: Two medians are also a tie while they are fewer than this many combined standard errors apart.
TIE_Z = 2.0


def tie_tolerance(rse_a: Any, rse_b: Any) -> Any:
    """Relative tolerance of a comparison of two medians: ``max(TIE_FLOOR, TIE_Z * hypot(rse_a, rse_b))``.

    ``rse_*`` are the rows' ``time_rse`` (floats or numpy arrays); a missing one (None or NaN, e.g.
    imported data) counts as 0, so the floor alone applies.
    """
    a = np.nan_to_num(np.asarray(rse_a, dtype=float), nan=0.0, posinf=np.inf)
    b = np.nan_to_num(np.asarray(rse_b, dtype=float), nan=0.0, posinf=np.inf)
    return np.maximum(TIE_FLOOR, TIE_Z * np.hypot(a, b))


def near_tie(t_a: Any, rse_a: Any, t_b: Any, rse_b: Any) -> Any:
    """Whether two measured medians cannot be told apart: ``max(t) / min(t) <= 1 + tie_tolerance(rse_a, rse_b)``.

    The one near-tie rule of the project (``kernelbench info``; ``reformer`` uses the same). Works on
    floats (returns a bool) and on numpy arrays of equal shape (returns a bool array).
    Times must be > 0 (ms; any unit as long as both are the same).
    """
    ta, tb = np.asarray(t_a, dtype=float), np.asarray(t_b, dtype=float)
    tie = np.maximum(ta, tb) <= np.minimum(ta, tb) * (1.0 + tie_tolerance(rse_a, rse_b))
    return bool(tie) if tie.ndim == 0 else tie


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The samples of one kernel and why sampling stopped.

    ``stop`` is ``converged`` (RSE target reached), ``budget`` (time budget spent),
    ``max_samples``, or ``timed_out`` (one run exceeded the timeout).
    """

    samples_ms: tuple[float, ...]
    stop: str

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        return iqr(self.samples_ms)

    @property
    def rse(self) -> float:
        return median_rse(self.samples_ms)

    @property
    def timed_out(self) -> bool:
        return self.stop == "timed_out"


def measure(
    time_one: Callable[[], float],
    *,
    rule: StoppingRule = StoppingRule(),
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Warm up, then sample ``time_one()`` (milliseconds per run) under ``rule``.

    ``clock`` (seconds) measures the time budget only; the samples come from ``time_one``.
    Exceptions from ``time_one`` propagate (the caller records status ``error``).
    """
    for _ in range(rule.warmup):
        warm_ms = time_one()
        if warm_ms > rule.timeout_s * 1e3:
            return Measurement((warm_ms,), "timed_out")
    samples: list[float] = []
    start = clock()
    while True:
        sample_ms = time_one()
        samples.append(sample_ms)
        if sample_ms > rule.timeout_s * 1e3:
            return Measurement(tuple(samples), "timed_out")
        n = len(samples)
        if n >= rule.max_samples:
            return Measurement(tuple(samples), "max_samples")
        if n < rule.min_samples:
            continue
        if median_rse(samples) <= rule.rse_target:
            return Measurement(tuple(samples), "converged")
        if clock() - start >= rule.budget_s:
            return Measurement(tuple(samples), "budget")


def host_timer(
    run: Callable[[], object],
    *,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] | None = None,
    min_sample_ms: float = 1.0,
    max_inner: int = 1000,
) -> Callable[[], float]:
    """``time_one`` for a synchronous backend: ``clock`` (seconds) around ``run()`` (+ ``sync()``), in ms per run.

    The first call times a single run and fixes how many runs later samples average
    (``inner``, at most ``max_inner``) so that one sample lasts at least ``min_sample_ms``:
    a kernel of a few microseconds timed one call at a time is dominated by clock and
    interpreter jitter.  Every sample is still reported per run.  The first call falls in
    the stopping rule's warm-up unless ``warmup`` is 0.
    """
    inner = 0

    def once(n: int) -> float:
        start = clock()
        for _ in range(n):
            run()
        if sync is not None:
            sync()
        return (clock() - start) * 1e3

    def time_one() -> float:
        nonlocal inner
        if not inner:
            first_ms = once(1)
            inner = max_inner if first_ms <= 0 else max(1, min(max_inner, math.ceil(min_sample_ms / first_ms)))
            return first_ms
        return once(inner) / inner

    return time_one
