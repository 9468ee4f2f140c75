import numpy as np
import polars as pl
import pytest

from kernelbench.errors import InputError
from reformer.data import pivot
from reformer.evaluate import evaluate
from reformer.selector import Selector


def test_unknown_kernels_are_reported_and_unscorable_problems_skipped(model_dir, dataset_path):
    from kernelbench.schema import read_dataset

    frame, _ = read_dataset(dataset_path)
    # Rename one kernel so the model does not know it; problems that only had it cannot be scored.
    renamed = frame.with_columns(pl.when(pl.col("kernel") == "gemm").then(pl.lit("gemm_v2")).otherwise(pl.col("kernel")).alias("kernel"))
    only_gemm = renamed["problem_id"].unique()[:3]
    renamed = renamed.filter(~pl.col("problem_id").is_in(only_gemm.to_list()) | (pl.col("kernel") == "gemm_v2"))
    matrix = pivot(renamed)
    result = evaluate(Selector.load(model_dir), matrix)
    assert result.unknown_kernels == ("gemm_v2",)
    assert result.model.skipped_problems == 3
    assert result.model.n_problems == matrix.n_problems - 3
    assert "gemm_v2" not in result.picks and "gemm" not in result.picks
    # t_best still sees gemm_v2: where it is fastest, the oracle is unreachable for the model.
    assert result.baselines["oracle"].top1 == 1.0
    assert np.isfinite(result.model.oracle_ratio) and result.model.oracle_ratio <= 1.0
    # A dataset of another library: nothing to score is an error, not a table of NaN.
    other = frame.with_columns((pl.lit("other_") + pl.col("kernel")).alias("kernel"))
    with pytest.raises(InputError, match="none of the dataset's .* problems has a kernel the model knows"):
        evaluate(Selector.load(model_dir), pivot(other))


def test_torch_default_is_a_baseline_beside_static_where_the_dataset_measured_it(matrix):
    import dataclasses

    from reformer.train import fit
    from tests.reformer.conftest import QUICK

    # The synthetic "gemm" plays F.conv2d: it applies to every problem.
    renamed = dataclasses.replace(matrix, kernels=tuple("torch_default" if k == "gemm" else k for k in matrix.kernels))
    result = fit(renamed, dataclasses.replace(QUICK, epochs=1))
    test = renamed.subset(result.split.test)
    baseline = result.evaluations["test"].baselines["torch_default"]
    column = renamed.kernels.index("torch_default")
    t_default = test.time_ms[:, column]
    assert not np.isnan(t_default).any()
    assert baseline.oracle_ratio == np.exp(np.mean(np.log(np.nanmin(test.time_ms, axis=1) / t_default)))
    assert baseline.open_hit_rate == 1.0 and baseline.open_oracle_ratio == baseline.oracle_ratio
    assert list(result.evaluations["test"].baselines) == ["oracle", "static", "torch_default", "random"]


def test_no_torch_default_row_without_its_measurements(model_dir, matrix):
    assert "torch_default" not in evaluate(Selector.load(model_dir), matrix).baselines


def test_data_with_time_rse_scores_near_ties_and_the_fit_table_shows_them(model_dir, dataset_path):
    from kernelbench.schema import read_dataset
    from kernelbench.timing import near_tie
    from reformer.report import metrics_table

    frame, _ = read_dataset(dataset_path)
    matrix = pivot(frame.with_columns(pl.lit(0.01).alias("time_rse")))
    result = evaluate(Selector.load(model_dir), matrix)
    t = matrix.time_ms[result.scored]
    picked = np.array([matrix.kernels.index(k) for k in result.picks])
    t_pick = t[np.arange(len(picked)), picked]
    expected = near_tie(t_pick, 0.01, np.nanmin(t, axis=1), 0.01).mean()
    assert result.model.tie_top1 == expected
    assert result.model.top1 <= result.model.tie_top1 <= 1.0
    assert result.baselines["oracle"].tie_top1 == 1.0
    assert "top-1/tie" in metrics_table({"model": result.model, **result.baselines})
    # Imported data (no time_rse): no such key, no such column.
    plain = evaluate(Selector.load(model_dir), pivot(frame))
    assert "tie_top1" not in plain.model.as_dict()
    assert "top-1/tie" not in metrics_table({"model": plain.model})
