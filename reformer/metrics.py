"""Every selection metric and baseline picker, defined once.

On a set of problems with best time ``t_best`` (fastest applicable kernel),
the picked kernel's time ``t_pick`` and the static baseline's ``t_static``:

* ``top1``: fraction with ``t_pick == t_best`` (a tie with the fastest counts as a hit);
* ``within5``: fraction with ``t_pick <= 1.05 * t_best``;
* ``tie_top1`` (only for data whose rows record ``time_rse``, i.e. kernelbench sweeps): fraction whose pick is
  the fastest or a *near-tie* of it (:func:`kernelbench.timing.near_tie`: within ``max(TIE_FLOOR, 2 x combined
  time_rse)``, closer than a second sweep reproduces), so a coin-flip winner does not count as a miss;
* ``oracle_ratio``: geometric mean of ``t_best / t_pick`` (1 is perfect);
* ``sum_ratio``: ``Σ t_pick / Σ t_best`` (>= 1; total time lost when every problem runs once);
* ``mean_pick_ms``: mean of ``t_pick`` in ms;
* ``speedup_static_sum``: ``Σ t_static / Σ t_pick``; ``speedup_static_geomean``: geomean of ``t_static / t_pick``.

The static baseline orders kernels by their number of wins on the training
split and picks the first applicable one (:mod:`kernelbench.ranking`, re-exported here).

Two scoring protocols (docs/reformer.md):

* ``closed``: the picker chooses among the kernels *measured* for the problem
  (the keys above);
* ``open``: the picker ranks every *candidate* (reformer.candidates: what a
  caller knows without measuring) and its best-ranked candidate is the pick.
  ``open_hit_rate`` is the fraction of picks that were measured.  A pick that
  was not measured is charged the problem's *slowest measured* time: a lower
  bound on its real cost (it was slower than every recorded kernel, or did not
  apply at all), so ``open_oracle_ratio`` and ``open_sum_ratio`` are optimistic
  for misses.  ``open_top1`` and ``open_within5`` never count a miss.

Top-k (``topk`` / ``open_topk``): the best measured kernel among the first k
ranked is the pick ("predict, then measure k"); keys ``top1``, ``oracle_ratio``,
``sum_ratio``.  In the open protocol, k picks none of which was measured are a
miss, charged as above.
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
from kernelbench.timing import near_tie

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
#: Keys of the open protocol, beside :data:`METRIC_KEYS` in JSON outputs.
OPEN_METRIC_KEYS = ("open_hit_rate", "open_top1", "open_within5", "open_oracle_ratio", "open_sum_ratio")
#: Keys of one k in ``topk`` / ``open_topk``.
TOPK_KEYS = ("top1", "oracle_ratio", "sum_ratio")


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
    open_hit_rate: float = float("nan")
    open_top1: float = float("nan")
    open_within5: float = float("nan")
    open_oracle_ratio: float = float("nan")
    open_sum_ratio: float = float("nan")
    topk: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    open_topk: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    tie_top1: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Today's (closed) keys, then the open keys, then ``tie_top1``, ``topk`` / ``open_topk`` when computed."""
        out: dict[str, Any] = {k: getattr(self, k) for k in METRIC_KEYS + OPEN_METRIC_KEYS}
        if not np.isnan(self.tie_top1):
            out["tie_top1"] = self.tie_top1
        if self.topk:
            out["topk"] = self.topk
        if self.open_topk:
            out["open_topk"] = self.open_topk
        return out


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
    time_ms: np.ndarray, picks: np.ndarray, static_picks: np.ndarray, *, skipped_problems: int = 0,
    time_rse: np.ndarray | None = None,
) -> SelectionMetrics:
    """Metrics of ``picks`` (kernel column per problem) on ``time_ms`` ([n, k], NaN = not applicable).

    ``time_rse`` (shaped like ``time_ms``; NaN = unknown) adds ``tie_top1`` when some time records one.
    """
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
        tie_top1=float("nan") if time_rse is None or np.isnan(time_rse).all() else tie_top1(time_ms, time_rse, picks),
    )


def tie_top1(time_ms: np.ndarray, time_rse: np.ndarray, picks: np.ndarray) -> float:
    """Fraction of problems whose pick is the fastest kernel or a near-tie of it (``kernelbench.timing.near_tie``
    with both times' ``time_rse``; an unknown rse counts as 0, so the floor alone applies)."""
    rows = np.arange(len(picks))
    best = np.nanargmin(time_ms, axis=1)
    return float(np.mean(near_tie(time_ms[rows, picks], time_rse[rows, picks], time_ms[rows, best], time_rse[rows, best])))


def ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` highest scores per problem, best first; ``-1`` where fewer than ``k`` are finite
    (a score of ``-inf`` marks a kernel that is not offered)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    offered = np.isfinite(np.take_along_axis(scores, order, axis=1))
    return np.where(offered, order, -1)


def best_of_ranked(time_ms: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Per problem, the fastest measured time among the columns ``ranks`` [n, k] (``-1`` = none); NaN when none
    of them was measured."""
    rows = np.arange(len(ranks))[:, None]
    t = np.where(ranks >= 0, time_ms[rows, np.maximum(ranks, 0)], np.nan)
    out = np.full(len(ranks), np.nan)
    some = ~np.isnan(t).all(axis=1)
    out[some] = np.nanmin(t[some], axis=1)
    return out


def _ratios(t_best: np.ndarray, t_pick: np.ndarray) -> dict[str, float]:
    return {"oracle_ratio": float(np.exp(np.mean(np.log(t_best / t_pick)))),
            "sum_ratio": float(t_pick.sum() / t_best.sum())}


def ranking_metrics(time_ms: np.ndarray, scores: np.ndarray, *, open_protocol: bool,
                    top_ks: tuple[int, ...] = ()) -> dict[str, Any]:
    """Metrics of a ranking ``scores`` [n, k] (higher is better, ``-inf`` = not offered) on ``time_ms``.

    ``open_protocol`` False: the closed protocol, ``scores`` should offer only measured kernels, and the result
    holds ``topk`` for ``top_ks``.  True: the open protocol; the result holds the ``open_*`` keys and
    ``open_topk`` (see the module docstring for how a miss is charged).

    Raises:
        ValueError: closed protocol and a pick that was not measured.
    """
    t_best = np.nanmin(time_ms, axis=1)
    t_miss = np.nanmax(time_ms, axis=1)
    out: dict[str, Any] = {}
    topk: dict[str, dict[str, float]] = {}
    for k in sorted({1, *top_ks}):
        t = best_of_ranked(time_ms, ranked(scores, k))
        hit = ~np.isnan(t)
        if not open_protocol and not hit.all():
            raise ValueError(f"{int((~hit).sum())} pick(s) are not applicable to their problem")
        t = np.where(hit, t, t_miss)
        entry = {"top1": float(np.mean(hit & (t <= t_best))), **_ratios(t_best, t)}
        if k == 1 and open_protocol:
            out.update(open_hit_rate=float(hit.mean()), open_top1=entry["top1"],
                       open_within5=float(np.mean(hit & (t <= 1.05 * t_best))),
                       open_oracle_ratio=entry["oracle_ratio"], open_sum_ratio=entry["sum_ratio"])
        if k in top_ks:
            topk[str(k)] = entry
    if topk:
        out["open_topk" if open_protocol else "topk"] = topk
    return out


def with_ranking(metrics: SelectionMetrics, time_ms: np.ndarray, *, closed_scores: np.ndarray | None,
                 open_scores: np.ndarray | None, top_ks: tuple[int, ...] = ()) -> SelectionMetrics:
    """``metrics`` with the open-protocol keys (from ``open_scores``) and the top-k keys of both protocols."""
    extra: dict[str, Any] = {}
    if len(time_ms) == 0:
        return metrics
    if closed_scores is not None and top_ks:
        extra.update(ranking_metrics(time_ms, closed_scores, open_protocol=False, top_ks=top_ks))
    if open_scores is not None:
        extra.update(ranking_metrics(time_ms, open_scores, open_protocol=True, top_ks=top_ks))
    return dataclasses.replace(metrics, **extra)


def static_scores(order: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores that rank ``mask``'s kernels in the static ``order`` (``-inf`` outside the mask)."""
    rank = np.full(mask.shape[1], -np.inf)  # columns outside the order (kernels unknown to it) are never ranked
    rank[np.asarray(order)] = -np.arange(len(order), dtype=np.float64)
    return np.where(mask, rank, -np.inf)


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
