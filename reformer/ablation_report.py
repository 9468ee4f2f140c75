"""The ablation report: ``results.parquet``, ``report.md`` and PNG plots from a finished grid.

Everything here is a pure function of :class:`reformer.ablate.AblationOutcome`
(cell records + ``run.json``), so a report can be rebuilt from the stored
cells without training anything.  Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kernelbench.schema import atomic_write_bytes
from reformer.columns import COLUMNS, Column
from reformer.grid import NOISE_SIGMAS, STUDY_TITLES, TOP_KS
from reformer.metrics import METRIC_KEYS, OPEN_METRIC_KEYS, TOPK_KEYS

RESULTS_FILE = "results.parquet"
REPORT_FILE = "report.md"
CDF_PNG = "cdf_pick_over_best.png"
CURVES_PNG = "training_curves.png"


def topk_column(k: int, name: str, *, open_protocol: bool = False) -> str:
    """The ``results.parquet`` column of ``metrics["topk"][str(k)][name]`` (``open_topk`` with ``open_protocol``):
    ``top2_oracle_ratio``, ``open_top3_top1``, ..."""
    return f"{'open_' if open_protocol else ''}top{k}_{name}"


#: The top-k columns: each protocol (closed, then open), each k of :data:`reformer.grid.TOP_KS`, each
#: :data:`reformer.metrics.TOPK_KEYS`.
TOPK_COLUMNS = tuple(topk_column(k, name, open_protocol=o) for o in (False, True) for k in TOP_KS for name in TOPK_KEYS)
#: Columns of ``results.parquet``, in order: the issue's names (metric keys as in ``reformer evaluate --json``).
RESULT_COLUMNS = ("study", "variant", "seed", *METRIC_KEYS, *OPEN_METRIC_KEYS, *TOPK_COLUMNS, "train_top1",
                  "fit_seconds", "latency_us_p50", "batched_per_s")


#: The open-protocol columns of the studies that compare selectors' rankings (cells computed before the open
#: protocol existed show "–" there).
_OPEN_COLUMNS = ("open_hit_rate", "open_top1", "open_within5", "open_oracle_ratio", "open_sum_ratio",
                 "top2_oracle_ratio", "open_top2_oracle_ratio")
#: The columns of each study's table (the metrics the issue asks for, and the ones that explain them).
STUDY_COLUMNS = {
    # Σ speedups hinge on the few longest test problems (one mis-pick can halve them), so every study
    # that reports a speedup shows the per-problem geomean beside it.
    "labels": ("top1", "within5", "oracle_ratio", "sum_ratio", "mean_pick_ms", "speedup_static_sum",
               "speedup_static_geomean", *_OPEN_COLUMNS),
    "candidates": ("top1", "oracle_ratio", "sum_ratio", *_OPEN_COLUMNS),
    "paths": ("train_top1", "top1", "oracle_ratio", "speedup_static_sum", "speedup_static_geomean", "fit_seconds",
              "latency_us_p50", "batched_per_s"),
    "blocks": ("top1", "within5", "oracle_ratio", "fit_seconds", "latency_us_p50", "batched_per_s"),
    "block-type": ("train_top1", "top1", "oracle_ratio", "fit_seconds", "latency_us_p50", "batched_per_s"),
    "noise": ("top1", "within5", "oracle_ratio", "sum_ratio", "speedup_static_sum", "speedup_static_geomean"),
    "baselines": ("train_top1", "top1", "within5", "oracle_ratio", "sum_ratio", "mean_pick_ms",
                  "speedup_static_sum", "speedup_static_geomean", *_OPEN_COLUMNS, "fit_seconds", "latency_us_p50",
                  "batched_per_s"),
}
#: Rows never marked best: upper bounds, not competitors.
NOT_COMPETING = ("oracle",)
#: Rows drawn in the CDF plot, (study, variant) -> legend label; missing rows are left out.
CDF_ROWS = (
    ("baselines", "reformer (defaults)", "Reformer (defaults)"),
    ("labels", "onehot", "Reformer, one-hot labels"),
    ("labels", "softmax τ=1 ms", "Reformer, softmax τ=1 ms"),
    ("block-type", "transformer", "transformer blocks"),
    ("baselines", "lightgbm", "LightGBM"),
    ("baselines", "mlp", "MLP (TunaNet-shaped)"),
    ("baselines", "static", "static order"),
    ("baselines", "torch_default", "torch_default (F.conv2d, no selector)"),
    ("baselines", "random", "random applicable"),
)


# ---------------------------------------------------------------- tables


def results_frame(outcome: Any) -> pl.DataFrame:
    """One row per (study, variant, seed) with a finished cell, columns :data:`RESULT_COLUMNS`."""
    rows = []
    for variant in outcome.variants:
        for seed in outcome.seeds:
            record = outcome.records.get(outcome.keys.get((variant.study, variant.name, seed), ""))
            if record is None:
                continue
            metrics = record["metrics"]
            row = {"study": variant.study, "variant": variant.name, "seed": seed,
                   **{k: v for k, v in metrics.items() if k not in ("topk", "open_topk")}}
            for open_protocol, key in ((False, "topk"), (True, "open_topk")):
                for k in TOP_KS:
                    entry = metrics.get(key, {}).get(str(k), {})  # absent in cells older than the metric: null
                    row.update({topk_column(k, name, open_protocol=open_protocol): entry.get(name)
                                for name in TOPK_KEYS})
            row.update({k: record[k] for k in ("train_top1", "fit_seconds", "latency_us_p50", "batched_per_s")})
            rows.append(row)
    schema = {c: pl.Float64 for c in RESULT_COLUMNS}
    schema.update(study=pl.String, variant=pl.String, seed=pl.Int64, n_problems=pl.Int64, skipped_problems=pl.Int64)
    return pl.DataFrame(rows, schema=schema).select(RESULT_COLUMNS)


def summarize(results: pl.DataFrame) -> pl.DataFrame:
    """Mean and sample standard deviation over seeds per (study, variant), in first-appearance order."""
    metrics = [c for c in RESULT_COLUMNS if c not in ("study", "variant", "seed", "n_problems", "skipped_problems")]
    return (
        results.with_row_index("_order")
        .group_by("study", "variant", maintain_order=True)
        .agg(pl.col("_order").min(), pl.len().alias("seeds"),
             *[pl.col(c).mean().alias(c) for c in metrics], *[pl.col(c).std().alias(f"{c}_std") for c in metrics])
        .sort("_order")
        .drop("_order")
    )


def _cell_text(column: Column, mean: float | None, std: float | None) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    text = column.fmt.format(mean)
    if std is not None and not math.isnan(std):
        text += f" ± {column.fmt.format(std)}"
    return text


def study_table(summary: pl.DataFrame, study: str) -> str:
    """A Markdown table of one study: mean ± std over seeds; the best mean per column in bold."""
    rows = summary.filter(pl.col("study") == study)
    columns = [COLUMNS[k] for k in STUDY_COLUMNS[study]]
    best: dict[str, str] = {}
    for column in columns:
        candidates = [
            (v, column.fmt.format(v))
            for v, name in zip(rows[column.key].to_list(), rows["variant"].to_list())
            if name not in NOT_COMPETING and v is not None and not math.isnan(v)
        ]
        if candidates:
            pick = max if column.higher_is_better else min
            best[column.key] = pick(candidates, key=lambda c: c[0])[1]
    lines = ["| variant | " + " | ".join(c.header for c in columns) + " |",
             "|---|" + "|".join("---:" for _ in columns) + "|"]
    for row in rows.iter_rows(named=True):
        cells = []
        for column in columns:
            text = _cell_text(column, row[column.key], row[f"{column.key}_std"])
            mean = row[column.key]
            is_best = (row["variant"] not in NOT_COMPETING and mean is not None and not math.isnan(mean)
                       and column.fmt.format(mean) == best.get(column.key))
            cells.append(f"**{text}**" if is_best else text)
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


#: Bar panels of every study plot: (result key, x label, value label format).
SELECTION_PANELS = (
    ("top1", "test top-1 accuracy (fastest kernel picked)", "  {:.4f}"),
    ("speedup_static_sum", "speedup over the static order, Σt_static / Σt_pick", "  {:.2f}×"),
    ("speedup_static_geomean", "speedup over the static order, geomean of t_static / t_pick", "  {:.2f}×"),
)
#: A second row for the studies whose point is what a variant costs (the issue's training and inference times).
COST_PANELS = (
    ("fit_seconds", "training time (s, encoding + epochs)", "  {:,.0f} s"),
    ("latency_us_p50", "latency of one selection (µs, median, 1 thread)", "  {:,.0f} µs"),
    ("batched_per_s", "batched selection (problems/s)", "  {:,.0f}/s"),
)
COST_STUDIES = ("paths", "blocks", "block-type")


def _bar_panel(axis: Any, y: np.ndarray, rows: pl.DataFrame, key: str, label: str, value_fmt: str, *,
               from_zero: bool) -> None:
    mean = np.array([np.nan if v is None else v for v in rows[key].to_list()], dtype=float)
    std = np.nan_to_num(np.array([np.nan if v is None else v for v in rows[f"{key}_std"].to_list()], dtype=float))
    axis.barh(y, mean, xerr=std, color="#4c72b0", ecolor="black", capsize=3, height=0.6)
    finite = np.isfinite(mean)
    if finite.any():
        low, high = float(np.min(mean[finite] - std[finite])), float(np.max(mean[finite] + std[finite]))
        if from_zero:
            # Costs compare as ratios (3x slower), so their bars start at zero.
            axis.set_xlim(0.0, 1.35 * high)
            axis.xaxis.set_major_formatter("{x:,.0f}")
        else:
            # Zoom so that differences of a few tenths of a percent are visible; bars start at the axis edge.
            pad = max(0.02 * abs(high), 0.15 * (high - low), 1e-3)
            right = high + 2.5 * pad
            # Accuracy cannot exceed 1: leave room for the value labels only.
            axis.set_xlim(max(0.0, low - pad), min(right, 1.0 + 2.5 * pad) if key == "top1" else right)
            if key != "top1":
                axis.axvline(1.0, color="grey", linewidth=1, linestyle=":")  # the static order itself
        for yi, value, spread in zip(y, mean, std):
            if np.isfinite(value):
                # Right of the error bar, so the number never sits on the whisker.
                axis.text(value + spread, yi, value_fmt.format(value), va="center", fontsize=9)
    axis.set_xlabel(label)
    axis.grid(axis="x", alpha=0.3)


def plot_study(path: Path, summary: pl.DataFrame, study: str, title: str) -> None:
    """Horizontal bars (mean, error bar = std over seeds) of test top-1 and of the speedup over static (Σ and
    geomean: the Σ speedup hinges on the few longest problems), per variant; for the studies in
    :data:`COST_STUDIES` a second row of training time, single-selection latency and batched throughput."""
    plt = _pyplot()
    rows = summary.filter(pl.col("study") == study)
    names = rows["variant"].to_list()
    y = np.arange(len(names))
    panel_rows = [SELECTION_PANELS] + ([COST_PANELS] if study in COST_STUDIES else [])
    height = 1.0 + 0.45 * len(names) + 1.2
    fig, axes = plt.subplots(len(panel_rows), 3, figsize=(16, height * len(panel_rows)), constrained_layout=True,
                             sharey=True, squeeze=False)
    for axis_row, panels in zip(axes, panel_rows):
        for axis, (key, label, value_fmt) in zip(axis_row, panels):
            _bar_panel(axis, y, rows, key, label, value_fmt, from_zero=panels is COST_PANELS)
        axis_row[0].set_yticks(y, names)
    axes[0][0].invert_yaxis()
    seeds = int(rows["seeds"].max()) if rows.height else 0
    fig.suptitle(f"{title}\n(mean over {seeds} seed(s), error bars: ±1 std; accuracy and speedup axes zoomed)",
                 fontsize=11)
    _save(fig, path)
    plt.close(fig)


def plot_cdf(path: Path, outcome: Any, seed: int) -> bool:
    """CDF over test problems of t_pick / t_best for the main variants and the baselines; False if none.

    Two panels: near the fastest kernel (linear x up to 1.5, where the learned
    selectors differ) and the whole range (log x, where random and static differ).
    """
    plt = _pyplot()
    lines = []
    for index, (study, variant, label) in enumerate(CDF_ROWS):
        record = outcome.records.get(outcome.keys.get((study, variant, seed), ""))
        if record is not None:
            dashed = study == "baselines" and variant != "reformer (defaults)"
            lines.append((f"{label} (top-1 {record['metrics']['top1']:.3f})", np.asarray(record["ratio_quantiles"]),
                          "--" if dashed else "-", f"C{index}"))  # one colour per row in every report
    if not lines:
        return False
    fig, (near, full) = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True, sharey=True)
    for label, quantiles, style, color in lines:
        probabilities = np.linspace(0.0, 1.0, len(quantiles))
        for axis in (near, full):
            axis.step(quantiles, probabilities, where="post", linestyle=style, linewidth=1.8, color=color, label=label)
    near.set_xlim(1.0, 1.5)
    near.set_xlabel("t_pick / t_best (1 = the fastest kernel was picked)")
    near.set_title("near the fastest kernel")
    near.set_ylabel("fraction of test problems with t_pick / t_best ≤ x")
    full.set_xscale("log")
    full.set_xlim(1.0, None)
    full.set_xlabel("t_pick / t_best (log scale)")
    full.set_title("whole range")
    full.legend(loc="lower right", fontsize=9)
    for axis in (near, full):
        axis.set_ylim(0.0, 1.01)
        axis.grid(alpha=0.3, which="both")
    fig.suptitle(f"How far from the fastest kernel each selector lands (test split, seed {seed})")
    _save(fig, path)
    plt.close(fig)
    return True


def plot_curves(path: Path, outcome: Any, seed: int, titles: dict[str, str]) -> bool:
    """Validation top-1 per epoch of every trained variant, one panel per study; False if nothing was trained."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    panels: list[tuple[str, list[tuple[str, list[dict[str, Any]]]]]] = []
    for study in dict.fromkeys(v.study for v in outcome.variants):
        lines = []
        for variant in (v for v in outcome.variants if v.study == study):
            record = outcome.records.get(outcome.keys.get((study, variant.name, seed), ""))
            if record and record.get("curve"):
                lines.append((variant.name, record["curve"]))
        if lines:
            panels.append((study, lines))
    if not panels:
        return False
    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 3.8 * rows), constrained_layout=True, squeeze=False)
    for axis, (study, lines) in zip(axes.flat, panels):
        # The noise study is σ-major with one line per label formulation: colour = labels, line style = σ.
        group = len(lines) // len(NOISE_SIGMAS) if study == "noise" and len(lines) % len(NOISE_SIGMAS) == 0 else len(lines)
        for i, (name, curve) in enumerate(lines):
            axis.plot([r["epoch"] for r in curve], [r["validation_top1"] for r in curve], marker="o", markersize=3,
                      color=f"C{i % group}", linestyle=("-", "--", ":", "-.")[(i // group) % 4], label=name)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(titles.get(study, study), fontsize=10)
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation top-1")
        axis.grid(alpha=0.3)
        many = len(lines) > 6
        axis.legend(fontsize=7 if many else 8, ncol=3 if many else 1, loc="best")
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    fig.suptitle(f"Training curves (seed {seed}; the epoch with the best validation oracle ratio is kept)")
    _save(fig, path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- report.md


def _fmt_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _device_name(meta: dict[str, Any]) -> str | None:
    """The dataset's device as text: a name string, or the ``name`` (and ``label``) of a device record."""
    device = meta.get("device")
    if isinstance(device, dict):
        name, label = device.get("name"), device.get("label")
        return f"{name} ({label})" if name and label else name or label
    return str(device) if device else None


def _setup_section(outcome: Any, results: pl.DataFrame) -> list[str]:
    run = outcome.run
    data = run.get("dataset", {})
    meta = data.get("metadata", {})
    options = run.get("options", {})
    env = run.get("environment", {})
    lines = ["## Setup", ""]
    if options.get("quick"):
        q = options["quick"]
        lines += [(f"**Quick variant** (`--quick`): a seeded subsample of {q['problems']:,} problems "
                  f"(seed {q['seed']}), Reformer {q['epochs']} epochs, MLP {q['mlp_epochs']} epochs, "
                  f"LightGBM ≤ {q['lightgbm_rounds']} rounds. Not the full grid; expect lower accuracy "
                  "than fully trained models."), ""]
    subsample = meta.get("subsample")
    shown = {k: v for k, v in meta.items() if k not in ("subsample",) and not isinstance(v, (dict, list))}
    device = _device_name(meta)
    lines += ["**Dataset**: " + (f"device {device}, " if device else "")
              + ", ".join(f"{k} `{v}`" for k, v in sorted(shown.items()) if k != "device"),
              f"{data.get('n_problems', 0):,} problems"
              + (f" (subsample of {subsample['of']:,})" if subsample else "")
              + f", {data.get('n_kernels', 0)} kernels, {data.get('dropped_problems', 0)} problems without an ok row dropped.",
              ""]
    splits = run.get("splits", {})
    if splits:
        first = next(iter(splits.values()))
        sizes = "; ".join(f"seed {s}: " + "/".join(f"{v:,}" for v in sp["sizes"].values()) for s, sp in splits.items())
        lines += [(f"**Split**: {first['description'].replace(' seed ' + str(first['seed']), '')}, by problem; "
                  f"one split per seed, shared by every cell of that seed (train/validation/test sizes {sizes})."), ""]
    lines += [f"**Seeds**: {', '.join(str(s) for s in outcome.seeds)} (metrics: mean ± sample std over seeds).", ""]
    base = options.get("base", {})
    if base:
        keys = ("labels", "ratio_power", "dim", "blocks", "block", "paths", "activation", "exact_values", "epochs",
                "min_steps", "batch_size", "lr", "weight_decay", "schedule", "patience")
        trained = (f"with `--epochs {options['epochs']}`" if options.get("epochs") is not None
                   else "with `--quick`'s epochs in a quick run")
        lines += [f"**Reformer base configuration** (`reformer fit` defaults, {trained}; "
                  "every variant changes only its study's field): "
                  + ", ".join(f"{k}={base[k]}" for k in keys if k in base)
                  + f", derived tokens {', '.join(base.get('derived', [])) or 'none'}.", ""]
    lines += [(f"**Hardware**: {env.get('cpu', '?')}, {env.get('cores', '?')} cores, {env.get('memory_gb', '?')} GB; "
              f"{env.get('platform', '?')}; {options.get('jobs', 1)} job(s) x {options.get('threads_per_job', '?')} "
              "thread(s) per cell: fit times and batched throughput use that many threads, single-problem latency "
              "1 thread."), ""]
    versions = env.get("versions", {})
    lines += ["**Packages**: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    invocations = run.get("invocations", [])
    total = sum(i["wall_seconds"] for i in invocations)
    cell_seconds = sum(r.get("cell_seconds", 0.0) for r in outcome.records.values())
    cpu_seconds = sum(r.get("cell_cpu_seconds", 0.0) for r in outcome.records.values())
    jobs = max(1, int(options.get("jobs", 1)))
    # Only invocations that computed cells say anything about the conditions the times were taken in.
    loads = [i["load_average"] for i in invocations if i.get("load_average") and i.get("computed")]
    if loads:
        low, high = min(x["min"] for x in loads), max(x["max"] for x in loads)
        median = float(np.median([x["median"] for x in loads]))
        lines += [(f"**Machine load**: 1-minute load average {low:.1f}–{high:.1f} (median {median:.1f}), sampled "
                   f"after every cell, on {env.get('cores', '?')} cores; above the core count the cells shared the "
                   "CPU with other work and their wall times are upper bounds (CPU times are not affected)."), ""]
    # Runs recorded before invocations were checkpointed have no "ended" key; they always ended cleanly.
    killed = sum(not i.get("ended", True) for i in invocations)
    # From run.json, not this call: a --report-only call computes nothing and is not an invocation of the grid.
    last = invocations[-1] if invocations else {}
    killed_note = (f", {killed} of them without a recorded end (killed outright, or still running), counted up "
                   "to their last finished cell" if killed else "")
    lines += [(f"**Wall time**: {_fmt_seconds(total)} in {len(invocations)} invocation(s){killed_note} "
              f"(cells computed by the last one: {last.get('computed', outcome.computed)}, "
              f"read back: {last.get('reused', outcome.reused)}); "
              f"sum of per-cell compute time {_fmt_seconds(cell_seconds)} over {len(outcome.records)} distinct cells "
              f"({results.height} result rows); their CPU time {_fmt_seconds(cpu_seconds)}, i.e. about "
              f"{_fmt_seconds(cpu_seconds / jobs)} of wall time with {jobs} job(s) on {jobs} otherwise idle core(s)."), ""]
    if run.get("command"):
        lines += ["**Command**:", "", "```", run["command"], "```", ""]
    return lines


def write_report(report_dir: str | os.PathLike[str], outcome: Any, *, titles: dict[str, str] | None = None) -> list[Path]:
    """Write ``results.parquet``, ``report.md`` and the PNG plots into ``report_dir``; return the paths written.

    Raises:
        InputError: the directory cannot be written.
    """
    titles = titles or STUDY_TITLES
    report_dir = Path(report_dir)
    results = results_frame(outcome)
    written = [report_dir / RESULTS_FILE]
    atomic_write_bytes(written[0], lambda tmp: results.write_parquet(tmp))
    summary = summarize(results)
    meta = outcome.run.get("dataset", {}).get("metadata", {})
    name = _device_name(meta) or Path(str(meta.get("path", "dataset"))).name
    quick = " — quick variant" if outcome.run.get("options", {}).get("quick") else ""
    lines = [f"# Reformer ablations: {name}{quick}", "",
             ("Generated by `reformer ablate` (see `docs/ablations.md`). Test-split metrics unless a column says "
             "otherwise; the best mean per column is **bold** (the oracle is an upper bound and never marked)."), ""]
    missing = len(set(outcome.keys.values()) - set(outcome.records))
    if missing:
        lines += [(f"**Incomplete**: {missing} of {len(set(outcome.keys.values()))} cells are not computed yet; "
                   "their rows are missing or average fewer seeds. Re-run the command to compute them."), ""]
    lines += _setup_section(outcome, results)
    if outcome.notices:
        lines += ["## Notices", "", *[f"- {n}" for n in outcome.notices], ""]
    for study in dict.fromkeys(v.study for v in outcome.variants):
        if summary.filter(pl.col("study") == study).height == 0:
            continue
        png = f"study_{study}.png"
        plot_study(report_dir / png, summary, study, titles.get(study, study))
        written.append(report_dir / png)
        lines += [f"## {titles.get(study, study)}", "", study_table(summary, study), "", f"![{study}]({png})", ""]
    seed = outcome.seeds[0]
    if plot_cdf(report_dir / CDF_PNG, outcome, seed):
        written.append(report_dir / CDF_PNG)
        lines += ["## Distance from the fastest kernel", "", f"![CDF of t_pick / t_best]({CDF_PNG})", ""]
    if plot_curves(report_dir / CURVES_PNG, outcome, seed, titles):
        written.append(report_dir / CURVES_PNG)
        lines += ["## Training curves", "", f"![training curves]({CURVES_PNG})", ""]
    lines += ["## Metric definitions", "",
              ("top-1: picked kernel is the fastest; within-5 %: t_pick ≤ 1.05·t_best; oracle ratio: geomean of "
              "t_best/t_pick (1 is perfect); Σpick/Σbest: total picked time over total best time; speedup vs static: "
              "Σt_static/Σt_pick and geomean of t_static/t_pick, static = kernels ordered by training-split wins, "
              "first applicable; latency: one `select` call (feature encoding included), median; batched: test split "
              "scored in one call, best of repeats. Definitions: `reformer/metrics.py`."), ""]
    text = "\n".join(lines)
    atomic_write_bytes(report_dir / REPORT_FILE, lambda tmp: Path(tmp).write_text(text))
    written.insert(1, report_dir / REPORT_FILE)
    return written

