"""Score a selector on a runtime matrix, beside the oracle, static and random baselines.

The dataset may come from another device: its kernels are matched to the
model's vocabulary by name.  ``t_best`` is taken over *all* the dataset's
applicable kernels, including ones the model does not know (it cannot pick
them, and that is part of its score).  Problems where none of the applicable
kernels is known to the model cannot be scored: they are counted in
``skipped_problems``, never silently dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reformer.data import RuntimeMatrix, align_kernels
from reformer.metrics import (
    SelectionMetrics,
    argmax_applicable,
    first_applicable,
    oracle_picks,
    random_picks,
    selection_metrics,
)
from reformer.selector import Selector

BASELINES = ("oracle", "static", "random")


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """Metrics of a model and the baselines on one set of problems.

    Attributes:
        model: the selector's metrics.
        baselines: ``oracle``, ``static`` and ``random`` (seeded) metrics on the same problems.
        unknown_kernels: dataset kernels the model does not know.
        picks: the model's pick per scored problem, as a kernel name.
        scored: row positions (into the matrix) of the scored problems.
    """

    model: SelectionMetrics
    baselines: dict[str, SelectionMetrics]
    unknown_kernels: tuple[str, ...]
    picks: tuple[str, ...]
    scored: np.ndarray


def evaluate(selector: Selector, matrix: RuntimeMatrix, *, seed: int = 0) -> Evaluation:
    """Metrics of ``selector`` on every problem of ``matrix`` it can score (see module docstring)."""
    known_times, unknown = align_kernels(matrix, selector.kernels)
    extra = np.stack([matrix.time_ms[:, matrix.kernels.index(k)] for k in unknown], axis=1) if unknown else None
    scorable = ~np.isnan(known_times).all(axis=1)
    rows = np.flatnonzero(scorable)
    known_times = known_times[rows]
    # Columns: the model's vocabulary, then the unknown kernels (never picked, but part of t_best).
    all_times = known_times if extra is None else np.concatenate([known_times, extra[rows]], axis=1)
    known_applicable = ~np.isnan(known_times)
    probs = selector.probabilities(matrix.subset(rows).columns(), known_applicable)
    picks = argmax_applicable(probs, known_applicable)
    order = np.array([selector.kernels.index(k) for k in selector.trained.static_order], dtype=np.int64)
    static = first_applicable(order, known_applicable)
    skipped = int(len(scorable) - len(rows))
    baselines = {
        "oracle": selection_metrics(all_times, oracle_picks(all_times), static, skipped_problems=skipped),
        "static": selection_metrics(all_times, static, static, skipped_problems=skipped),
        "random": selection_metrics(all_times, random_picks(known_applicable, seed=seed), static, skipped_problems=skipped),
    }
    return Evaluation(
        model=selection_metrics(all_times, picks, static, skipped_problems=skipped),
        baselines=baselines,
        unknown_kernels=unknown,
        picks=tuple(selector.kernels[j] for j in picks),
        scored=rows,
    )
