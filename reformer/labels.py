"""Training targets: a distribution q over the applicable kernels of each problem.

For applicable kernels k with times t_k (ms):

* ``onehot``: q = 1 on the fastest kernel, split evenly between exact ties;
* ``softmax``: q_k proportional to exp(-t_k / tau), tau in ms;
* ``ratio``: q_k proportional to t_k^-gamma, so for gamma = 1, q_i / q_j = t_j / t_i.

When the times' ``time_rse`` is given (kernelbench sweeps), every formulation first takes the fastest kernel's
near-ties (:func:`kernelbench.timing.near_tie`) as ties: a difference a second sweep would not reproduce is
not taught (one-hot spreads its mass over them; a sharp ratio label, gamma = 8, would otherwise turn a 5 %
timing wobble into a 1.5x preference).

Non-applicable kernels (``NaN`` time) get q = 0.  Every row sums to 1.
"""

from __future__ import annotations

import numpy as np

from kernelbench.errors import InputError
from kernelbench.timing import near_tie

LABELS = ("onehot", "softmax", "ratio")


def targets(
    time_ms: np.ndarray,
    *,
    kind: str = "ratio",
    softmax_tau_ms: float = 1.0,
    ratio_power: float = 1.0,
    time_rse: np.ndarray | None = None,
) -> np.ndarray:
    """Target distributions, float32 ``[n_problems, n_kernels]``.

    ``time_ms`` is ``[n_problems, n_kernels]`` with ``NaN`` for non-applicable
    kernels; every row needs at least one applicable kernel.  ``time_rse`` (same shape, NaN = unknown; None:
    no row records one, as for imports) turns the fastest kernel's near-ties into ties, for every ``kind``.  Computed in log
    space relative to the fastest kernel, so sharp settings (small ``tau``,
    large ``gamma``) do not underflow to an all-zero row.

    Raises:
        InputError: unknown ``kind`` or a non-positive ``softmax_tau_ms`` / ``ratio_power``.
        ValueError: a row without any applicable kernel.
    """
    applicable = ~np.isnan(time_ms)
    if not applicable.any(axis=1).all():
        raise ValueError("every problem needs at least one applicable kernel")
    best = np.nanmin(time_ms, axis=1, keepdims=True)
    safe = np.where(applicable, time_ms, best)
    if time_rse is not None and not np.isnan(time_rse).all():
        best_rse = np.take_along_axis(time_rse, np.nanargmin(time_ms, axis=1)[:, None], axis=1)
        safe = np.where(applicable & near_tie(safe, time_rse, best, best_rse), best, safe)
    if kind == "onehot":
        score = np.where(safe == best, 0.0, -np.inf)
    elif kind == "softmax":
        if softmax_tau_ms <= 0:
            raise InputError(f"--softmax-tau must be > 0 ms, got {softmax_tau_ms}")
        score = -(safe - best) / softmax_tau_ms
    elif kind == "ratio":
        if ratio_power <= 0:
            raise InputError(f"--ratio-power must be > 0, got {ratio_power}")
        score = -ratio_power * (np.log(safe) - np.log(best))
    else:
        raise InputError(f"unknown label formulation {kind!r}; use one of {', '.join(LABELS)}")
    weight = np.where(applicable, np.exp(score), 0.0)
    return (weight / weight.sum(axis=1, keepdims=True)).astype(np.float32)
