"""Does the fast inference path pick what the torch training model picks, on every problem of a split?

Loads a model directory written by ``reformer fit``, rebuilds the split it was
trained with from ``config.json``, and scores that split twice: through
``Selector`` (the fast path: pre-arranged weights, compiled Γ-block kernel) and
through the torch ``Reformer`` module in eager mode.  Prints how many picks
agree, the largest logit difference, and, for disagreements, how close the two
best logits were (a disagreement on a near-tie is float32 rounding, not a bug).
The tests check the same on a sample; this prints the full figure.

Usage::

    python benchmarks/check_fast_path.py MODEL_DIR DATASET [--split test] [--single 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ensemble import model_and_split  # noqa: E402
from reformer.data import NON_FIELD_COLUMNS  # noqa: E402
from reformer.metrics import argmax_applicable  # noqa: E402
from reformer.selector import Selector  # noqa: E402


def torch_logits(selector: Selector, columns) -> np.ndarray:
    """Logits of the training module itself, in eager mode, float32."""
    encoded = selector.trained.encoder.encode(columns)
    inputs = [torch.from_numpy(a) for a in (encoded.categorical, encoded.numeric, encoded.value_ids)]
    model = selector.trained.model.eval()
    with torch.inference_mode():
        return torch.cat([model(*(t[i : i + 8192] for t in inputs)) for i in range(0, len(inputs[0]), 8192)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("dataset")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--single", type=int, default=2000, help="also check Selector.select on this many problems")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    selector, dataset, split = model_and_split(args.model_dir, args.dataset)
    matrix = dataset.subset(split.sides()[args.split])
    columns, applicable = matrix.columns(), matrix.applicable
    kernel_index = [selector.kernels.index(k) for k in matrix.kernels]
    fast = selector.fast.logits(selector.trained.encoder.encode(columns))[:, kernel_index]
    eager = torch_logits(selector, columns)[:, kernel_index]
    fast_picks, eager_picks = argmax_applicable(fast, applicable), argmax_applicable(eager, applicable)
    differ = np.flatnonzero(fast_picks != eager_picks)
    masked = np.where(applicable, eager, -np.inf)
    top2 = -np.sort(-masked, axis=1)[:, :2]
    gaps = (top2[differ, 0] - top2[differ, 1]).tolist()

    rows = list(matrix.problems.drop(NON_FIELD_COLUMNS, strict=False).head(args.single).iter_rows(named=True))
    applicable_names = ([matrix.kernels[j] for j in np.flatnonzero(applicable[i])] for i in range(len(rows)))
    single = [selector.select(r, applicable=names)[0][0] for r, names in zip(rows, applicable_names)]
    single_agree = sum(pick == matrix.kernels[eager_picks[i]] for i, pick in enumerate(single))
    figures = {
        "split": args.split,
        "problems": matrix.n_problems,
        "batched_agree": int(matrix.n_problems - len(differ)),
        "max_abs_logit_diff": float(np.abs(np.where(applicable, fast - eager, 0.0)).max()),
        "disagreement_top2_gaps": gaps,
        "single_checked": len(rows),
        "single_agree": int(single_agree),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.split} split: {figures['batched_agree']:,} of {figures['problems']:,} batched picks agree with the "
          f"torch module; max |logit difference| {figures['max_abs_logit_diff']:.2e}")
    if gaps:
        print(f"  disagreements on near-ties: gap between the two best torch logits {', '.join(f'{g:.1e}' for g in gaps)}")
    print(f"single-problem select: {figures['single_agree']:,} of {figures['single_checked']:,} agree")


if __name__ == "__main__":
    main()
