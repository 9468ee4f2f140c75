"""Write a fit's outputs into its model directory, and render metric tables as text."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reformer.curves import plot_curve, write_curve_csv
from reformer.metrics import SelectionMetrics
from reformer.store import save_model, write_json
from reformer.train import FitResult

METRICS_FILE = "metrics.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"

#: (metric key, column header, format) of the printed tables.
_COLUMNS = (
    ("top1", "top-1", "{:.4f}"),
    ("within5", "within-5%", "{:.4f}"),
    ("oracle_ratio", "oracle ratio", "{:.4f}"),
    ("sum_ratio", "Σpick/Σbest", "{:.4f}"),
    ("mean_pick_ms", "mean pick ms", "{:.4f}"),
    ("speedup_static_sum", "speedup Σ", "{:.3f}"),
    ("speedup_static_geomean", "speedup geo", "{:.3f}"),
)


def save_fit(directory: str | os.PathLike[str], result: FitResult) -> list[Path]:
    """Write weights, ``config.json``, ``metrics.json``, ``curve.csv`` and ``curve.png``; return the paths.

    Raises:
        InputError: the directory cannot be written.
    """
    directory = Path(directory)
    save_model(directory, result.trained)
    write_json(directory / METRICS_FILE, result.metrics_json())
    write_curve_csv(directory / CURVE_CSV, result.curve)
    plot_curve(directory / CURVE_PNG, result.curve, title=f"Reformer training ({result.split.spec.describe()})")
    return [directory / name for name in ("weights.safetensors", "config.json", METRICS_FILE, CURVE_CSV, CURVE_PNG)]


def metrics_table(rows: Mapping[str, SelectionMetrics]) -> str:
    """A fixed-width table, one row per picker (e.g. model, oracle, static, random)."""
    width = max(len(name) for name in rows) if rows else 6
    header = f"{'':{width}}  " + "  ".join(f"{title:>12}" for _, title, _ in _COLUMNS)
    lines = [header]
    for name, metrics in rows.items():
        values = metrics.as_dict()
        cells = "  ".join(f"{fmt.format(values[key]):>12}" for key, _, fmt in _COLUMNS)
        lines.append(f"{name:{width}}  {cells}")
    return "\n".join(lines)


def json_metrics(metrics: SelectionMetrics) -> dict[str, Any]:
    """The ``reformer evaluate --json`` object: :data:`~reformer.metrics.METRIC_KEYS` (closed protocol), then
    :data:`~reformer.metrics.OPEN_METRIC_KEYS`, then ``topk`` and ``open_topk`` when computed."""
    return metrics.as_dict()


#: (metric key, column header, format) of the open-protocol table.
_OPEN_COLUMNS = (
    ("open_hit_rate", "hit rate", "{:.4f}"),
    ("open_top1", "top-1", "{:.4f}"),
    ("open_within5", "within-5%", "{:.4f}"),
    ("open_oracle_ratio", "oracle ratio", "{:.4f}"),
    ("open_sum_ratio", "Σpick/Σbest", "{:.4f}"),
)


def open_table(rows: Mapping[str, SelectionMetrics], *, top_ks: tuple[int, ...] = ()) -> str:
    """The open-protocol table, one row per picker, with ``top-k oracle ratio`` columns for ``top_ks`` > 1."""
    ks = [k for k in top_ks if k > 1]
    width = max(len(name) for name in rows) if rows else 6
    titles = [title for _, title, _ in _OPEN_COLUMNS] + [f"top-{k} oracle" for k in ks]
    lines = [f"{'':{width}}  " + "  ".join(f"{t:>12}" for t in titles)]
    for name, metrics in rows.items():
        values = metrics.as_dict()
        cells = [fmt.format(values[key]) for key, _, fmt in _OPEN_COLUMNS]
        cells += ["{:.4f}".format(values.get("open_topk", {}).get(str(k), {}).get("oracle_ratio", float("nan")))
                  for k in ks]
        lines.append(f"{name:{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)
