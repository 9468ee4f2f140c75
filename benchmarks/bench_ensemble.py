"""Reformer and LightGBM together: does mixing their rankings beat each alone, in both protocols?

For a model directory and the dataset it was fitted on (the split is rebuilt from the model's config), this
fits the LightGBM baseline on the same training split and ranks every problem's candidates (the model's
candidate rule) by ``(1 − w) · log p_reformer + w · log p_lightgbm``, each a log-softmax over the candidates
(a kernel LightGBM has no class for gets
:data:`PROBABILITY_FLOOR`).  ``w`` runs over :data:`WEIGHTS`; the figures of
every ``w`` are printed for validation and test, and the ``w`` with the best validation open top-1 is
marked.  ``w = 0`` is the model alone, ``w = 1`` LightGBM alone (on the model's candidates).

An analysis of the open-set issue's targets (docs/reformer.md, "What limits the open oracle ratio"), not a
selector the CLI offers.

Usage::

    python benchmarks/bench_ensemble.py MODEL_DIR DATASET [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernelbench.errors import InputError  # noqa: E402
from reformer.baselines import LightGBMConfig, fit_lightgbm  # noqa: E402
from reformer.data import RuntimeMatrix, load_matrix  # noqa: E402
from reformer.evaluate import dataset_descriptors  # noqa: E402
from reformer.metrics import ranking_metrics  # noqa: E402
from reformer.selector import Selector  # noqa: E402
from reformer.splits import Split, recorded_split  # noqa: E402

#: Weights of LightGBM's log-probability.
WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)


def log_softmax_over(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """log of the scores' softmax over ``mask`` per row, floored at -1e6 (also off the mask), so that a mixture
    with weight 0 or 1 never multiplies an infinity."""
    masked = np.where(mask, scores, -np.inf)
    masked = masked - masked.max(axis=1, keepdims=True)
    return np.maximum(masked - np.log(np.exp(masked).sum(axis=1, keepdims=True)), -1e6)


#: The probability a kernel without a LightGBM class gets, instead of log 0, so that the mixture can still pick it.
PROBABILITY_FLOOR = 1e-6


def lightgbm_log_softmax(probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """LightGBM's class probabilities (``[n, n_kernels]``) as a log-softmax over ``mask``, floored at
    :data:`PROBABILITY_FLOOR` first (see :func:`log_softmax_over`)."""
    return log_softmax_over(np.log(np.maximum(probabilities, PROBABILITY_FLOOR)), mask)


def closed_metrics(time_ms: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Closed protocol (the pick among the measured kernels): top-1, oracle ratio (geometric mean) and
    Σ t_pick / Σ t_best."""
    return ranking_metrics(time_ms, np.where(np.isnan(time_ms), -np.inf, scores), open_protocol=False,
                           top_ks=(1,))["topk"]["1"]


def figures(time_ms: np.ndarray, candidates: np.ndarray, mixed: np.ndarray) -> dict[str, float]:
    """Open protocol over the candidates (with top-2), closed protocol over the measured kernels."""
    opened = ranking_metrics(time_ms, np.where(candidates, mixed, -np.inf), open_protocol=True, top_ks=(2,))
    closed = closed_metrics(time_ms, mixed)
    return {"open_hit_rate": opened["open_hit_rate"], "open_top1": opened["open_top1"],
            "open_oracle_ratio": opened["open_oracle_ratio"],
            "open_top2_oracle_ratio": opened["open_topk"]["2"]["oracle_ratio"],
            "top1": closed["top1"], "oracle_ratio": closed["oracle_ratio"], "sum_ratio": closed["sum_ratio"]}


def model_and_split(model_dir: str, dataset: str) -> tuple[Selector, RuntimeMatrix, Split]:
    """The model of ``model_dir``, the dataset it was fitted on, and its split rebuilt from the model's
    config.json.  Exits with one line when the dataset is not the model's (its split cannot be rebuilt)."""
    selector = Selector.load(model_dir)
    matrix = load_matrix(dataset)
    try:
        split = recorded_split(matrix.problems, selector.trained.info["split"])
    except InputError as exc:
        sys.exit(f"error: {exc}")
    return selector, matrix, split


def model_parser(doc: str) -> argparse.ArgumentParser:
    """The command line every model-and-dataset analysis here shares: MODEL_DIR DATASET [--json FILE]."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("dataset", help="the dataset the model was fitted on")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def scored_sides(selector: Selector, matrix: RuntimeMatrix,
                 split: Split) -> Iterator[tuple[str, RuntimeMatrix, dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Per side of the split ("validation", then "test"): its rows, their problem columns, the candidates of the
    model's rule and the model's logits ([n, n_kernels]), with the dataset's device descriptors where the model
    reads the device."""
    for name, rows in (("validation", split.validation), ("test", split.test)):
        part = matrix.subset(rows)
        columns = part.columns()
        descriptors = dataset_descriptors(part.metadata) if selector.reads_device else None
        candidates, _ = selector.candidates(columns, descriptors=descriptors)
        yield name, part, columns, candidates, selector.logits(columns, descriptors=descriptors)


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    args = parser.parse_args()
    selector, matrix, split = model_and_split(args.model_dir, args.dataset)
    if tuple(selector.kernels) != tuple(matrix.kernels):
        sys.exit("error: the model's kernel vocabulary is not the dataset's (fit the model on this dataset)")
    lightgbm = fit_lightgbm(matrix, split, LightGBMConfig(threads=args.threads)).selector
    out: dict[str, dict[str, dict[str, float]]] = {}
    for side_name, side, columns, candidates, logits in scored_sides(selector, matrix, split):
        reformer_lp = log_softmax_over(logits, candidates)
        lightgbm_lp = lightgbm_log_softmax(lightgbm.scores(columns, np.ones_like(candidates)), candidates)
        out[side_name] = {str(w): figures(side.time_ms, candidates, (1 - w) * reformer_lp + w * lightgbm_lp)
                          for w in WEIGHTS}
    chosen = max(WEIGHTS, key=lambda w: out["validation"][str(w)]["open_top1"])
    keys = ("open_hit_rate", "open_top1", "open_oracle_ratio", "open_top2_oracle_ratio", "top1", "oracle_ratio",
            "sum_ratio")
    print(f"{'side':<10} {'w':>5} " + " ".join(f"{k:>22}" for k in keys))
    for side_name, rows in out.items():
        for w, f in rows.items():
            mark = " <- chosen on validation" if float(w) == chosen else ""
            print(f"{side_name:<10} {w:>5} " + " ".join(f"{f[k]:>22.4f}" for k in keys) + mark)
    if args.json:
        Path(args.json).write_text(json.dumps({"chosen_weight": chosen, "figures": out}, indent=1))


if __name__ == "__main__":
    main()
