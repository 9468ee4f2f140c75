"""What is in a dataset: counts, winners, applicability, oracle vs the best static choice.

The *static* baseline orders kernels by how often they win on the dataset and
picks, for each problem, the first applicable kernel in that order: the rule
of :mod:`kernelbench.ranking`, which ``reformer`` uses too (there on the
training split), ties included.  Ratios compare its time
with the fastest measured kernel ("oracle"): ``static_geomean`` is the geometric
mean of ``t_static / t_best`` over problems, ``static_sum_ratio`` is
``sum(t_static) / sum(t_best)``; both are >= 1 and 1 means static is perfect.
A problem is a (problem_id, device) pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from kernelbench.ranking import first_applicable, oracle_picks, static_order

_KEY = ["problem_id", "device"]
#: Second-best within this factor of the best counts as a near-tie.
NEAR_TIE_FACTOR = 1.05


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
        "directions": _counts(frame.select([*_KEY, "direction"]).unique(), "direction"),
        "dtypes": _counts(frame.select([*_KEY, "dtype"]).unique(), "dtype"),
        "status": _counts(frame, "status"),
    }
    if ok.is_empty():
        out.update(wins={}, applies={}, static_order=[], static_geomean=None, static_sum_ratio=None,
                   near_ties=0, problems_measured=0)
        return out
    kernels, time_ms = _runtime_matrix(ok)
    rows = np.arange(time_ms.shape[0])
    applicable = ~np.isnan(time_ms)
    wins = np.bincount(oracle_picks(time_ms), minlength=len(kernels))
    order = static_order(time_ms)
    t_best = np.nanmin(time_ms, axis=1)
    t_static = time_ms[rows, first_applicable(order, applicable)]
    # Runner-up per problem: the second smallest time (inf where only one kernel applies).
    ranked = np.sort(np.where(applicable, time_ms, np.inf), axis=1)
    t_second = ranked[:, 1] if len(kernels) > 1 else np.full_like(t_best, np.inf)
    out.update(
        problems_measured=int(time_ms.shape[0]),
        wins={kernels[j]: int(wins[j]) for j in order if wins[j] > 0},
        applies={kernels[j]: int(applicable[:, j].sum()) for j in order},
        static_order=[kernels[j] for j in order],
        static_geomean=float(np.exp(np.mean(np.log(t_static / t_best)))),
        static_sum_ratio=float(t_static.sum() / t_best.sum()),
        near_ties=int((t_second <= NEAR_TIE_FACTOR * t_best).sum()),
    )
    return out


def _runtime_matrix(ok: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    """``ok`` rows as ``time_ms[problem, kernel]`` (NaN = no ok row), kernels sorted by name as in
    ``reformer.data.pivot`` so the static order breaks ties identically; repeats reduce to their median."""
    kernels = sorted(ok["kernel"].unique().to_list())
    times = ok.group_by([*_KEY, "kernel"]).agg(pl.col("time_ms").median())
    keys = times.select(_KEY).unique().sort(_KEY).with_row_index("_row")
    columns = pl.DataFrame({"kernel": kernels, "_col": list(range(len(kernels)))})
    times = times.join(keys, on=_KEY).join(columns, on="kernel")
    matrix = np.full((keys.height, len(kernels)), np.nan)
    matrix[times["_row"].to_numpy(), times["_col"].to_numpy()] = times["time_ms"].to_numpy()
    return kernels, matrix


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
    return "\n".join(lines)
