"""What borrowing measured orders does for a device the model never saw (reformer/borrowed.py).

For each zero-shot model (a model fitted with one device held out, e.g. the ``models/`` of a
``reformer transfer`` report), score its held-out device's test split three ways:

* **model**: the model's ranking alone;
* **same architecture** (what ``reformer`` does): problems that a training device of the held-out device's
  architecture measured are ranked by that device's measured order first;
* **any architecture** (the counterfactual): the nearest training device of *any* architecture lends its order.

The test split is the transfer study's (the model's recorded split fractions and seed).  A model directory
without measured orders (fitted before they were kept) borrows the orders ``reformer fit`` would have kept:
every row of its training devices in DATASET.  Prints closed top-1 / oracle ratio / Σ t_pick / Σ t_best and
open top-1 / oracle ratio, and the share of test problems that borrowed.

Usage::

    python benchmarks/bench_borrowed.py all6.parquet MODEL_DIR [MODEL_DIR ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reformer.borrowed import borrow_scores, fit_measured_orders  # noqa: E402
from reformer.data import align_kernels  # noqa: E402
from reformer.device_features import dataset_descriptors  # noqa: E402
from reformer.evaluate import score_ranking  # noqa: E402
from reformer.selector import Selector  # noqa: E402
from reformer.store import load_model  # noqa: E402
from reformer.transfer import TransferOptions, load_transfer_data, target_splits  # noqa: E402

VARIANTS = {"model": None, "same architecture": False, "any architecture": True}
SHOWN = ("top1", "oracle_ratio", "sum_ratio", "open_top1", "open_oracle_ratio")


def score(dataset_matrix, model_dir: str) -> dict[str, object]:
    trained = load_model(model_dir)
    split = trained.info["split"]
    target = split["hold_out"]["device"][0]
    options = TransferOptions(seed=split["seed"], split_fractions=tuple(split["fractions"]))
    test = dataset_matrix.subset(target_splits(dataset_matrix, target, options).target.test)
    described = dataset_descriptors(dataset_matrix.metadata)
    kept = trained.measured is not None
    if not kept:
        trained = dataclasses.replace(trained, measured=fit_measured_orders(
            dataset_matrix.problems["problem_id"].to_list(), dataset_matrix.problems["device"].to_list(),
            align_kernels(dataset_matrix, trained.kernels)[0], training_devices=trained.info["devices"],
            described=described))
    selector = Selector(trained)
    columns_in = test.columns()
    logits = selector.logits(columns_in, descriptors=described if selector.reads_device else None)
    # The model's scores in the test side's kernel columns (kernels it does not know: never ranked).
    index = {k: j for j, k in enumerate(selector.kernels)}
    columns = np.array([index.get(k, -1) for k in test.kernels])
    order = np.array([test.kernels.index(k) for k in trained.static_order if k in test.kernels]
                     + [j for j, k in enumerate(test.kernels) if k not in trained.static_order])
    out: dict[str, object] = {"target": target, "test_problems": test.n_problems, "kept_orders": kept}
    for name, any_architecture in VARIANTS.items():
        scores, share = logits, 0.0
        if any_architecture is False:  # what the selector itself does
            scores, borrowed = selector.ranking_scores(columns_in, descriptors=described)
            share = borrowed.share
        elif any_architecture:
            scores, borrowed = borrow_scores(logits, columns_in["problem_id"], columns_in["device"], trained.measured,
                                             descriptors=selector.described(described), any_architecture=True)
            share = borrowed.share
        side_scores = np.where(columns >= 0, scores[:, np.maximum(columns, 0)], -np.inf)
        metrics = score_ranking(test, lambda side, mask: np.where(mask, side_scores, -np.inf), order=order,
                                rule=selector.rule)[0].as_dict()
        out[name] = {"borrowed_share": share, **{k: metrics[k] for k in SHOWN}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="the multi-device dataset the models were fitted on (e.g. all6.parquet)")
    parser.add_argument("models", nargs="+", help="model directories, each fitted with one device held out")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    matrix = load_transfer_data(args.dataset, None)
    rows = []
    print("target         variant            borrowed   top-1   oracle   Σ ratio   open top-1   open oracle")
    for model_dir in args.models:
        row = score(matrix, model_dir)
        rows.append({"model": model_dir, **row})
        for name in VARIANTS:
            m = row[name]
            print(f"{row['target']:<14} {name:<18} {m['borrowed_share']:>8.3f}   {m['top1']:.4f}   "
                  f"{m['oracle_ratio']:.4f}   {m['sum_ratio']:>7.3f}   {m['open_top1']:>10.4f}   "
                  f"{m['open_oracle_ratio']:>11.4f}", flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
