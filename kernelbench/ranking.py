"""The static order: kernels ranked by wins, the one rule ``kernelbench info`` and ``reformer`` share.

A *win* is a problem on which the kernel is the fastest applicable one (the
first column among exact ties).  The static order sorts kernels by wins, most
first; ties are broken by how many problems the kernel applies to (more
first), then by column.  The static baseline picks, per problem, the first
kernel of that order that applies.

Everything works on a dense runtime matrix ``time_ms[problem, kernel]``
(float, NaN = not applicable).  ``kernelbench info`` builds it with kernels
sorted by name, as ``reformer.data.pivot`` does, so both break ties the same way.
``reformer.metrics`` re-exports these functions.
"""

from __future__ import annotations

import numpy as np


def oracle_picks(time_ms: np.ndarray) -> np.ndarray:
    """The fastest applicable kernel column per problem (the first column among exact ties)."""
    return np.argmin(np.where(np.isnan(time_ms), np.inf, time_ms), axis=1)


def static_order(time_ms: np.ndarray) -> np.ndarray:
    """Kernel columns ordered by wins (problems where the kernel is fastest), most first.

    Ties are broken by how many problems the kernel applies to, then by column.
    """
    k = time_ms.shape[1]
    wins = np.bincount(oracle_picks(time_ms), minlength=k)
    applies = (~np.isnan(time_ms)).sum(axis=0)
    return np.lexsort((np.arange(k), -applies, -wins))


def first_applicable(order: np.ndarray, applicable: np.ndarray) -> np.ndarray:
    """Per problem, the first kernel of ``order`` that applies.  Rows without one get -1."""
    ranked = applicable[:, order]
    first = np.argmax(ranked, axis=1)
    return np.where(ranked.any(axis=1), np.asarray(order)[first], -1)
