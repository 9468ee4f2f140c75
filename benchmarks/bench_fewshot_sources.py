"""Few-shot on a new GPU: do the other devices' measurements of the same problem help a model trained on a few
of the target's problems?

The transfer study (``reformer transfer``) fine-tunes the sources' model on a sample of the target's training
split.  Issue 17's few-shot target (10 % of gfx90a6e's problems: top-1 within 0.01 of a LightGBM trained on
100 %, oracle ratio and Σ at least as good) is missed by that fine-tuning.  This script measures other uses
of the same data, on the study's split and sample (:func:`reformer.transfer.target_splits`,
:func:`reformer.splits.sample_train`, seed 0), scored on the target's test split (closed protocol):

* **LightGBM, problem features** (the study's LightGBM cell, :func:`reformer.baselines.boost_winners` on
  :class:`reformer.baselines.FlatFeatures`);
* **LightGBM, + sources' measurements**: the same, plus, per source device (nearest first), every kernel's
  ``log(t / t_best)`` on that device for the same ``problem_id`` and ``log t_best`` (missing where the source did
  not measure the problem or the kernel).  Legitimate at deployment: the sources were measured, the target's
  test problems were not;
* with ``--ensemble MODEL_DIR``, an **ensemble** of that Reformer (the fine-tuned model of the same sample, e.g.
  ``reformer fit TARGET.parquet --init ZERO_SHOT_MODEL --train-fraction 0.1 --lr 0.001``) and LightGBM + sources:
  ``(1 − w) · log p_reformer + w · log p_lightgbm`` over the measured kernels, w chosen on validation top-1;
* with ``--joint``, **Reformer trained jointly** from scratch on the sources' training rows plus the target's
  sample (the study's fit settings, early stopping on the target's validation split; 13 min on 2 cores for
  gfx90a6e at 10 %); ``--joint-repeat N`` puts N copies of the sample in the training rows, so the target
  weighs more against the sources.

Usage::

    python benchmarks/bench_fewshot_sources.py all6.parquet --target gfx90a_110 [--fractions 0.1,1] [--joint]
    python benchmarks/bench_fewshot_sources.py all6.parquet --target gfx90a_110 --fractions 0.1 --ensemble ft10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ensemble import (  # noqa: E402
    WEIGHTS, closed_metrics, lightgbm_log_softmax, log_softmax_over)
from kernelbench.devices import nearest_first  # noqa: E402
from kernelbench.errors import InputError  # noqa: E402
from reformer.baselines import FlatFeatures, boost_winners  # noqa: E402
from reformer.data import RuntimeMatrix, load_matrix  # noqa: E402
from reformer.evaluate import dataset_descriptors  # noqa: E402
from reformer.splits import Split, sample_train  # noqa: E402
from reformer.transfer import TransferOptions, resolve_targets, target_splits  # noqa: E402


def source_measurements(matrix: RuntimeMatrix, rows: np.ndarray, sources: list[str]) -> np.ndarray:
    """float32 ``[len(rows), len(sources) * (n_kernels + 1)]``: per source, ``log(t / t_best)`` of every kernel
    and ``log t_best`` (ms) for the same problem on that device; NaN where it was not measured."""
    wanted = pl.DataFrame({"at": np.arange(len(rows)), "problem_id": matrix.problems["problem_id"].to_numpy()[rows]})
    indexed = matrix.problems.select("problem_id", "device").with_row_index("row")
    blocks = []
    for device in sources:
        found = wanted.join(indexed.filter(pl.col("device") == device).select("problem_id", "row"), on="problem_id")
        times = np.full((len(rows), len(matrix.kernels)), np.nan)
        times[found["at"].to_numpy()] = matrix.time_ms[found["row"].to_numpy()]
        measured = ~np.isnan(times).all(axis=1)
        best = np.full(len(rows), np.nan)
        best[measured] = np.nanmin(times[measured], axis=1)
        blocks += [np.log(times / best[:, None]), np.log(best)[:, None]]
    return np.concatenate(blocks, axis=1).astype(np.float32)


def lightgbm_cells(matrix: RuntimeMatrix, sampled: Split, sources: list[str], options: TransferOptions
                   ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The two LightGBM cells' test figures, and the validation and test class probabilities
    (``[n, n_kernels]``, 0 for kernels without a class) of the one with the sources' measurements (the
    ``seconds`` of each are its boosting and prediction; the features are built once for both)."""
    train, validation, test = (matrix.subset(sampled.train), matrix.subset(sampled.validation),
                               matrix.subset(sampled.test))
    features = FlatFeatures.fit(train.columns(), derived=options.fit_config().derived,
                                descriptors=dataset_descriptors(matrix.metadata))
    sides = {"train": (train, sampled.train), "validation": (validation, sampled.validation),
             "test": (test, sampled.test)}
    # Each side's features once, shared by both variants.
    base = {name: features.encode(side.columns()) for name, (side, _) in sides.items()}
    with_sources = {name: np.concatenate([base[name], source_measurements(matrix, rows, sources)], axis=1)
                    for name, (_, rows) in sides.items()}
    out, probabilities = {}, {}
    for name, x in (("lightgbm", base), ("lightgbm + sources", with_sources)):
        started = time.perf_counter()
        booster, classes = boost_winners(x["train"], train.time_ms, x["validation"], validation.time_ms,
                                         options.lightgbm_config())
        # Validation probabilities only for the variant returned (the sources' one comes last and stays).
        for side_name in ("validation", "test") if x is with_sources else ("test",):
            p = np.zeros(sides[side_name][0].time_ms.shape)
            p[:, classes] = np.asarray(booster.predict(x[side_name])).reshape(len(p), -1)
            probabilities[side_name] = p
        out[name] = {**closed_metrics(test.time_ms, probabilities["test"]), "seconds": time.perf_counter() - started}
    return out, probabilities


def ensemble_cell(matrix: RuntimeMatrix, sampled: Split, model_dir: str, lightgbm: dict[str, np.ndarray]
                  ) -> dict[str, float]:
    """``(1 − w) · log p_reformer + w · log p_lightgbm`` over the measured kernels, w chosen on validation top-1."""
    from reformer.selector import Selector
    from reformer.store import load_model

    selector = Selector(load_model(model_dir))
    column = np.array([matrix.kernels.index(k) if k in matrix.kernels else -1 for k in selector.kernels])
    known = column >= 0
    mixed = {}
    for side_name, rows in (("validation", sampled.validation), ("test", sampled.test)):
        side = matrix.subset(rows)
        logits = selector.logits(side.columns(),
                                 descriptors=dataset_descriptors(side.metadata) if selector.reads_device else None)
        scores = np.full(side.time_ms.shape, -np.inf)
        scores[:, column[known]] = logits[:, known]
        measured = ~np.isnan(side.time_ms)
        mixed[side_name] = (log_softmax_over(scores, measured), lightgbm_log_softmax(lightgbm[side_name], measured),
                            side.time_ms)

    def figures(side_name: str, weight: float) -> dict[str, float]:
        reformer_lp, lightgbm_lp, time_ms = mixed[side_name]
        return closed_metrics(time_ms, (1 - weight) * reformer_lp + weight * lightgbm_lp)

    weight = max(WEIGHTS, key=lambda w: figures("validation", w)["top1"])
    return {**figures("test", weight), "weight": weight, "seconds": 0.0}


def joint_cell(matrix: RuntimeMatrix, sources_train: np.ndarray, sampled: Split, options: TransferOptions, *,
               repeat: int = 1) -> dict[str, float]:
    """Reformer from scratch on the sources' training rows and the target's sample (``repeat`` copies of it)."""
    from reformer.train import fit

    train = np.concatenate([sources_train, *[sampled.train] * repeat])
    split = Split(train=np.sort(train), validation=sampled.validation,
                  test=sampled.test, spec=sampled.spec)
    result = fit(matrix, options.fit_config(), split=split)
    test = result.evaluations["test"].model
    return {"top1": test.top1, "oracle_ratio": test.oracle_ratio, "sum_ratio": test.sum_ratio,
            "seconds": result.fit_seconds, "best_epoch": result.best_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a multi-device dataset (kernelbench merge)")
    parser.add_argument("--target", required=True, help="device label or descriptor id, e.g. gfx90a_110")
    parser.add_argument("--fractions", default="0.1", help="shares of the target's training split (default 0.1)")
    parser.add_argument("--joint", action="store_true", help="also train Reformer jointly (slow)")
    parser.add_argument("--joint-repeat", type=int, default=1, help="copies of the target's sample in the joint fit")
    parser.add_argument("--ensemble", metavar="MODEL_DIR",
                        help="also mix this Reformer (fine-tuned on the same sample) with LightGBM + sources")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.ensemble and "," in args.fractions:
        sys.exit("error: --ensemble takes one --fractions value, the sample its model was fine-tuned on")
    matrix = load_matrix(args.dataset)
    try:
        (target,) = resolve_targets(matrix, (args.target,))
    except InputError as exc:
        sys.exit(f"error: {exc}")
    sources = nearest_first(target, [d for d in matrix.devices if d != target],
                            descriptors=dataset_descriptors(matrix.metadata))
    options = TransferOptions(threads=args.threads)
    splits = target_splits(matrix, target, options)
    figures: dict[str, dict[str, dict[str, float]]] = {}
    print(f"target {target}; sources nearest first: {', '.join(sources)}; test problems {len(splits.target.test)}")
    print(f"{'fraction':>8}  {'method':<20} {'sample':>7} {'top-1':>7} {'oracle':>7} {'Σ':>6} {'s':>6}")
    for fraction in (float(f) for f in args.fractions.split(",")):
        sampled = sample_train(splits.target, fraction=fraction, seed=options.seed)
        cells, probabilities = lightgbm_cells(matrix, sampled, sources, options)
        if args.ensemble:
            cells["ensemble"] = ensemble_cell(matrix, sampled, args.ensemble, probabilities)
        if args.joint:
            cells["reformer, joint"] = joint_cell(matrix, splits.zero_shot.train, sampled, options,
                                                    repeat=args.joint_repeat)
        for name, m in cells.items():
            print(f"{fraction:>8.3g}  {name:<20} {len(sampled.train):>7} {m['top1']:>7.4f} {m['oracle_ratio']:>7.4f} "
                  f"{m['sum_ratio']:>6.3f} {m['seconds']:>6.0f}")
        figures[str(fraction)] = cells
    if args.json:
        Path(args.json).write_text(json.dumps({"target": target, "sources": sources, "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
