"""The committed CPU dataset is exactly what its committed run directories export (datasets/README.md), so
anyone can re-export, resume or extend it and get the same rows."""

from pathlib import Path

from kernelbench.export import ROW_ORDER, merge_runs
from kernelbench.schema import read_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_the_cpu_dataset_is_the_export_of_its_committed_run_directories():
    committed, meta = read_dataset(ROOT / "datasets" / "cpu-xeon-2t.parquet")
    run_dirs = sorted({run["run_dir"] for run in meta["runs"]})
    assert run_dirs and all((ROOT / d / "manifest.json").is_file() for d in run_dirs), run_dirs
    exported, _ = merge_runs([ROOT / d for d in run_dirs])
    order = list(ROW_ORDER)
    assert exported.height == committed.height
    assert exported.sort(order).equals(committed.select(exported.columns).sort(order))
