"""How much of a target device's winners can any answer built on the source devices' winners get right?

The zero-shot target of issue 17 (gfx90a6e: top-1 >= 0.80 from the other five find-dbs) asks a model to
predict a device's fastest kernel without one of its measurements.  This script measures, on the data, how
far the nearest measured device is from the target, and bounds every answer of the form "take the nearest
source device's winner and translate it":

* per source device: the share of the target's problems it measured, and on those, how often its winner is
  the target's winner (the lookup's top-1) and a kernel the target recorded at all;
* the **remap ceiling**: the best top-1 of *any* function from (the nearest source's winner [, direction,
  dtype, layout]) to a kernel, on the problems that source measured.  The function is fitted on the
  target's own winners (the majority target winner of each group), so it is an upper bound for every such
  rule, never a selector;
* the same agreement between every ordered pair of devices, to show how unlike its nearest device the
  target is compared with the pairs a model could learn a translation from.

Problems are matched across devices by ``problem_id`` (device-independent); ties count as agreement where
the target's times tie.

Usage::

    python benchmarks/bench_transfer_ceiling.py all6.parquet --target gfx90a_110 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernelbench.devices import nearest_first, table_id  # noqa: E402
from reformer.data import RuntimeMatrix, load_matrix  # noqa: E402

GROUPINGS: dict[str, tuple[str, ...]] = {
    "winner": (),
    "winner, direction, dtype": ("direction", "dtype"),
    "winner, direction, dtype, layout": ("direction", "dtype", "layout"),
}


def device_rows(matrix: RuntimeMatrix, label: str) -> pl.DataFrame:
    """The rows of one device: ``row`` (matrix row), ``problem_id`` and the context columns."""
    return (matrix.problems.with_row_index("row").filter(pl.col("device") == label)
            .select("row", "problem_id", "direction", "dtype", "layout"))


def agreement(matrix: RuntimeMatrix, source: str, target: str) -> dict[str, float]:
    """On the target's problems the source measured too: coverage, lookup top-1, winner-recorded rate, remap ceilings."""
    t, s = device_rows(matrix, target), device_rows(matrix, source)
    pairs = t.join(s.select("problem_id", pl.col("row").alias("source_row")), on="problem_id")
    if pairs.height == 0:
        return {"shared": 0.0}
    target_times = matrix.time_ms[pairs["row"].to_numpy()]
    source_times = matrix.time_ms[pairs["source_row"].to_numpy()]
    source_winner = np.nanargmin(source_times, axis=1)
    best = np.nanmin(target_times, axis=1)
    at_winner = target_times[np.arange(len(best)), source_winner]
    out = {
        "shared": pairs.height / t.height,
        "lookup_top1": float(np.mean(at_winner <= best)),  # NaN (not recorded) compares False
        "winner_recorded": float(np.mean(~np.isnan(at_winner))),
    }
    # Every target kernel that ties the target's best counts as its winner; the majority rule picks one.
    frame = pairs.with_columns(source_winner=pl.Series(source_winner),
                               target_winner=pl.Series(np.nanargmin(target_times, axis=1)))
    for name, extra in GROUPINGS.items():
        keys = ["source_winner", *extra]
        majority = (frame.group_by([*keys, "target_winner"]).len()
                    .sort(["len", "target_winner"], descending=[True, False])
                    .unique(keys, keep="first", maintain_order=True)
                    .select(*keys, pl.col("target_winner").alias("remapped")))
        remapped = frame.join(majority, on=keys, how="left")["remapped"].to_numpy()
        picked = target_times[np.arange(len(best)), remapped]
        out[f"remap_ceiling[{name}]"] = float(np.mean(picked <= best))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a multi-device dataset (kernelbench merge)")
    parser.add_argument("--target", required=True, help="device label or descriptor id, e.g. gfx90a_110")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    matrix = load_matrix(args.dataset)
    labels = sorted(set(matrix.problems["device"].to_list()))
    target = next((d for d in labels if d == args.target or table_id(d) == args.target), None)
    if target is None:
        raise SystemExit(f"--target {args.target!r} is not a device of the dataset: {', '.join(labels)}")
    sources = nearest_first(target, [d for d in labels if d != target])
    figures: dict[str, dict] = {"target": target, "sources": {}, "pairs": {}}
    print(f"target {target}; sources nearest first by descriptor distance")
    for source in sources:
        row = agreement(matrix, source, target)
        figures["sources"][source] = row
        print(f"  {source:22s} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))
    print("every ordered pair (rows: target, columns: source): lookup top-1 on the shared problems")
    short = [table_id(d) or d for d in labels]
    print(" " * 12 + "".join(f"{s:>12s}" for s in short))
    for a, name in zip(labels, short):
        cells = []
        for b in labels:
            value = agreement(matrix, b, a).get("lookup_top1", float("nan")) if a != b else float("nan")
            figures["pairs"][f"{a} <- {b}"] = value
            cells.append(f"{value:12.4f}" if value == value else f"{'-':>12s}")
        print(f"{name:12s}" + "".join(cells))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
