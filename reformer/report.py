"""Write a fit's outputs into its model directory, and render metric tables as text."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from reformer.columns import COLUMNS, FIT_TABLE
from reformer.curves import plot_curve, write_curve_csv
from reformer.metrics import METRIC_KEYS, SelectionMetrics
from reformer.store import save_model, write_json
from reformer.train import FitResult

METRICS_FILE = "metrics.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"

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
    columns = [COLUMNS[key] for key in FIT_TABLE]
    header = f"{'':{width}}  " + "  ".join(f"{c.short:>12}" for c in columns)
    lines = [header]
    for name, metrics in rows.items():
        values = metrics.as_dict()
        cells = "  ".join(f"{c.fmt.format(values[c.key]):>12}" for c in columns)
        lines.append(f"{name:{width}}  {cells}")
    return "\n".join(lines)


def json_metrics(metrics: SelectionMetrics) -> dict[str, float | int]:
    """The ``reformer evaluate --json`` object: exactly :data:`METRIC_KEYS`."""
    return {key: metrics.as_dict()[key] for key in METRIC_KEYS}
