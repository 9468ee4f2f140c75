"""Hold out each network of a CPU dataset in turn: does the selector beat what F.conv2d gives the user?

For every built-in network (or ``--networks``) and seed, in a fresh process:
``reformer fit DATASET -o WORK/NET-sSEED --split-by network=NET --group-by layer --seed SEED``.  The test split
is every problem with one of the network's layer shapes (any batch); ``--group-by layer`` keeps those shapes out
of training and validation too.  Prints, per network, the median over seeds (and the range) of the test split's:

* oracle ratio (geomean t_best / t_pick, closed protocol) of Reformer, the static order and ``torch_default``;
* Reformer's geomean and total-time speed-up over ``torch_default`` (``reformer.report.speedup_line``'s figures);
* Reformer's top-2 oracle ratio (the best measured of its two first-ranked kernels);
* fit time in seconds.

The issue's target (#19): on every network, Reformer's oracle ratio is >= 0.95 and above ``torch_default``'s.

Usage::

    python benchmarks/bench_holdout.py datasets/cpu-xeon-2t.parquet [--seeds 0,1,2] [--networks vgg16,...]
        [--work DIR] [--json FILE] [--fit-options '--time-weight 0.5']
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fit(dataset: str, model_dir: Path, network: str, seed: int, extra: list[str]) -> dict:
    """Run one hold-out fit in a fresh process (``extra``: more ``reformer fit`` options) and return its metrics.json."""
    command = [sys.executable, "-c", "import cli; cli.reformer()", "fit", dataset, "-o", str(model_dir), "--split-by", f"network={network}",
               "--group-by", "layer", "--seed", str(seed), "--top-k", "2", "--quiet", *extra]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fit of {network} seed {seed} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads((model_dir / "metrics.json").read_text())


def figures(metrics: dict) -> dict[str, float]:
    """The figures printed per (network, seed), from one fit's metrics.json."""
    test, base = metrics["test"], metrics["baselines_test"]
    torch_default = base["torch_default"]
    return {
        "problems": test["n_problems"],
        "reformer": test["oracle_ratio"],
        "static": base["static"]["oracle_ratio"],
        "torch_default": torch_default["oracle_ratio"],
        # The quotients of per-problem geomeans / sums over the same problems are the speed-ups.
        "speedup_geomean": test["oracle_ratio"] / torch_default["oracle_ratio"],
        "speedup_total": torch_default["sum_ratio"] / test["sum_ratio"],
        "top2": test["topk"]["2"]["oracle_ratio"],
        "fit_s": metrics["fit_seconds"],
    }


def main() -> None:
    from kernelbench.spaces.networks import NETWORKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--work", default=None, help="keep the model directories here (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write every fit's figures to this file")
    parser.add_argument("--fit-options", default="", help="more `reformer fit` options, e.g. '--time-weight 0.5'")
    args = parser.parse_args()
    extra = shlex.split(args.fit_options)
    seeds = [int(s) for s in args.seeds.split(",")]
    networks = args.networks.split(",")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_holdout_"))

    rows: dict[str, list[dict[str, float]]] = {}
    for network in networks:
        for seed in seeds:
            row = figures(fit(args.dataset, work / f"{network}-s{seed}", network, seed, extra))
            rows.setdefault(network, []).append(row)
            print(f"{network:16} seed {seed}: oracle ratio {row['reformer']:.4f} (static {row['static']:.4f}, "
                  f"torch_default {row['torch_default']:.4f}), speed-up over torch_default "
                  f"{row['speedup_geomean']:.3f}x geomean, {row['speedup_total']:.3f}x total; "
                  f"fit {row['fit_s']:.0f} s", flush=True)

    def cell(values: list[float], fmt: str) -> str:
        if len(values) == 1:
            return fmt.format(values[0])
        return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    print(f"\n{args.dataset}, hold-out per network, seeds {args.seeds}" + (f", fit options {args.fit_options}" if extra else "") + (" (median, range)" if len(seeds) > 1 else ""))
    print("| network | test problems | Reformer oracle ratio | static | torch_default | speed-up over torch_default, "
          "geomean | total | Reformer top-2 oracle | target (>= 0.95 and > torch_default) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for network, runs in rows.items():
        col = {k: [r[k] for r in runs] for k in runs[0]}
        met = all(r["reformer"] >= 0.95 and r["reformer"] > r["torch_default"] for r in runs)
        print(f"| {network} | {statistics.median(col['problems']):.0f} | {cell(col['reformer'], '{:.4f}')} | "
              f"{cell(col['static'], '{:.4f}')} | {cell(col['torch_default'], '{:.4f}')} | "
              f"{cell(col['speedup_geomean'], '{:.3f}')}x | {cell(col['speedup_total'], '{:.3f}')}x | "
              f"{cell(col['top2'], '{:.4f}')} | {'met' if met else 'missed'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": args.dataset, "seeds": seeds, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
