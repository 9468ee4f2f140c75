"""Score a selector on a runtime matrix, beside the oracle, static and random baselines.

The dataset may come from another device: its kernels are matched to the
model's vocabulary by name.  ``t_best`` is taken over *all* the dataset's
applicable kernels, including ones the model does not know (it cannot pick
them, and that is part of its score).  Problems where none of the applicable
kernels is known to the model cannot be scored: they are counted in
``skipped_problems``, never silently dropped.  On a device the model was not
trained on, the model's ranking includes the measured orders it borrows from a
training device of the same architecture (:mod:`reformer.borrowed`);
``Evaluation.borrowed`` says which problems did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from kernelbench.errors import InputError
from kernelbench.info import BASELINE_KERNELS
from reformer.borrowed import Borrowed
from reformer.candidates import CandidateRule
from reformer.data import RuntimeMatrix, align_kernels
from reformer.device_features import dataset_descriptors
from reformer.metrics import (
    SelectionMetrics,
    argmax_applicable,
    first_applicable,
    oracle_picks,
    selection_metrics,
    static_scores,
    with_ranking,
)
from reformer.selector import Selector

BASELINES = ("oracle", "static", "random")  # plus kernelbench.info.BASELINE_KERNELS where the dataset has them


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """Metrics of a model and the baselines on one set of problems.

    Attributes:
        model: the selector's metrics.
        baselines: ``oracle``, ``static``, ``random`` (seeded) and, where the dataset measured it,
            ``torch_default`` (what F.conv2d gives the user; the static pick where it has no time) on the same problems.
        unknown_kernels: dataset kernels the model does not know.
        picks: the model's pick per scored problem, as a kernel name.
        scored: row positions (into the matrix) of the scored problems.
        borrowed: per scored problem, the training device whose measured order it took (``""``: none).
    """

    model: SelectionMetrics
    baselines: dict[str, SelectionMetrics]
    unknown_kernels: tuple[str, ...]
    picks: tuple[str, ...]
    scored: np.ndarray
    borrowed: Borrowed


def _fixed_pick(column: int, fallback: np.ndarray, applicable: np.ndarray) -> np.ndarray:
    return np.where(applicable[:, column], column, fallback)


def fixed_first_scores(column: int, fallback_scores: np.ndarray) -> np.ndarray:
    """``fallback_scores`` with kernel ``column`` ranked first wherever it is offered (a fixed choice such as
    torch_default, then the fallback's order; the ablation's baseline uses the same rule)."""
    scores = fallback_scores.copy()
    scores[:, column] = 1.0  # above every static rank (<= 0): first wherever it is offered
    return scores


def model_devices(selector: Selector) -> tuple[str, ...]:
    """The device labels of the model's training problems (empty for a model that did not record them)."""
    info = selector.trained.info
    return tuple(info.get("devices") or (info.get("candidates") or {}).get("devices") or ())


def check_devices(selector: Selector, matrix: RuntimeMatrix, *, device_spec_given: bool = False) -> tuple[str, ...]:
    """The devices of ``matrix`` the model was not trained on; each must have a descriptor when every training
    device of the model has one: in kernelbench's table (:func:`kernelbench.devices.descriptor`), in the
    dataset's metadata (an import with ``--device-spec``), or given by ``--device-spec`` (``device_spec_given``).

    A model trained on described devices (MIOpen find-dbs, CUDA GPUs) scores a new device only as a described
    one; a CPU or synthetic model (no descriptors) scores any dataset, as before.

    Raises:
        InputError: a new device without a descriptor (one line, naming it).
    """
    from kernelbench.devices import descriptor, table, table_id
    from reformer.device_features import dataset_descriptors

    trained_on = model_devices(selector)
    new = tuple(d for d in matrix.devices if d not in trained_on)
    described = bool(trained_on) and all(table_id(d) in table() for d in trained_on)
    if described and not device_spec_given:
        in_metadata = dataset_descriptors(matrix.metadata)
        for device in new:
            if device not in in_metadata:
                descriptor(device)
    return new


def evaluate(selector: Selector, matrix: RuntimeMatrix, *, seed: int = 0, top_ks: tuple[int, ...] = ()) -> Evaluation:
    """Metrics of ``selector`` on every problem of ``matrix`` it can score (see module docstring), in both
    protocols (closed: among the measured kernels; open: ranking the model's candidates), with top-k for
    ``top_ks``.

    A model trained on several devices reads each problem's device: one it was not trained on is
    described by the selector's descriptors, the dataset's metadata or the package's table.

    Raises:
        InputError: no problem of ``matrix`` has a kernel the model knows (nothing to score), the model's
            candidate rule cannot place a problem (a direction it never saw), or it reads the device and a device
            has no descriptor.
    """
    known_times, unknown = align_kernels(matrix, selector.kernels)
    scorable = ~np.isnan(known_times).all(axis=1)
    rows = np.flatnonzero(scorable)
    if len(rows) == 0:
        raise InputError(f"none of the dataset's {matrix.n_problems:,} problems has a kernel the model knows, so "
                         f"there is nothing to score (the dataset's kernels: {', '.join(matrix.kernels) or 'none'}; "
                         f"the model's: {', '.join(selector.kernels)}): evaluate it on a dataset of the same library "
                         "and backend")
    known_times = known_times[rows]
    # Columns: the model's vocabulary, then the unknown kernels (never picked, but part of t_best); the times'
    # time_rse (near-ties, tie_top1) in the same order.
    columns_all = (*selector.kernels, *unknown)
    all_times = align_kernels(matrix, columns_all)[0][rows]
    all_rse = None if matrix.time_rse is None else align_kernels(matrix, columns_all, values=matrix.time_rse)[0][rows]
    pad = np.zeros((len(rows), all_times.shape[1] - known_times.shape[1]), dtype=bool)
    known_applicable = ~np.isnan(known_times)
    columns = matrix.subset(rows).columns()
    # A model that reads the device also finds the dataset's devices in its metadata (kernelbench import records them).
    described = dataset_descriptors(matrix.metadata)
    logits, borrowed = selector.ranking_scores(columns, descriptors=described)
    candidates = np.concatenate([selector.candidates(columns, descriptors=described)[0], pad], axis=1)
    measured = np.concatenate([known_applicable, pad], axis=1)
    picks = argmax_applicable(logits, known_applicable)
    order = np.array([selector.kernels.index(k) for k in selector.trained.static_order], dtype=np.int64)
    static = first_applicable(order, known_applicable)
    skipped = int(len(scorable) - len(rows))
    logits = np.concatenate([logits, np.full(pad.shape, -np.inf)], axis=1)
    noise = np.random.default_rng(seed).random(all_times.shape)
    oracle_scores = -np.where(np.isnan(all_times), np.inf, all_times)
    static_rank = static_scores(order, np.ones_like(measured))

    def scored(picked: np.ndarray, scores: np.ndarray) -> SelectionMetrics:
        metrics = selection_metrics(all_times, picked, static, skipped_problems=skipped, time_rse=all_rse)
        return with_ranking(metrics, all_times, closed_scores=np.where(measured, scores, -np.inf),
                            open_scores=np.where(candidates, scores, -np.inf), top_ks=top_ks)

    baselines = {
        # The oracle knows what was measured, so its open ranking is its closed one.
        "oracle": with_ranking(selection_metrics(all_times, oracle_picks(all_times), static, skipped_problems=skipped,
                                                 time_rse=all_rse),
                               all_times, closed_scores=oracle_scores, open_scores=oracle_scores, top_ks=top_ks),
        "static": scored(static, static_rank),
        # What the user gets without a selector (F.conv2d on the CPU), where the dataset measured it; problems
        # where it has no time fall back to the static pick, so the row is defined on every problem.
        **{name: scored(_fixed_pick(selector.kernels.index(name), static, known_applicable),
                        fixed_first_scores(selector.kernels.index(name), static_rank))
           for name in BASELINE_KERNELS if name in selector.kernels and known_applicable[:, selector.kernels.index(name)].any()},
        "random": scored(argmax_applicable(noise, measured), noise),
    }
    return Evaluation(
        model=scored(picks, logits),
        baselines=baselines,
        unknown_kernels=unknown,
        picks=tuple(selector.kernels[j] for j in picks),
        scored=rows,
        borrowed=borrowed,
    )


def score_ranking(side: RuntimeMatrix, scores: Callable[[RuntimeMatrix, np.ndarray], np.ndarray], *,
                  order: np.ndarray, rule: CandidateRule, top_ks: tuple[int, ...] = ()
                  ) -> tuple[SelectionMetrics, np.ndarray]:
    """Metrics of a ranking that is not a :class:`Selector` (a baseline, the lookup) in both protocols.

    ``scores(side, mask)`` ranks the kernels of ``side`` (higher is better) among ``mask`` (bool ``[n, k]``):
    it is asked once for the measured kernels (closed protocol: the best-ranked measured kernel is the pick)
    and once for ``rule``'s candidates (open protocol).  ``order`` is the static order (kernel columns) the
    static speed-ups are measured against.  Returns the metrics and the closed picks (kernel columns).
    """
    closed = scores(side, side.applicable)
    picks = argmax_applicable(closed, side.applicable)
    metrics = selection_metrics(side.time_ms, picks, first_applicable(order, side.applicable), time_rse=side.time_rse)
    candidates = rule.masks(side.columns(), side.kernels, descriptors=dataset_descriptors(side.metadata))[0]
    return with_ranking(metrics, side.time_ms, closed_scores=closed, open_scores=scores(side, candidates),
                        top_ks=top_ks), picks
