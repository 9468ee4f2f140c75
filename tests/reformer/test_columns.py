"""One table of metric labels and formats, used by the fit table and the ablation report."""

import polars as pl

from reformer.ablation_report import RESULT_COLUMNS, STUDY_COLUMNS, study_table, summarize
from reformer.columns import COLUMNS, FIT_TABLE
from reformer.metrics import METRIC_KEYS, SelectionMetrics
from reformer.report import metrics_table


def test_every_reported_metric_has_one_label_and_format():
    reported = [k for k in METRIC_KEYS if k not in ("n_problems", "skipped_problems")]
    assert set(reported) <= set(COLUMNS) and set(FIT_TABLE) <= set(COLUMNS)
    assert {k for keys in STUDY_COLUMNS.values() for k in keys} <= set(COLUMNS)


def test_fit_table_and_ablation_table_take_headers_and_formats_from_the_table():
    metrics = SelectionMetrics(top1=0.5, within5=0.75, oracle_ratio=0.9, sum_ratio=1.25, mean_pick_ms=2.0,
                               speedup_static_sum=1.5, speedup_static_geomean=1.125, n_problems=4)
    header, row = metrics_table({"model": metrics}).splitlines()
    assert header.split() == " ".join(COLUMNS[k].short for k in FIT_TABLE).split()
    assert row.split()[1:] == [COLUMNS[k].fmt.format(metrics.as_dict()[k]) for k in FIT_TABLE]

    results = pl.DataFrame([{**dict.fromkeys(RESULT_COLUMNS, 1.0), "study": "paths", "variant": "both", "seed": 0,
                             "n_problems": 4, "skipped_problems": 0, "batched_per_s": 12345.0}])
    table = study_table(summarize(results), "paths")
    headers = [h.strip() for h in table.splitlines()[0].strip("|").split("|")]
    assert headers == ["variant", *(COLUMNS[k].header for k in STUDY_COLUMNS["paths"])]
    assert "12,345" in table  # batched_per_s's format from the table
