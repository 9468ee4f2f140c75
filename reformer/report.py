"""Write a fit's outputs into its model directory, and render metric tables as text."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reformer.columns import COLUMNS, FIT_TABLE, OPEN_TABLE, OPTIONAL_TABLE
from reformer.curves import plot_curve, write_curve_csv
from reformer.metrics import SelectionMetrics
from reformer.store import save_model, write_json
from reformer.train import FitResult

METRICS_FILE = "metrics.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"

def save_fit(directory: str | os.PathLike[str], result: FitResult) -> list[Path]:
    """Write the model directory as a unit: weights, ``config.json``, ``metrics.json``, ``curve.csv``, ``curve.png``
    and ``manifest.json`` (see :func:`reformer.store.save_model`); return the paths.

    Raises:
        InputError: the directory cannot be written.
    """
    title = f"Reformer training ({result.split.spec.describe()})"
    return save_model(directory, result.trained, extra={
        METRICS_FILE: lambda path: write_json(path, result.metrics_json()),
        CURVE_CSV: lambda path: write_curve_csv(path, result.curve),
        CURVE_PNG: lambda path: plot_curve(path, result.curve, title=title),
    })


def metrics_table(rows: Mapping[str, SelectionMetrics]) -> str:
    """A fixed-width table, one row per picker (e.g. model, oracle, static, random)."""
    width = max(len(name) for name in rows) if rows else 6
    values_of = {name: metrics.as_dict() for name, metrics in rows.items()}
    optional = [key for key in OPTIONAL_TABLE if values_of and all(key in v for v in values_of.values())]
    columns = [COLUMNS[key] for key in (*FIT_TABLE[:2], *optional, *FIT_TABLE[2:])]
    header = f"{'':{width}}  " + "  ".join(f"{c.short:>12}" for c in columns)
    lines = [header]
    for name, values in values_of.items():
        cells = "  ".join(f"{c.fmt.format(values[c.key]):>12}" for c in columns)
        lines.append(f"{name:{width}}  {cells}")
    return "\n".join(lines)


def speedup_line(model: SelectionMetrics, baselines: Mapping[str, SelectionMetrics], *, name: str = "reformer") -> str | None:
    """One line: ``name``'s picks against ``torch_default`` (what F.conv2d gives the user) on the same problems, as
    the geometric mean of t_torch_default / t_pick and as Σ t_torch_default / Σ t_pick; None where the dataset has
    no torch_default (it is measured only on CPU datasets)."""
    base = baselines.get("torch_default")
    if base is None or not model.n_problems:
        return None
    # oracle_ratio is the geomean of t_best / t_pick and sum_ratio is Σ t_pick / Σ t_best, both over the same
    # problems, so their quotients are the speed-ups without a second pass over the times.
    geomean = model.oracle_ratio / base.oracle_ratio
    total = base.sum_ratio / model.sum_ratio
    return (f"{name} vs torch_default (F.conv2d, what the user gets without a selector): "
            f"geomean speed-up {geomean:.3f}x, total-time speed-up {total:.3f}x")


def json_metrics(metrics: SelectionMetrics) -> dict[str, Any]:
    """The ``reformer evaluate --json`` object: :data:`~reformer.metrics.METRIC_KEYS` (closed protocol), then
    :data:`~reformer.metrics.OPEN_METRIC_KEYS`, then ``topk`` and ``open_topk`` when computed."""
    return metrics.as_dict()


def open_table(rows: Mapping[str, SelectionMetrics], *, top_ks: tuple[int, ...] = ()) -> str:
    """The open-protocol table, one row per picker, with ``top-k oracle ratio`` columns for ``top_ks`` > 1."""
    ks = [k for k in top_ks if k > 1]
    width = max(len(name) for name in rows) if rows else 6
    columns = [COLUMNS[key] for key in OPEN_TABLE]
    titles = [c.short for c in columns] + [f"top-{k} oracle" for k in ks]
    lines = [f"{'':{width}}  " + "  ".join(f"{t:>12}" for t in titles)]
    for name, metrics in rows.items():
        values = metrics.as_dict()
        cells = [c.fmt.format(values[c.key]) for c in columns]
        cells += ["{:.4f}".format(values.get("open_topk", {}).get(str(k), {}).get("oracle_ratio", float("nan")))
                  for k in ks]
        lines.append(f"{name:{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)
