"""Every selection metric and baseline picker, defined once.

On a set of problems with best time ``t_best`` (fastest applicable kernel),
the picked kernel's time ``t_pick`` and the static baseline's ``t_static``:

* ``top1``: fraction with ``t_pick == t_best`` (a tie with the fastest counts as a hit);
* ``within5``: fraction with ``t_pick <= 1.05 * t_best``;
* ``oracle_ratio``: geometric mean of ``t_best / t_pick`` (1 is perfect);
* ``sum_ratio``: ``Σ t_pick / Σ t_best`` (>= 1; total time lost when every problem runs once);
* ``mean_pick_ms``: mean of ``t_pick`` in ms;
* ``speedup_static_sum``: ``Σ t_static / Σ t_pick``; ``speedup_static_geomean``: geomean of ``t_static / t_pick``.

The static baseline orders kernels by their number of wins on the training
split and picks the first applicable one (:mod:`kernelbench.ranking`, re-exported here).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# The static rule is shared with ``kernelbench info``: defined there once, re-exported here.
from kernelbench.ranking import first_applicable as first_applicable
from kernelbench.ranking import oracle_picks as oracle_picks
from kernelbench.ranking import static_order as static_order

#: Keys of ``reformer evaluate --json`` and of each split in ``metrics.json``, in order.
METRIC_KEYS = (
    "top1",
    "within5",
    "oracle_ratio",
    "sum_ratio",
    "mean_pick_ms",
    "speedup_static_sum",
    "speedup_static_geomean",
    "n_problems",
    "skipped_problems",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectionMetrics:
    """The metrics of one picker on one set of problems (see the module docstring)."""

    top1: float
    within5: float
    oracle_ratio: float
    sum_ratio: float
    mean_pick_ms: float
    speedup_static_sum: float
    speedup_static_geomean: float
    n_problems: int
    skipped_problems: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in METRIC_KEYS}


def picked_times(time_ms: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """``time_ms[i, picks[i]]`` per problem.

    Raises:
        ValueError: a pick is a non-applicable (NaN) kernel, which a correct picker never returns.
    """
    t = time_ms[np.arange(len(picks)), picks]
    if np.isnan(t).any():
        raise ValueError(f"{int(np.isnan(t).sum())} pick(s) are not applicable to their problem")
    return t


def selection_metrics(
    time_ms: np.ndarray, picks: np.ndarray, static_picks: np.ndarray, *, skipped_problems: int = 0
) -> SelectionMetrics:
    """Metrics of ``picks`` (kernel column per problem) on ``time_ms`` ([n, k], NaN = not applicable)."""
    n = len(picks)
    if n == 0:
        nan = float("nan")
        return SelectionMetrics(
            top1=nan, within5=nan, oracle_ratio=nan, sum_ratio=nan, mean_pick_ms=nan,
            speedup_static_sum=nan, speedup_static_geomean=nan, n_problems=0, skipped_problems=skipped_problems,
        )  # fmt: skip
    t_best = np.nanmin(time_ms, axis=1)
    t_pick = picked_times(time_ms, picks)
    t_static = picked_times(time_ms, static_picks)
    return SelectionMetrics(
        top1=float(np.mean(t_pick <= t_best)),
        within5=float(np.mean(t_pick <= 1.05 * t_best)),
        oracle_ratio=float(np.exp(np.mean(np.log(t_best / t_pick)))),
        sum_ratio=float(t_pick.sum() / t_best.sum()),
        mean_pick_ms=float(t_pick.mean()),
        speedup_static_sum=float(t_static.sum() / t_pick.sum()),
        speedup_static_geomean=float(np.exp(np.mean(np.log(t_static / t_pick)))),
        n_problems=n,
        skipped_problems=skipped_problems,
    )


def random_picks(applicable: np.ndarray, *, seed: int) -> np.ndarray:
    """A uniformly random applicable kernel per problem (seeded)."""
    rng = np.random.default_rng(seed)
    noise = np.where(applicable, rng.random(applicable.shape), -1.0)
    return np.argmax(noise, axis=1)


def argmax_applicable(scores: np.ndarray, applicable: np.ndarray) -> np.ndarray:
    """Per problem, the applicable kernel with the highest score."""
    return np.argmax(np.where(applicable, scores, -np.inf), axis=1)


def latency_us(call: Callable[[], Any], *, repeats: int = 200, warmup: int = 20) -> dict[str, float]:
    """Wall time of ``call()`` in µs: ``{"p50": ..., "p99": ...}`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        call()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter_ns()
        call()
        samples[i] = (time.perf_counter_ns() - start) / 1e3
    return {"p50": float(np.percentile(samples, 50)), "p99": float(np.percentile(samples, 99))}
