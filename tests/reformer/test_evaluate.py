import numpy as np
import polars as pl

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
