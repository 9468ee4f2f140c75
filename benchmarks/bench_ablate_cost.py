"""What the full ``reformer ablate`` grid costs, projected in minutes instead of measured in hours.

The grid's time is almost all Reformer training (96 % of the CPU time of the
MI100 grid in ``docs/results/mi100/``), and training time is epochs x problems /
throughput.  For every distinct Reformer cell the grid would train for one
seed (the same configurations ``reformer ablate`` plans, via
:func:`reformer.ablate.plan_cells`), this script trains one epoch on a seeded
subsample of the training split with 1 thread, as the grid's jobs do, reads
the training throughput (problems/s) from the fit's curve, and projects the
cell's training time on the whole training split with the cell's epochs.

Not projected: baseline cells (LightGBM, MLP, static) and each cell's
overhead around training (feature encoding, evaluation, latency runs).  With
``--calibrate REPORT_DIR`` (a finished grid on the same dataset) the script
reads the CPU seconds that grid recorded per cell, prints them beside the
projection (the ratio says how far the projection is from a real run), and
adds the recorded baseline cells to the total.

Use it to judge a training speed-up against the issue's target (the full grid
in <= 3 h on 2 cores) without a 4-hour run.  Figures are CPU-bound and
single-threaded: run it on an otherwise idle machine (the load average is
printed).

Usage::

    python benchmarks/bench_ablate_cost.py DATASET [--seeds 3] [--jobs 2] [--epochs N] [--train-problems 32768]
        [--target-hours 3] [--calibrate REPORT_DIR] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench_select import subsample  # the sibling script: a seeded training subsample of a split

from reformer.ablate import AblationOptions, data_identity, describe_cell, load_data, plan_cells, read_cell
from reformer.grid import STUDIES, variants
from reformer.splits import SplitSpec, make_split
from reformer.train import fit, training_epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the grid to project (default 3)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs the grid would run (default 2)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="project the grid of `reformer ablate --epochs N` (default: fit's epochs)")
    parser.add_argument("--train-problems", type=int, default=32768,
                        help="training problems of the one measured epoch per cell (default 32768)")
    parser.add_argument("--target-hours", type=float, default=3.0, help="wall-time target of the grid (default 3)")
    parser.add_argument("--calibrate", metavar="REPORT_DIR",
                        help="a finished grid on this dataset: print its recorded cell times beside the projection")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    matrix = load_data(args.dataset, None)
    # The grid's own options, so the cells (and --calibrate's recorded ones) are keyed as that grid keys them.
    options = AblationOptions(seeds=tuple(range(args.seeds)), jobs=args.jobs, epochs=args.epochs)
    rows = [v for study in STUDIES for v in variants(study)]
    keys, cells, users = plan_cells(rows, options, data_identity(matrix, options))
    split = make_split(matrix.problems, SplitSpec(fractions=options.fractions, seed=0))
    sample = subsample(split, args.train_problems, seed=0)
    n_train = len(split.train)

    def recorded(key: str) -> dict[str, Any] | None:
        return read_cell(Path(args.calibrate), key) if args.calibrate else None

    load_before = os.getloadavg()[0]
    lines: list[dict[str, Any]] = []
    for key, cell in cells.items():
        if cell.kind != "reformer" or cell.seed != 0:
            continue
        measured = dataclasses.replace(cell.config, epochs=1, min_steps=0)
        result = fit(matrix, measured, split=sample)
        per_s = result.curve[0].problems_per_s
        epochs = training_epochs(cell.config, n_train)
        # The same configuration for every seed: look its recorded cells up through the rows it serves.
        variant = users[key][0]
        seed_keys = [keys[(variant.study, variant.name, seed)] for seed in options.seeds]
        records = [r for k in seed_keys if (r := recorded(k)) is not None]
        line = {
            "cell": describe_cell(variant, len(users[key])),
            "train_problems_per_s": per_s,
            "epochs": epochs,
            "projected_train_s": epochs * n_train / per_s,
            "recorded_fit_s": sum(r["fit_seconds"] for r in records) / len(records) if records else None,
            "recorded_cell_cpu_s": sum(r["cell_cpu_seconds"] for r in records) / len(records) if records else None,
        }
        lines.append(line)
        print(f"{line['cell']}: {per_s:,.0f} problems/s -> {line['projected_train_s']:,.0f} s", file=sys.stderr)

    load_after = os.getloadavg()[0]
    projected_s = args.seeds * sum(line["projected_train_s"] for line in lines)
    baseline_keys = [key for key, cell in cells.items() if cell.kind != "reformer"]
    baseline_records = [r for k in baseline_keys if (r := recorded(k)) is not None]
    baseline_s = sum(r["cell_cpu_seconds"] for r in baseline_records) if args.calibrate else None
    total_s = projected_s + (baseline_s or 0.0)
    wall_h = total_s / args.jobs / 3600
    # Recorded cell CPU time over projected training time: the overhead around training (encoding, the
    # validation pass after every epoch, evaluation, latency runs) as that grid paid it.
    pairs = [(line["recorded_cell_cpu_s"], line["projected_train_s"]) for line in lines
             if line["recorded_cell_cpu_s"] is not None]
    overhead = sum(r for r, _ in pairs) / sum(p for _, p in pairs) if pairs else None
    calibrated_h = None if overhead is None else (projected_s * overhead + (baseline_s or 0.0)) / args.jobs / 3600
    summary = {
        "dataset": args.dataset,
        "training_problems": n_train,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "reformer_cells": args.seeds * len(lines),
        "projected_reformer_train_cpu_h": projected_s / 3600,
        "recorded_baseline_cpu_h": None if baseline_s is None else baseline_s / 3600,
        "recorded_baseline_cells": len(baseline_records) if args.calibrate else None,
        "projected_wall_h": wall_h,
        "target_h": args.target_hours,
        "projected_over_target": wall_h / args.target_hours,
        "recorded_over_projected": overhead,
        "calibrated_wall_h": calibrated_h,
        "load_average": [load_before, load_after],
        "cells": lines,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    header = f"{'cell (seed 0)':<44} {'problems/s':>11} {'epochs':>6} {'projected s':>11}"
    if args.calibrate:
        header += f" {'recorded fit s':>14} {'recorded cell CPU s':>19} {'cell / projected':>16}"
    print(header)
    for line in lines:
        text = (f"{line['cell'][:44]:<44} {line['train_problems_per_s']:>11,.0f} {line['epochs']:>6} "
                f"{line['projected_train_s']:>11,.0f}")
        if args.calibrate and line["recorded_cell_cpu_s"] is not None:
            text += (f" {line['recorded_fit_s']:>14,.0f} {line['recorded_cell_cpu_s']:>19,.0f} "
                     f"{line['recorded_cell_cpu_s'] / line['projected_train_s']:>16.2f}")
        print(text)
    print(f"\nReformer training, {summary['reformer_cells']} cells ({args.seeds} seeds x {len(lines)}): "
          f"{summary['projected_reformer_train_cpu_h']:.2f} CPU h projected")
    if baseline_s is not None:
        print(f"baseline cells recorded in {args.calibrate}: {len(baseline_records)} of {len(baseline_keys)}, "
              f"{baseline_s / 3600:.2f} CPU h")
    else:
        print(f"baseline cells ({len(baseline_keys)}): not projected (pass --calibrate REPORT_DIR to add recorded ones)")
    print(f"grid with {args.jobs} job(s) on {args.jobs} idle core(s): {wall_h:.2f} h, "
          f"{wall_h / args.target_hours:.2f}x the {args.target_hours:g} h target "
          f"(overhead around training not included)")
    if calibrated_h is not None:
        print(f"with the overhead {args.calibrate} paid (recorded cell CPU / projected training = {overhead:.2f}): "
              f"{calibrated_h:.2f} h, {calibrated_h / args.target_hours:.2f}x the target")
    print(f"load average {load_before:.1f} before, {load_after:.1f} after; {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
