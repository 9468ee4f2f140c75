"""Where the open protocol's oracle ratio goes: misses against wrong picks among the measured kernels.

The open-set target of issue 16 asks for an open oracle ratio >= 0.985 on MI100.  The open oracle ratio is the
geomean of t_best / t_pick over the problems, a miss (a pick that was not measured) charged the problem's
slowest measured time (docs/reformer.md, "Metrics").  In log space the loss splits exactly into

* the misses' part: (1/n) Σ_misses -log(t_best / t_slowest);
* the hits' part: (1/n) Σ_hits -log(t_best / t_pick).

For a model directory and the dataset it was fitted on (the split is rebuilt from the model's config), this
prints per side: hit rate, open and closed oracle ratio, both parts, the mean miss ratio, the misses by how
many kernels the table recorded for the problem (a find-db keeps at most about four: a miss on a problem with
the most recorded is a pick ranked below all of them, one on a problem with fewer is a kernel that did not
apply or failed), and the **miss rate a target open oracle ratio allows** with the hits' part as it is:
``(-log(target) - hits' part) / mean miss cost``.  It is an upper bound on the allowed miss rate, since a miss
turned into a hit adds its own (non-negative) loss to the hits' part.

Usage::

    python benchmarks/bench_open_misses.py MODEL_DIR DATASET [--target 0.985] [--json FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ensemble import model_and_split, model_parser, scored_sides  # noqa: E402
from reformer.metrics import best_of_ranked, ranked  # noqa: E402


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--target", type=float, default=0.985, help="open oracle ratio to budget for")
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    selector, matrix, split = model_and_split(args.model_dir, args.dataset)
    for side, part, _, candidates, scores in scored_sides(selector, matrix, split):
        time_ms = part.time_ms
        n = part.n_problems
        t_best, t_slowest = np.nanmin(time_ms, axis=1), np.nanmax(time_ms, axis=1)
        open_pick = best_of_ranked(time_ms, ranked(np.where(candidates, scores, -np.inf), 1))
        closed_pick = best_of_ranked(time_ms, ranked(np.where(np.isnan(time_ms), -np.inf, scores), 1))
        hit = ~np.isnan(open_pick)
        loss = -np.log(t_best / np.where(hit, open_pick, t_slowest))
        misses_part, hits_part = loss[~hit].sum() / n, loss[hit].sum() / n
        miss_cost = loss[~hit].mean() if (~hit).any() else float("nan")
        allowed = max((-np.log(args.target) - hits_part) / miss_cost, 0.0)
        recorded, counts = np.unique((~np.isnan(time_ms[~hit])).sum(axis=1), return_counts=True)
        by_recorded = {str(r): int(c) for r, c in zip(recorded, counts)}
        figures[side] = {"n_problems": n, "hit_rate": float(hit.mean()),
                         "open_oracle_ratio": float(np.exp(-loss.mean())), "misses_log_loss": float(misses_part),
                         "hits_log_loss": float(hits_part),
                         "allowed_miss_rate": float(allowed), "misses_by_recorded": by_recorded}
        print(f"{side}: {n} problems, hit rate {hit.mean():.4f}, open oracle {np.exp(-loss.mean()):.4f}, "
              f"closed oracle {np.exp(np.mean(np.log(t_best / closed_pick))):.4f}")
        print(f"  log loss: misses {misses_part:.5f} + hits {hits_part:.5f}; mean miss ratio t_best/t_slowest "
              f"{np.exp(-miss_cost):.3f}")
        print("  misses by kernels recorded for the problem: "
              + (", ".join(f"{r}: {c}" for r, c in by_recorded.items()) or "none"))
        print(f"  open oracle {args.target} allows a miss rate of at most {allowed:.4f} "
              f"(hit rate >= {1 - allowed:.4f}) with the hits' part as it is; now {1 - hit.mean():.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
