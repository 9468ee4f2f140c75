"""The transfer study's report: ``results.parquet``, ``report.md`` (a table per target) and ``transfer.png``.

The plot has one column per target and two rows (top-1, oracle ratio), each against the share of the target's
training split used (log scale): fine-tuned, from scratch and LightGBM as lines (closed protocol solid, open
dashed), zero-shot and lookup as horizontal lines (they use none of the target's problems).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import polars as pl

from kernelbench.schema import atomic_write_bytes
from reformer.ablation_report import _fmt_seconds, _pyplot, _save
from reformer.columns import COLUMNS
from reformer.transfer import METHODS, TransferOutcome

RESULTS_FILE = "results.parquet"
REPORT_FILE = "report.md"
PLOT_FILE = "transfer.png"
#: Metric columns of the table, closed then open protocol (headers and formats from reformer.columns).
TABLE_METRICS = ("top1", "oracle_ratio", "sum_ratio", "open_hit_rate", "open_top1", "open_oracle_ratio",
                 "open_sum_ratio")
METHOD_TITLES = {"zero-shot": "zero-shot (trained on the other devices)",
                 "lookup": "lookup (nearest device's winner)",
                 "fine-tune": "fine-tuned from zero-shot", "scratch": "Reformer from scratch", "lightgbm": "LightGBM"}


def results_frame(outcome: TransferOutcome) -> pl.DataFrame:
    """One row per finished cell: target, method, fraction (null for zero-shot and lookup), train problems,
    every metric of :data:`TABLE_METRICS`, fit seconds, the share of test problems that borrowed a measured order
    (zero-shot; :mod:`reformer.borrowed`) and the error of a cell that could not be computed."""
    rows = []
    for key, cell in outcome.cells:
        record = outcome.records.get(key)
        if record is None:
            continue
        metrics = record.get("metrics") or {}
        rows.append({"target": cell.target, "method": cell.method, "fraction": cell.fraction,
                     "train_problems": record.get("train_problems"),
                     **{k: _float(metrics.get(k)) for k in TABLE_METRICS},
                     "n_test": metrics.get("n_problems"), "fit_seconds": _float(record.get("fit_seconds")),
                     "coverage": _float(record.get("coverage")),
                     "borrowed_share": _float(record.get("borrowed_share")), "error": record.get("error")})
    schema = {"target": pl.String, "method": pl.String, "fraction": pl.Float64, "train_problems": pl.Int64,
              **{k: pl.Float64 for k in TABLE_METRICS}, "n_test": pl.Int64, "fit_seconds": pl.Float64,
              "coverage": pl.Float64, "borrowed_share": pl.Float64, "error": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _text(key: str, value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else COLUMNS[key].fmt.format(value)


def target_table(results: pl.DataFrame, target: str) -> str:
    """The Markdown table of one target: one row per cell, in method order then fraction."""
    rows = results.filter(pl.col("target") == target)
    order = {m: i for i, m in enumerate(METHODS)}
    rows = rows.with_columns(pl.col("method").replace_strict(order, default=99).alias("_m"),
                             pl.col("fraction").fill_null(0.0).alias("_f")).sort(["_f", "_m"])
    headers = ["method", "target share", "train problems", *(COLUMNS[k].header for k in TABLE_METRICS)]
    lines = ["| " + " | ".join(headers) + " |", "|---|---:|---:|" + "|".join("---:" for _ in TABLE_METRICS) + "|"]
    for row in rows.iter_rows(named=True):
        share = "0" if row["fraction"] is None else f"{100 * row['fraction']:g} %"
        name = row["method"] if row["method"] != "scratch" or row["fraction"] != 1.0 else "in-device (scratch)"
        if row["error"]:
            cells = [f"not computed: {row['error']}", *([""] * (len(TABLE_METRICS) - 1))]
        else:
            cells = [_text(k, row[k]) for k in TABLE_METRICS]
        train = "" if row["train_problems"] is None else f"{row['train_problems']:,}"
        lines.append(f"| {name} | {share} | {train} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, results: pl.DataFrame, targets: list[str]) -> bool:
    """``transfer.png`` (see the module docstring); False when there is nothing to plot."""
    if results.height == 0 or not targets:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(targets), figsize=(4.2 * len(targets), 7), squeeze=False)
    colours = {"fine-tune": "tab:blue", "scratch": "tab:orange", "lightgbm": "tab:green", "zero-shot": "tab:purple",
               "lookup": "tab:gray"}
    for col, target in enumerate(targets):
        rows = results.filter((pl.col("target") == target) & pl.col("error").is_null())
        for row_i, (closed, label) in enumerate((("top1", "top-1"), ("oracle_ratio", "oracle ratio"))):
            axis = axes[row_i][col]
            for protocol, key, style in (("closed", closed, "-"), ("open", f"open_{closed}", "--")):
                for method in ("fine-tune", "scratch", "lightgbm"):
                    line = rows.filter((pl.col("method") == method) & pl.col("fraction").is_not_null()).sort("fraction")
                    if line.height:
                        axis.plot(line["fraction"].to_list(), line[key].to_list(), style, marker="o", markersize=3,
                                  color=colours[method], label=f"{method} ({protocol})")
                for method in ("zero-shot", "lookup"):
                    flat = rows.filter(pl.col("method") == method)
                    if flat.height and not math.isnan(flat[key][0]):
                        axis.axhline(flat[key][0], linestyle=style, color=colours[method], linewidth=1,
                                     label=f"{method} ({protocol})")
            axis.set_xscale("log")
            axis.set_xlabel("share of the target's training split")
            axis.set_ylabel(label)
            axis.set_title(target if row_i == 0 else "")
            axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = min(5, 2 * len(targets))
    legend_rows = -(-len(labels) // columns)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8)
    fig.tight_layout(rect=(0, 0.035 * legend_rows, 1, 1))
    _save(fig, path)
    plt.close(fig)
    return True


def write_report(report_dir: str | os.PathLike[str], outcome: TransferOutcome) -> list[Path]:
    """Write ``results.parquet``, ``report.md`` and ``transfer.png``; return the paths written."""
    report_dir = Path(report_dir)
    results = results_frame(outcome)
    paths = [report_dir / RESULTS_FILE, report_dir / REPORT_FILE]
    atomic_write_bytes(paths[0], lambda tmp: results.write_parquet(tmp))
    targets = list(dict.fromkeys(cell.target for _, cell in outcome.cells))
    run = outcome.run
    options = run.get("options") or {}
    done = sum(key in outcome.records for key, _ in outcome.cells)
    lines = ["# Transfer study", "",
             "Each device in turn is the target; see docs/transfer.md for what every row means.", ""]
    if run.get("command"):
        lines += ["```", run["command"], "```", ""]
    data = run.get("dataset") or {}
    wall = sum(i.get("wall_seconds", 0.0) for i in run.get("invocations", []))
    env = run.get("environment") or {}
    meta = data.get("metadata") or {}
    # The file's name and digest, not the machine's path: a report is read on other machines.
    digest = f", sha256 {meta['sha256'][:16]}…" if meta.get("sha256") else ""
    dataset = (f"- dataset: {Path(meta.get('path', '?')).name}{digest} ({data.get('n_problems', '?'):,} "
               f"(problem, device) rows, {data.get('n_kernels', '?')} kernels, devices: "
               f"{', '.join(data.get('devices', []))})") if data else "- dataset: (not recorded)"
    quick = ", **--quick** (subsample, short training)" if options.get("quick") else ""
    lines += [dataset,
              (f"- cells: {done} of {len(outcome.cells)} finished; wall time {_fmt_seconds(wall)} over "
               f"{len(run.get('invocations', []))} invocation(s)"),
              (f"- seed {options.get('seed')}, target split {options.get('split_fractions')}, few-shot shares "
               f"{options.get('fractions')}, fine-tuning peak lr {options.get('finetune_lr')}, "
               f"{options.get('threads')} thread(s){quick}"),
              f"- machine: {env.get('cpu', '?')}, {env.get('cores', '?')} cores", ""]
    for notice in outcome.notices:
        lines += [f"> {notice}", ""]
    lines += [("Closed protocol: the pick is the best-ranked *measured* kernel; open: the best-ranked candidate "
               "(a miss is charged the slowest measured time).  Zero-shot and lookup use none of the target's "
               "problems (target share 0)."), ""]
    for target in targets:
        lines += [f"## {target}", ""]
        lookup = results.filter((pl.col("target") == target) & (pl.col("method") == "lookup"))
        if lookup.height and not math.isnan(lookup["coverage"][0]):
            lines += [(f"Lookup: {100 * lookup['coverage'][0]:.1f} % of the test problems were measured on some "
                       "other device; the rest fall back to the static order."), ""]
        zero = results.filter((pl.col("target") == target) & (pl.col("method") == "zero-shot"))
        if zero.height and zero["borrowed_share"][0] > 0:  # NaN (older records) compares False
            lines += [(f"Zero-shot: {100 * zero['borrowed_share'][0]:.1f} % of the test problems were ranked by the "
                       "measured order of a training device of the same architecture (docs/transfer.md, "
                       "\"Borrowed orders\")."), ""]
        lines += [target_table(results, target), ""]
    if plot(report_dir / PLOT_FILE, results, targets):
        paths.append(report_dir / PLOT_FILE)
        lines += [f"![top-1 and oracle ratio against the target share]({PLOT_FILE})", ""]
    text = "\n".join(lines)
    atomic_write_bytes(paths[1], lambda tmp: Path(tmp).write_text(text))
    return paths
