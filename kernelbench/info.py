"""What is in a dataset: counts, winners, applicability, oracle vs the best static choice.

The *static* baseline orders kernels by how often they win on the dataset and
picks, for each problem, the first applicable kernel in that order: the rule
of :mod:`kernelbench.ranking`, which ``reformer`` uses too (there on the
training split), ties included.  Ratios compare its time
with the fastest measured kernel ("oracle"): ``static_geomean`` is the geometric
mean of ``t_static / t_best`` over problems, ``static_sum_ratio`` is
``sum(t_static) / sum(t_best)``; both are >= 1 and 1 means static is perfect.
The same two ratios are given for the *baseline* kernel when the dataset has it
(:data:`BASELINE_KERNELS`: ``torch_default``, what ``F.conv2d`` gives a user
without a selector), over the problems where it has a row.

A problem's best kernel and its runner-up are a *near-tie* when
:func:`kernelbench.timing.near_tie` says their medians cannot be told apart
(within ``TIE_FLOOR``, or more for rows whose ``time_rse`` is large).  ``decided_wins``
counts only the wins that are not near-ties: a kernel that wins many problems
by a coin flip has many wins and few decided wins.
A problem is a (problem_id, device) pair: a dataset of several devices (``kernelbench merge``) counts
a shape once per device that measured it, and ``per_device`` gives each device's counts.
A kernel measured more than once on a
problem (in several runs) counts once, at its median time, as in ``reformer``.
A problem with a single measured kernel offers no choice: the summary counts
them (``single_kernel_problems``), since a selector can neither learn from nor
be scored on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from kernelbench.ranking import first_applicable, oracle_picks, static_order
from kernelbench.timing import TIE_FLOOR, TIE_Z, near_tie

_KEY = ["problem_id", "device"]
#: Kernels shown as the "what you get without a selector" baseline beside static, when a dataset has them.
BASELINE_KERNELS = ("torch_default",)


def summarize(frame: pl.DataFrame) -> dict[str, Any]:
    """Summary statistics of a long-format dataset (see the module docstring)."""
    # Repeated measurements of a pair (several runs) count once, at their median time (_runtime_matrix).
    ok = ok_rows = frame.filter(pl.col("status") == "ok")
    problems = frame.select(_KEY).unique()
    out: dict[str, Any] = {
        "rows": frame.height,
        "ok_rows": ok_rows.height,
        "problems": problems.height,
        "kernels": frame["kernel"].n_unique(),
        "devices": sorted(frame["device"].unique().to_list()),
        "per_device": _per_device(frame),
        "directions": _counts(frame.select([*_KEY, "direction"]).unique(), "direction"),
        "dtypes": _counts(frame.select([*_KEY, "dtype"]).unique(), "dtype"),
        "status": _counts(frame, "status"),
    }
    if ok.is_empty():
        out.update(wins={}, decided_wins={}, applies={}, static_order=[], static_geomean=None,
                   static_sum_ratio=None, near_ties=0, problems_measured=0, baseline=None, single_kernel_problems=0)
        return out
    kernels, time_ms, rse = _runtime_matrix(ok)
    rows = np.arange(time_ms.shape[0])
    applicable = ~np.isnan(time_ms)
    best = oracle_picks(time_ms)
    wins = np.bincount(best, minlength=len(kernels))
    order = static_order(time_ms)
    t_best = time_ms[rows, best]
    t_static = time_ms[rows, first_applicable(order, applicable)]
    # Runner-up per problem: the second fastest kernel (none, and so never a near-tie, where only one applies).
    second = np.argsort(np.where(applicable, time_ms, np.inf), axis=1, kind="stable")[:, min(1, len(kernels) - 1)]
    has_second = applicable.sum(axis=1) > 1
    tie = has_second & near_tie(t_best, rse[rows, best], np.where(has_second, time_ms[rows, second], np.inf),
                                rse[rows, second])
    decided = np.bincount(best[~tie], minlength=len(kernels))
    out.update(
        problems_measured=int(time_ms.shape[0]),
        wins={kernels[j]: int(wins[j]) for j in order if wins[j] > 0},
        decided_wins={kernels[j]: int(decided[j]) for j in order if decided[j] > 0},
        applies={kernels[j]: int(applicable[:, j].sum()) for j in order},
        static_order=[kernels[j] for j in order],
        static_geomean=float(np.exp(np.mean(np.log(t_static / t_best)))),
        static_sum_ratio=float(t_static.sum() / t_best.sum()),
        near_ties=int(tie.sum()),
        baseline=_baseline(kernels, time_ms, rse, best),
        single_kernel_problems=int((applicable.sum(axis=1) == 1).sum()),
        **_load(ok),
    )
    return out


def _per_device(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Per device label: its problems, rows, ok rows and kernels with an ok row."""
    counts = (frame.group_by("device")
              .agg(pl.col("problem_id").n_unique().alias("problems"), pl.len().alias("rows"),
                   (pl.col("status") == "ok").sum().alias("ok_rows"),
                   pl.col("kernel").filter(pl.col("status") == "ok").n_unique().alias("kernels"))
              .sort("device"))
    return {row.pop("device"): {k: int(v) for k, v in row.items()} for row in counts.iter_rows(named=True)}


def _load(ok: pl.DataFrame) -> dict[str, Any]:
    """How many timed rows had other processes busy (``load`` >= the sweep's quiet threshold), and the median load."""
    from kernelbench.sweep import SweepOptions

    threshold = SweepOptions().quiet_threshold_cores
    known = ok["load"].drop_nulls()
    return {"load_threshold_cores": threshold, "load_known_rows": known.len(),
            "loaded_rows": int((known >= threshold).sum()),
            "load_median": float(known.median()) if known.len() else None}


def _baseline(kernels: list[str], time_ms: np.ndarray, rse: np.ndarray, best: np.ndarray) -> dict[str, Any] | None:
    """The first kernel of :data:`BASELINE_KERNELS` in the dataset against the oracle, on the problems it ran."""
    kernel = next((k for k in BASELINE_KERNELS if k in kernels and (~np.isnan(time_ms[:, kernels.index(k)])).any()), None)
    if kernel is None:
        return None
    column = kernels.index(kernel)
    ran = np.flatnonzero(~np.isnan(time_ms[:, column]))
    t_base, t_best = time_ms[ran, column], time_ms[ran, best[ran]]
    return {
        "kernel": kernel,
        "problems": int(len(ran)),
        "geomean": float(np.exp(np.mean(np.log(t_base / t_best)))),
        "sum_ratio": float(t_base.sum() / t_best.sum()),
        # As good as the best within measurement noise (it is the best, or a near-tie of it).
        "near_best": int(near_tie(t_best, rse[ran, best[ran]], t_base, rse[ran, column]).sum()),
    }


def _runtime_matrix(ok: pl.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``ok`` rows as ``time_ms[problem, kernel]`` and ``time_rse[problem, kernel]`` (NaN = no ok row / not
    recorded), kernels sorted by name as in ``reformer.data.pivot`` so the static order breaks ties identically;
    repeats reduce to their median."""
    kernels = sorted(ok["kernel"].unique().to_list())
    times = ok.group_by([*_KEY, "kernel"]).agg(pl.col("time_ms").median(), pl.col("time_rse").median())
    keys = times.select(_KEY).unique().sort(_KEY).with_row_index("_row")
    columns = pl.DataFrame({"kernel": kernels, "_col": list(range(len(kernels)))})
    times = times.join(keys, on=_KEY).join(columns, on="kernel")
    matrix = np.full((keys.height, len(kernels)), np.nan)
    rse = np.full_like(matrix, np.nan)
    at = (times["_row"].to_numpy(), times["_col"].to_numpy())
    matrix[at] = times["time_ms"].to_numpy()
    rse[at] = times["time_rse"].fill_null(np.nan).to_numpy()
    return kernels, matrix, rse


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counts = frame.group_by(column).len().sort(column)
    return dict(zip(counts[column].to_list(), counts["len"].to_list()))


def format_summary(summary: dict[str, Any], metadata: dict[str, Any]) -> str:
    """A terminal table of :func:`summarize`'s result."""
    lines = [
        (f"rows {summary['rows']:,} ({summary['ok_rows']:,} ok)   problems {summary['problems']:,}   "
         f"kernels {summary['kernels']}"),
        f"devices: {', '.join(summary['devices'])}" if len(summary["devices"]) < 2 else
        "devices: " + "; ".join(f"{d} {c['problems']:,} problems, {c['ok_rows']:,} ok rows, {c['kernels']} kernels"
                                for d, c in summary["per_device"].items()),
        "directions: " + ", ".join(f"{k} {v:,}" for k, v in summary["directions"].items()),
        "dtypes: " + ", ".join(f"{k} {v:,}" for k, v in summary["dtypes"].items()),
        "status: " + ", ".join(f"{k} {v:,}" for k, v in summary["status"].items()),
    ]
    if metadata.get("coverage"):
        lines.append(f"coverage: {metadata['coverage']}")
    if summary["wins"] or summary["applies"]:
        measured = max(summary["problems_measured"], 1)
        width = max(len(k) for k in summary["applies"])
        lines.append("")
        lines.append(f"{'kernel':<{width}}  {'wins':>8}  {'win %':>6}  {'decided':>8}  {'applies':>8}  "
                     f"{'applies %':>9}")
        for kernel in summary["static_order"]:
            wins = summary["wins"].get(kernel, 0)
            applies = summary["applies"].get(kernel, 0)
            lines.append(
                f"{kernel:<{width}}  {wins:>8,}  {100 * wins / measured:>5.1f}%  "
                f"{summary['decided_wins'].get(kernel, 0):>8,}  {applies:>8,}  {100 * applies / measured:>8.1f}%"
            )
        lines.append("(decided: wins whose runner-up is not a near-tie)")
        lines.append("")
        lines.append(f"{'vs oracle (t / t_best)':<32}{'geomean':>8}  {'sum ratio':>9}  {'problems':>8}")
        lines.append(f"{'static order (by wins)':<32}{summary['static_geomean']:>8.3f}  "
                     f"{summary['static_sum_ratio']:>9.3f}  {measured:>8,}")
        base = summary.get("baseline")
        if base:
            lines.append(f"{base['kernel'] + ' (no selector)':<32}{base['geomean']:>8.3f}  {base['sum_ratio']:>9.3f}  "
                         f"{base['problems']:>8,}   (best or a near-tie on {base['near_best']:,})")
        lines.append("")
        lines.append(
            f"near-ties: {summary['near_ties']:,} of {measured:,} problems have a runner-up within the tie tolerance "
            f"of the best (max({100 * TIE_FLOOR:.0f} %, {TIE_Z:g} x combined time_rse); docs/dataset-format.md)"
        )
        if summary.get("load_known_rows"):
            lines.append(
                f"timed under load: {summary['loaded_rows']:,} of {summary['load_known_rows']:,} rows with a known "
                f"load were timed while other processes used >= {summary['load_threshold_cores']:g} cores (median "
                f"{summary['load_median']:.2f}); such times need not reproduce (docs/cpu-timing.md)"
            )
        single = summary["single_kernel_problems"]
        if single == summary["problems_measured"]:
            lines.append(f"single measured kernel: every one of the {measured:,} problems, so nothing can be learned "
                         "or scored (reformer fit, evaluate and ablate refuse this dataset)")
        elif single:
            share = 100 * single / measured
            lines.append(f"single measured kernel: {single:,} of {measured:,} problems ({share:.1f}%) "
                         "offer no choice (nothing to learn from or score on them)")
    return "\n".join(lines)
