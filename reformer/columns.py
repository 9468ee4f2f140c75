"""How every reported metric is labelled and formatted: one table for the fit table and the ablation report.

:mod:`reformer.report` prints the ``short`` headers in fixed-width terminal
tables; :mod:`reformer.ablation_report` uses ``header`` in Markdown tables and
``higher_is_better`` to mark the best row.  The metrics themselves are defined
in :mod:`reformer.metrics`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Column:
    """A reported value: result key, long header, short (terminal) header, number format, and whether larger is
    better."""

    key: str
    header: str
    short: str
    fmt: str
    higher_is_better: bool


#: Every reported value by key (metric keys as in ``reformer evaluate --json`` and ``metrics.json``).
COLUMNS: dict[str, Column] = {c.key: c for c in (
    Column("train_top1", "train top-1", "train top-1", "{:.4f}", True),
    Column("top1", "top-1", "top-1", "{:.4f}", True),
    Column("within5", "within-5 %", "within-5%", "{:.4f}", True),
    Column("tie_top1", "top-1 or near-tie", "top-1/tie", "{:.4f}", True),
    Column("oracle_ratio", "oracle ratio", "oracle ratio", "{:.4f}", True),
    Column("sum_ratio", "Σpick/Σbest", "Σpick/Σbest", "{:.4f}", False),
    Column("mean_pick_ms", "mean t_pick (ms)", "mean pick ms", "{:.4f}", False),
    Column("speedup_static_sum", "speedup vs static (Σ)", "speedup Σ", "{:.3f}", True),
    Column("speedup_static_geomean", "speedup vs static (geomean)", "speedup geo", "{:.3f}", True),
    Column("open_hit_rate", "open: hit rate", "hit rate", "{:.4f}", True),
    Column("open_top1", "open: top-1", "top-1", "{:.4f}", True),
    Column("open_within5", "open: within-5 %", "within-5%", "{:.4f}", True),
    Column("open_oracle_ratio", "open: oracle ratio", "oracle ratio", "{:.4f}", True),
    Column("open_sum_ratio", "open: Σpick/Σbest", "Σpick/Σbest", "{:.4f}", False),
    Column("top2_oracle_ratio", "top-2 oracle ratio", "top-2 oracle", "{:.4f}", True),
    Column("top2_sum_ratio", "top-2 Σpick/Σbest", "top-2 Σ", "{:.4f}", False),
    Column("open_top2_oracle_ratio", "open: top-2 oracle ratio", "top-2 oracle", "{:.4f}", True),
    Column("open_top2_sum_ratio", "open: top-2 Σpick/Σbest", "top-2 Σ", "{:.4f}", False),
    Column("fit_seconds", "fit (s)", "fit s", "{:.1f}", False),
    Column("latency_us_p50", "latency p50 (µs, 1 problem, 1 thread)", "p50 µs", "{:.0f}", False),
    Column("batched_per_s", "batched (problems/s)", "problems/s", "{:,.0f}", True),
)}  # fmt: skip

#: The columns of the open-protocol terminal table (``reformer fit`` / ``evaluate``), in order.
OPEN_TABLE = ("open_hit_rate", "open_top1", "open_within5", "open_oracle_ratio", "open_sum_ratio")
#: Columns the terminal table adds when every row has them (``tie_top1``: data that records ``time_rse``).
OPTIONAL_TABLE = ("tie_top1",)
#: The columns of ``reformer fit`` / ``reformer evaluate``'s terminal table, in order.
FIT_TABLE = ("top1", "within5", "oracle_ratio", "sum_ratio", "mean_pick_ms", "speedup_static_sum",
             "speedup_static_geomean")
