"""The lookup baseline: the same problem's fastest kernel on the nearest measured device.

The simplest answer for a device nobody has trained on: most libraries measure
the same configurations on every GPU, so look the problem up on the devices
that were measured and take the winner of the *nearest* one, by
:func:`kernelbench.devices.distance` between their descriptors (normalised
log specifications).  As a ranking (what the metrics of both protocols need):
the source device's measured kernels by their time there, fastest first, then
every other kernel in the static order.  A problem no source device measured
falls back to the static order alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from reformer.borrowed import MeasuredOrders, borrow_scores
from reformer.data import RuntimeMatrix


@dataclasses.dataclass(frozen=True, eq=False)
class Lookup:
    """The lookup ranking of some target problems.

    Attributes:
        scores: float ``[n, n_kernels]``, higher is better, every kernel finite (mask it per protocol).
        source: per problem, the device label its ranking came from (``""``: none had it; static order).
    """

    scores: np.ndarray
    source: tuple[str, ...]

    @property
    def coverage(self) -> float:
        """Share of the problems some source device measured."""
        return float(np.mean([s != "" for s in self.source])) if self.source else float("nan")


def lookup(sources: RuntimeMatrix, targets: RuntimeMatrix, order: np.ndarray, *,
           distance: Callable[[str, str], float] | None = None) -> Lookup:
    """The lookup ranking of ``targets``' problems from the measurements of ``sources`` (same kernel columns).

    Per target problem (a ``problem_id`` on a device), the source rows with the same ``problem_id`` on another
    device are candidates; the one whose device is nearest to the target's device
    (:func:`kernelbench.devices.nearest_first`; ``distance(target, source)`` between labels replaces the
    descriptors' distance when given) gives the ranking.  ``order`` is the static order (kernel columns) used
    below the source's measured kernels and for problems no source has.

    Raises:
        InputError: a device label without a descriptor (without ``distance``).
    """
    k = len(targets.kernels)
    if tuple(sources.kernels) != tuple(targets.kernels):
        raise ValueError("sources and targets must have the same kernel columns")
    static_rank = np.empty(k)
    static_rank[np.asarray(order)] = np.arange(k, dtype=np.float64)
    static = np.broadcast_to(-static_rank, (targets.n_problems, k))
    orders = MeasuredOrders.from_times(sources.problems["problem_id"].to_list(), sources.problems["device"].to_list(),
                                       sources.time_ms)
    scores, borrowed = borrow_scores(static, targets.problems["problem_id"].to_list(),
                                     targets.problems["device"].to_list(), orders, any_architecture=True,
                                     distance_of=distance)
    return Lookup(scores=scores, source=borrowed.source)
