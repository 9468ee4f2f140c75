"""What is in a dataset: counts, winners, applicability, oracle vs the best static choice.

The *static* baseline orders kernels by how often they win on the dataset and
picks, for each problem, the first applicable kernel in that order (the same
rule ``reformer`` uses, there on the training split).  Ratios compare its time
with the fastest measured kernel ("oracle"): ``static_geomean`` is the geometric
mean of ``t_static / t_best`` over problems, ``static_sum_ratio`` is
``sum(t_static) / sum(t_best)``; both are >= 1 and 1 means static is perfect.
The same two ratios are given for the *baseline* kernel when the dataset has it
(:data:`BASELINE_KERNELS`: ``torch_default``, what ``F.conv2d`` gives a user
without a selector), over the problems where it has a row.

A problem's best kernel and its runner-up are a *near-tie* when
:func:`kernelbench.timing.near_tie` says their medians cannot be told apart
(within 5 %, or more for rows whose ``time_rse`` is large).  ``decided_wins``
counts only the wins that are not near-ties: a kernel that wins many problems
by a coin flip has many wins and few decided wins.
A problem is a (problem_id, device) pair: a dataset of several devices (``kernelbench merge``) counts
a shape once per device that measured it, and ``per_device`` gives each device's counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from kernelbench.timing import TIE_FLOOR, TIE_Z, near_tie

_KEY = ["problem_id", "device"]
#: Kernels shown as the "what you get without a selector" baseline beside static, when a dataset has them.
BASELINE_KERNELS = ("torch_default",)


def summarize(frame: pl.DataFrame) -> dict[str, Any]:
    """Summary statistics of a long-format dataset (see the module docstring)."""
    ok = frame.filter(pl.col("status") == "ok")
    problems = frame.select(_KEY).unique()
    out: dict[str, Any] = {
        "rows": frame.height,
        "ok_rows": ok.height,
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
                   static_sum_ratio=None, near_ties=0, problems_measured=0, baseline=None)
        return out
    ranked = ok.with_columns(pl.col("time_ms").rank("ordinal").over(_KEY).alias("_rank"))
    best = ranked.filter(pl.col("_rank") == 1).select([*_KEY, "kernel", pl.col("time_ms").alias("t_best"),
                                                        pl.col("time_rse").alias("rse_best")])
    wins = best.group_by("kernel").len().sort(["len", "kernel"], descending=[True, False])
    applies = ok.group_by("kernel").len().sort(["len", "kernel"], descending=[True, False])
    order = wins["kernel"].to_list() + sorted(set(ok["kernel"].unique().to_list()) - set(wins["kernel"].to_list()))
    priority = pl.DataFrame({"kernel": order, "_priority": list(range(len(order)))})
    static = (
        ok.join(priority, on="kernel")
        .sort("_priority")
        .group_by(_KEY, maintain_order=True)
        .first()
        .select([*_KEY, pl.col("time_ms").alias("t_static")])
        .join(best.select([*_KEY, "t_best"]), on=_KEY)
    )
    second = ranked.filter(pl.col("_rank") == 2).select([*_KEY, pl.col("time_ms").alias("t_second"),
                                                          pl.col("time_rse").alias("rse_second")])
    paired = best.join(second, on=_KEY, how="left")
    tied = paired.with_columns(pl.Series("_tie", _near_tie(paired, "t_best", "rse_best", "t_second", "rse_second")))
    decided = tied.filter(~pl.col("_tie")).group_by("kernel").len()
    log_ratio = (static["t_static"] / static["t_best"]).log().mean()
    out.update(
        problems_measured=best.height,
        wins=dict(zip(wins["kernel"].to_list(), wins["len"].to_list())),
        decided_wins=dict(zip(decided["kernel"].to_list(), decided["len"].to_list())),
        applies=dict(zip(applies["kernel"].to_list(), applies["len"].to_list())),
        static_order=order,
        static_geomean=float(math.exp(log_ratio)),
        static_sum_ratio=float(static["t_static"].sum() / static["t_best"].sum()),
        near_ties=int(tied["_tie"].sum()),
        baseline=_baseline(ok, best),
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


def _near_tie(frame: pl.DataFrame, t_a: str, rse_a: str, t_b: str, rse_b: str) -> np.ndarray:
    """:func:`kernelbench.timing.near_tie` per row; False where ``t_b`` is missing (no runner-up)."""
    t_other = frame[t_b].fill_null(np.inf).to_numpy()
    return near_tie(frame[t_a].to_numpy(), frame[rse_a].fill_null(np.nan).to_numpy(),
                    t_other, frame[rse_b].fill_null(np.nan).to_numpy())


def _baseline(ok: pl.DataFrame, best: pl.DataFrame) -> dict[str, Any] | None:
    """The first kernel of :data:`BASELINE_KERNELS` in the dataset against the oracle, on the problems it ran."""
    kernel = next((k for k in BASELINE_KERNELS if ok.filter(pl.col("kernel") == k).height), None)
    if kernel is None:
        return None
    rows = (ok.filter(pl.col("kernel") == kernel)
            .select([*_KEY, pl.col("time_ms").alias("t_base"), pl.col("time_rse").alias("rse_base")])
            .join(best, on=_KEY))
    return {
        "kernel": kernel,
        "problems": rows.height,
        "geomean": float(math.exp((rows["t_base"] / rows["t_best"]).log().mean())),
        "sum_ratio": float(rows["t_base"].sum() / rows["t_best"].sum()),
        # As good as the best within measurement noise (it is the best, or a near-tie of it).
        "near_best": int(_near_tie(rows, "t_best", "rse_best", "t_base", "rse_base").sum()),
    }


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
    return "\n".join(lines)
