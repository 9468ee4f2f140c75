"""What is in a dataset: counts, winners, applicability, oracle vs the best static choice.

The *static* baseline orders kernels by how often they win on the dataset and
picks, for each problem, the first applicable kernel in that order (the same
rule ``reformer`` uses, there on the training split).  Ratios compare its time
with the fastest measured kernel ("oracle"): ``static_geomean`` is the geometric
mean of ``t_static / t_best`` over problems, ``static_sum_ratio`` is
``sum(t_static) / sum(t_best)``; both are >= 1 and 1 means static is perfect.
A problem is a (problem_id, device) pair.  A kernel measured more than once on a
problem (in several runs) counts once, at its median time, as in ``reformer``.
A problem with a single measured kernel offers no choice: the summary counts
them (``single_kernel_problems``), since a selector can neither learn from nor
be scored on them.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

_KEY = ["problem_id", "device"]
#: Second-best within this factor of the best counts as a near-tie.
NEAR_TIE_FACTOR = 1.05


def summarize(frame: pl.DataFrame) -> dict[str, Any]:
    """Summary statistics of a long-format dataset (see the module docstring)."""
    ok_rows = frame.filter(pl.col("status") == "ok")
    # Repeated measurements of a pair (several runs) count once, at their median time.
    ok = ok_rows.group_by([*_KEY, "kernel"], maintain_order=True).agg(pl.col("time_ms").median())
    problems = frame.select(_KEY).unique()
    out: dict[str, Any] = {
        "rows": frame.height,
        "ok_rows": ok_rows.height,
        "problems": problems.height,
        "kernels": frame["kernel"].n_unique(),
        "devices": sorted(frame["device"].unique().to_list()),
        "directions": _counts(frame.select([*_KEY, "direction"]).unique(), "direction"),
        "dtypes": _counts(frame.select([*_KEY, "dtype"]).unique(), "dtype"),
        "status": _counts(frame, "status"),
    }
    if ok.is_empty():
        out.update(wins={}, applies={}, static_order=[], static_geomean=None, static_sum_ratio=None,
                   near_ties=0, problems_measured=0, single_kernel_problems=0)
        return out
    ranked = ok.with_columns(pl.col("time_ms").rank("ordinal").over(_KEY).alias("_rank"))
    best = ranked.filter(pl.col("_rank") == 1).select([*_KEY, "kernel", pl.col("time_ms").alias("t_best")])
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
    second = ranked.filter(pl.col("_rank") == 2).select([*_KEY, pl.col("time_ms").alias("t_second")])
    ties = best.join(second, on=_KEY).filter(pl.col("t_second") <= NEAR_TIE_FACTOR * pl.col("t_best")).height
    log_ratio = (static["t_static"] / static["t_best"]).log().mean()
    out.update(
        problems_measured=best.height,
        wins=dict(zip(wins["kernel"].to_list(), wins["len"].to_list())),
        applies=dict(zip(applies["kernel"].to_list(), applies["len"].to_list())),
        static_order=order,
        static_geomean=float(math.exp(log_ratio)),
        static_sum_ratio=float(static["t_static"].sum() / static["t_best"].sum()),
        near_ties=ties,
        single_kernel_problems=ok.group_by(_KEY).len().filter(pl.col("len") == 1).height,
    )
    return out


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counts = frame.group_by(column).len().sort(column)
    return dict(zip(counts[column].to_list(), counts["len"].to_list()))


def format_summary(summary: dict[str, Any], metadata: dict[str, Any]) -> str:
    """A terminal table of :func:`summarize`'s result."""
    lines = [
        (f"rows {summary['rows']:,} ({summary['ok_rows']:,} ok)   problems {summary['problems']:,}   "
         f"kernels {summary['kernels']}"),
        f"devices: {', '.join(summary['devices'])}",
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
        lines.append(f"{'kernel':<{width}}  {'wins':>8}  {'win %':>6}  {'applies':>8}  {'applies %':>9}")
        for kernel in summary["static_order"]:
            wins = summary["wins"].get(kernel, 0)
            applies = summary["applies"].get(kernel, 0)
            lines.append(
                f"{kernel:<{width}}  {wins:>8,}  {100 * wins / measured:>5.1f}%  {applies:>8,}  "
                f"{100 * applies / measured:>8.1f}%"
            )
        lines.append("")
        lines.append(
            f"static order (by wins) vs oracle: geomean t_static/t_best {summary['static_geomean']:.3f}, "
            f"sum ratio {summary['static_sum_ratio']:.3f}"
        )
        lines.append(
            f"near-ties: {summary['near_ties']:,} of {measured:,} problems have a runner-up within "
            f"{100 * (NEAR_TIE_FACTOR - 1):.0f}% of the best"
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
