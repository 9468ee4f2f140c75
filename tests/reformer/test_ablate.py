"""``reformer ablate``: the grid, shared cells, resume after an interruption, parallel jobs, the report."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cli import reformer
from kernelbench.errors import InputError
from reformer.ablate import (AblationOptions, AblationOutcome, QuickSettings, data_identity, load_data, plan_cells,
                             read_cell, run_ablation)
import reformer.ablation_report as ablation_report
from reformer.ablation_report import RESULT_COLUMNS, STUDY_COLUMNS, study_table, summarize, write_report
from reformer.config import FitConfig
from reformer.grid import STUDIES, TOP_KS, parse_studies, variants
from reformer.metrics import TOPK_KEYS

#: A tiny grid: 300 of the 600 synthetic problems, 2 epochs of a narrow model.
TINY = QuickSettings(problems=300, epochs=2, min_steps=0, mlp_epochs=2, lightgbm_rounds=5, seed=0)
BASE = FitConfig(dim=16, batch_size=64, lr=1e-2)


def _options(**changes) -> AblationOptions:
    return AblationOptions(**{"quick": TINY, "base": BASE, "seeds": (0,), **changes})


def test_full_quick_grid_writes_results_report_and_plots(tmp_path, dataset_path):
    report = tmp_path / "report"
    outcome = run_ablation(dataset_path, report, _options(), progress=False, say=lambda _: None,
                           command="reformer ablate synthetic.parquet -o report --quick")
    paths = write_report(report, outcome)

    results = pl.read_parquet(report / "results.parquet")
    assert tuple(results.columns) == RESULT_COLUMNS
    # Every variant but torch_default: the synthetic data did not measure F.conv2d.
    rows = [v for s in STUDIES for v in variants(s) if v.kind != "torch_default"]
    assert results.height == len(rows)
    assert results["n_problems"].unique().to_list() == [30]  # 10 % of the 300-problem subsample
    # Shared work: the default model is one cell behind five rows, with identical numbers.
    ratio = f"ratio γ={FitConfig().ratio_power:g}"
    defaults = results.filter(
        pl.col("variant").is_in([ratio, "both", "3", "Γ-block", f"{ratio}, σ=0", "reformer (defaults)"])
    )
    assert defaults.height == 6 and defaults["top1"].n_unique() == 1 and defaults["fit_seconds"].n_unique() == 1
    oracle = results.filter(pl.col("variant") == "oracle").row(0, named=True)
    assert oracle["top1"] == 1.0 and oracle["oracle_ratio"] == 1.0
    static = results.filter(pl.col("variant") == "static").row(0, named=True)
    assert static["speedup_static_sum"] == pytest.approx(1.0)
    trained = results.filter(pl.col("study") != "baselines")
    assert (trained["fit_seconds"] > 0).all() and (trained["latency_us_p50"] > 0).all()
    assert (trained["batched_per_s"] > 0).all()

    text = (report / "report.md").read_text()
    assert "quick variant" in text and "reformer ablate synthetic.parquet" in text
    for study in STUDIES:
        assert f"![{study}](study_{study}.png)" in text
        assert (report / f"study_{study}.png").stat().st_size > 10_000
    assert text.count("| variant |") == len(STUDIES)
    assert "**" in text.split("## Label formulation")[1].split("##")[0]  # a best value is marked
    assert (report / "cdf_pick_over_best.png").exists() and (report / "training_curves.png").exists()
    assert len(paths) == 2 + len(STUDIES) + 2
    run = json.loads((report / "run.json").read_text())
    assert run["dataset"]["n_problems"] == 300 and run["dataset"]["metadata"]["subsample"]["of"] == 600
    assert run["invocations"][-1]["computed"] == outcome.computed == len(outcome.records)


def test_resume_reads_back_finished_cells(tmp_path, dataset_path):
    report = tmp_path / "report"
    options = _options(studies=("paths",), seeds=(0, 1))
    finished = []

    def stop_after_two(key, record):
        finished.append(key)
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ablation(dataset_path, report, options, progress=False, say=lambda _: None, on_cell=stop_after_two)
    assert len(list((report / "cells").glob("*.json"))) == 2

    second = run_ablation(dataset_path, report, options, progress=False, say=lambda _: None)
    assert (second.reused, second.computed) == (2, 4)
    third = run_ablation(dataset_path, report, options, progress=False, say=lambda _: None)
    assert (third.reused, third.computed) == (6, 0)
    assert third.records == second.records
    # Every invocation's wall time is kept for the report, the interrupted one included.
    assert [i["computed"] for i in json.loads((report / "run.json").read_text())["invocations"]] == [2, 4, 0]


def test_report_only_renders_finished_cells_and_computes_nothing(tmp_path, dataset_path):
    report = tmp_path / "report"
    options = _options(studies=("paths",), seeds=(0, 1))

    def stop_after_two(key, record):
        if len(list((report / "cells").glob("*.json"))) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ablation(dataset_path, report, options, progress=False, say=lambda _: None, on_cell=stop_after_two)
    run_before = (report / "run.json").read_text()
    said = []
    partial = run_ablation(dataset_path, report, options, progress=False, say=said.append, compute=False)
    assert (partial.computed, len(partial.records)) == (0, 2)
    assert "report only: 2 of 6 cells finished, 4 not yet computed" in said
    assert (report / "run.json").read_text() == run_before  # no invocation recorded
    write_report(report, partial)
    text = (report / "report.md").read_text()
    assert "**Incomplete**: 4 of 6 cells are not computed yet" in text
    assert "(cells computed by the last one: 2, read back: 0)" in text  # the grid's invocation, not this call
    assert pl.read_parquet(report / "results.parquet").height == 2
    assert len(list((report / "cells").glob("*.json"))) == 2


def test_shared_cells_and_keys_follow_settings(matrix):
    options = _options(studies=("labels", "paths", "blocks"))
    rows = [v for s in options.studies for v in variants(s)]
    keys, cells, users = plan_cells(rows, options, data_identity(matrix, options))
    labels = len(variants("labels"))
    assert len(keys) == labels + 3 + 5
    assert len(cells) == labels + 2 + 4  # the default model is shared by three rows
    assert max(len(u) for u in users.values()) == 3
    longer = AblationOptions(quick=dataclasses.replace(TINY, epochs=3), base=BASE, seeds=(0,),
                             studies=options.studies)
    other, _, _ = plan_cells(rows, longer, data_identity(matrix, longer))
    assert not set(other.values()) & set(keys.values())
    more_threads = AblationOptions(quick=TINY, base=BASE, seeds=(0,), studies=options.studies, threads=2)
    same, _, _ = plan_cells(rows, more_threads, data_identity(matrix, more_threads))
    assert same == keys  # threads change speed, not results: finished cells stay valid


def test_epochs_option_retrains_reformer_cells_only(matrix):
    rows = [v for s in ("paths", "baselines") for v in variants(s)]
    options = _options(studies=("paths", "baselines"))
    keys, cells, _ = plan_cells(rows, options, data_identity(matrix, options))
    fewer = dataclasses.replace(options, epochs=1)
    fewer_keys, fewer_cells, _ = plan_cells(rows, fewer, data_identity(matrix, fewer))
    assert {c.config.epochs for c in fewer_cells.values() if c.kind == "reformer"} == {1}
    assert {c.config.epochs for c in cells.values() if c.kind == "reformer"} == {TINY.epochs}
    for row, key in keys.items():  # baselines are untouched and stay shared; Reformer cells are new work
        assert (fewer_keys[row] == key) == (cells[key].kind != "reformer"), row
    with pytest.raises(InputError, match="--epochs must be >= 1"):
        dataclasses.replace(options, epochs=0)


def test_cli_epochs_is_recorded_and_reported(dataset_path, tmp_path):
    result = CliRunner().invoke(reformer, ["ablate", str(dataset_path), "-o", str(tmp_path), "--quick", "--seeds", "1",
                                           "--studies", "blocks", "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["options"]["epochs"] == 2 and run["identity"]["epochs"] == 2
    assert run["options"]["base"]["epochs"] == 2
    assert "with `--epochs 2`" in (tmp_path / "report.md").read_text()
    bad = CliRunner().invoke(reformer, ["ablate", str(dataset_path), "-o", str(tmp_path), "--epochs", "0"])
    assert bad.exit_code == 2 and "--epochs" in bad.output


def test_parallel_jobs_match_serial(tmp_path, dataset_path):
    options = _options(studies=("block-type",))
    serial = run_ablation(dataset_path, tmp_path / "a", options, progress=False, say=lambda _: None)
    parallel = run_ablation(dataset_path, tmp_path / "b", AblationOptions(**{**options.__dict__, "jobs": 2}),
                            progress=False, say=lambda _: None)
    assert parallel.computed == serial.computed == 2
    for key, record in serial.records.items():
        assert parallel.records[key]["metrics"] == record["metrics"]


def test_a_killed_worker_aborts_the_grid_with_its_finished_cells_stored(tmp_path, dataset_path):
    import multiprocessing
    import signal

    from kernelbench.errors import RunAborted

    report = tmp_path / "report"
    options = AblationOptions(**{**_options(studies=("paths",), seeds=(0, 1)).__dict__, "jobs": 2})

    def kill_the_workers(key, record):
        for worker in multiprocessing.active_children():
            os.kill(worker.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would

    with pytest.raises(RunAborted, match="re-run the same command to resume"):
        run_ablation(dataset_path, report, options, progress=False, say=lambda _: None, on_cell=kill_the_workers)
    stored = len(list((report / "cells").glob("*.json")))
    (invocation,) = json.loads((report / "run.json").read_text())["invocations"]
    assert 1 <= stored < 6 and invocation["computed"] >= 1 and invocation["ended"] is True
    resumed = run_ablation(dataset_path, report, options, progress=False, say=lambda _: None)
    assert resumed.reused == stored and resumed.reused + resumed.computed == 6


def test_missing_lightgbm_gives_notice_and_the_rest_of_the_report(tmp_path, dataset_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    lines = []
    outcome = run_ablation(dataset_path, tmp_path, _options(studies=("baselines",)), progress=False,
                           say=lines.append)
    write_report(tmp_path, outcome)
    assert any("lightgbm is not installed" in line for line in lines)
    results = pl.read_parquet(tmp_path / "results.parquet")
    assert results["variant"].to_list() == ["oracle", "random", "static", "mlp", "reformer (defaults)"]
    assert "## Notices" in (tmp_path / "report.md").read_text()


def test_study_table_marks_best_per_column():
    rows = []
    for variant, top1, sum_ratio in (("oracle", 1.0, 1.0), ("static", 0.5, 1.8), ("lightgbm", 0.9, 1.02)):
        for seed in (0, 1):
            row = dict.fromkeys(RESULT_COLUMNS, 0.0)
            row.update(study="baselines", variant=variant, seed=seed, top1=top1 + 0.01 * seed, sum_ratio=sum_ratio,
                       n_problems=10, skipped_problems=0)
            rows.append(row)
    table = study_table(summarize(pl.DataFrame(rows)), "baselines")
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "**0.9050 ± 0.0071**" in lines["lightgbm"] and "**1.0200" in lines["lightgbm"]
    assert "**" not in lines["oracle"]  # an upper bound, never "best"
    assert "0.5050 ± 0.0071" in lines["static"] and "**0.5050" not in lines["static"]
    assert table.splitlines()[0].count("|") == len(STUDY_COLUMNS["baselines"]) + 2


@pytest.mark.parametrize(("study", "n_axes"), [("blocks", 6), ("labels", 3)])
def test_study_plot_adds_a_cost_row_for_the_cost_studies(monkeypatch, tmp_path, study, n_axes):
    rows = []
    for variant, fit_seconds, latency in (("1", 150.0, 40.0), ("3", 420.0, 75.0)):
        for seed in (0, 1):
            row = dict.fromkeys(RESULT_COLUMNS, 1.0)
            row.update(study=study, variant=variant, seed=seed, top1=0.85, fit_seconds=fit_seconds + 0.2 * seed,
                       latency_us_p50=latency, batched_per_s=40_000.0, n_problems=10, skipped_problems=0)
            rows.append(row)
    figures = []
    monkeypatch.setattr(ablation_report, "_save", lambda fig, path: figures.append(fig))
    ablation_report.plot_study(tmp_path / "plot.png", summarize(pl.DataFrame(rows)), study, study)
    (figure,) = figures
    assert len(figure.axes) == n_axes
    if n_axes == 6:
        fit_axis = figure.axes[3]
        assert fit_axis.get_xlabel().startswith("training time (s")
        assert fit_axis.get_xlim()[0] == 0.0  # costs are compared as ratios: bars start at zero
        assert {t.get_text().strip() for t in fit_axis.texts} == {"150 s", "420 s"}  # means over the two seeds
        assert {t.get_text().strip() for t in figure.axes[4].texts} == {"40 µs", "75 µs"}


def test_parse_studies():
    assert parse_studies(None) == STUDIES
    assert parse_studies("noise, labels") == ("labels", "noise")
    with pytest.raises(InputError, match="unknown study"):
        parse_studies("labels,depth")


def test_cli_bad_study_is_one_line_exit_2(dataset_path, tmp_path):
    result = CliRunner().invoke(reformer, ["ablate", str(dataset_path), "-o", str(tmp_path), "--studies", "depth"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("Error: --studies 'depth'")


def test_cli_quick_on_a_small_dataset(dataset_path, tmp_path):
    # The default --quick settings on 600 problems: one batch per epoch, so min_steps sets the epochs.
    result = CliRunner().invoke(reformer, ["ablate", str(dataset_path), "-o", str(tmp_path), "--quick", "--seeds", "1",
                                           "--studies", "paths", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3 cells (3 rows x 1 seeds" in result.output
    assert result.output.count("paths/") == 3 and "3 cell(s) computed, 0 read back" in result.output
    assert pl.read_parquet(tmp_path / "results.parquet").height == 3
    assert "## Γ-block dual path" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_cli_terminated_grid_records_its_invocation(dataset_path, tmp_path, signal_name):
    import signal
    import subprocess

    command = [sys.executable, "-c", "from cli import reformer; reformer()", "ablate", str(dataset_path), "-o",
               str(tmp_path), "--quick", "--seeds", "2", "--studies", "paths", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith("paths/"):  # the first cell is stored
            process.send_signal(getattr(signal, signal_name))
            break
    process.communicate(timeout=120)
    assert process.returncode != 0
    run = json.loads((tmp_path / "run.json").read_text())
    # SIGTERM ends the grid cleanly; SIGKILL leaves the record written after the last finished cell.
    (invocation,) = run["invocations"]
    assert invocation["computed"] >= 1 and invocation["wall_seconds"] > 0
    assert invocation["ended"] is (signal_name == "SIGTERM")
    assert len(list((tmp_path / "cells").glob("*.json"))) == invocation["computed"]
    report = CliRunner().invoke(reformer, ["ablate", str(dataset_path), "-o", str(tmp_path), "--quick", "--seeds", "2",
                                           "--studies", "paths", "--no-progress", "--report-only"])
    assert report.exit_code == 0, report.output
    killed_note = "1 of them without a recorded end" in (tmp_path / "report.md").read_text()
    assert killed_note is (signal_name == "SIGKILL")


def test_cost_benchmark_projects_every_reformer_cell_of_the_grid(dataset_path):
    """benchmarks/bench_ablate_cost.py: one measured epoch per distinct Reformer cell, projected to the grid."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ablate_cost.py"
    # --epochs as `reformer ablate --epochs` takes it: above the small dataset's min_steps floor, so it shows.
    done = subprocess.run([sys.executable, str(script), str(dataset_path), "--seeds", "2", "--train-problems", "128",
                           "--epochs", "5000", "--json"], capture_output=True, text=True, timeout=600, check=True)
    summary = json.loads(done.stdout)
    reformer_rows = [v for s in STUDIES for v in variants(s) if v.kind == "reformer"]
    # 21 distinct configurations: the candidates study adds one (training over the measured kernels only), the
    # labels study one (γ = 4, the earlier default).
    assert len(summary["cells"]) == 21 < len(reformer_rows)  # shared configurations are trained once
    assert summary["reformer_cells"] == 2 * 21
    n_train = summary["training_problems"]
    for line in summary["cells"]:
        assert line["epochs"] == 5000
        assert line["projected_train_s"] == pytest.approx(line["epochs"] * n_train / line["train_problems_per_s"])
    assert summary["projected_wall_h"] == pytest.approx(
        2 * sum(line["projected_train_s"] for line in summary["cells"]) / 2 / 3600)
    assert summary["recorded_baseline_cpu_h"] is None and summary["calibrated_wall_h"] is None


def test_torch_default_baseline_cell_picks_f_conv2d_where_measured_else_static(matrix):
    import numpy as np

    from reformer.ablate import compute_cell
    from reformer.ablate import Cell
    from reformer.grid import BASELINE_KINDS
    from reformer.splits import SplitSpec
    from reformer.metrics import first_applicable, static_order
    from reformer.splits import make_split

    assert "torch_default" in BASELINE_KINDS
    # The synthetic "gemm" plays F.conv2d.
    renamed = dataclasses.replace(matrix, kernels=tuple("torch_default" if k == "gemm" else k for k in matrix.kernels))
    split = make_split(renamed.problems, SplitSpec())
    record = compute_cell(Cell("torch_default", 0, {"fractions": [0.8, 0.1, 0.1]}), renamed, split)
    test, train = renamed.subset(split.test), renamed.subset(split.train)
    column = renamed.kernels.index("torch_default")
    static = first_applicable(static_order(train.time_ms), test.applicable)
    picks = np.where(test.applicable[:, column], column, static)
    t_pick = test.time_ms[np.arange(test.n_problems), picks]
    assert record["metrics"]["top1"] == pytest.approx(np.mean(t_pick <= np.nanmin(test.time_ms, axis=1)))
    assert record["metrics"]["sum_ratio"] == pytest.approx(t_pick.sum() / np.nanmin(test.time_ms, axis=1).sum())


# ---------------------------------------------------------------- both protocols, top-k, the candidates study

#: Committed cells of a grid run with the current defaults (labels and baselines, 3 seeds, full MI100).
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "results" / "mi100"


def _topk_matches_cells(results: pl.DataFrame, outcome) -> int:
    """Assert every top-k column of ``results`` is its cell's stored ``topk`` / ``open_topk`` value; rows checked."""
    checked = 0
    for row in results.iter_rows(named=True):
        metrics = outcome.records[outcome.keys[(row["study"], row["variant"], row["seed"])]]["metrics"]
        assert row["open_within5"] == pytest.approx(metrics["open_within5"])
        for prefix, key in (("", "topk"), ("open_", "open_topk")):
            for k in TOP_KS:
                for name in TOPK_KEYS:
                    assert row[f"{prefix}top{k}_{name}"] == pytest.approx(metrics[key][str(k)][name]), (row, k, name)
        checked += 1
    return checked


def test_candidates_study_trains_the_mlp_both_ways_in_quick_mode(dataset_path, tmp_path):
    rows = {v.name: v for v in variants("candidates")}
    assert rows["MLP, measured"].kind == "mlp" and dict(rows["MLP, measured"].changes) == {"candidates": "measured"}
    assert not any(v.kind == "lightgbm" for v in rows.values())  # LightGBM has no candidates option
    result = CliRunner().invoke(reformer, ["ablate", str(dataset_path), "-o", str(tmp_path), "--quick", "--seeds", "1",
                                           "--studies", "candidates", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4 cells (4 rows x 1 seeds" in result.output and "candidates/MLP, measured seed 0" in result.output
    results = pl.read_parquet(tmp_path / "results.parquet")
    assert tuple(results.columns) == RESULT_COLUMNS
    assert results["variant"].to_list() == list(rows)
    # Every k of TOP_KS in both protocols, equal to what the cells stored.
    options = AblationOptions(studies=("candidates",), seeds=(0,), quick=QuickSettings())
    keys, cells, _ = plan_cells(list(rows.values()), options, data_identity(load_data(dataset_path, options.quick),
                                                                             options))
    records = {key: read_cell(tmp_path, key) for key in cells}
    assert all(records.values())
    outcome = AblationOutcome(variants=tuple(rows.values()), seeds=(0,), keys=keys, records=records, computed=0,
                              reused=4, notices=(), run={})
    assert _topk_matches_cells(results, outcome) == 4
    mlp_measured = cells[keys[("candidates", "MLP, measured", 0)]]
    assert mlp_measured.config.candidates == "measured" and mlp_measured.config.epochs == QuickSettings().mlp_epochs
    assert "candidates" not in mlp_measured.settings  # the closed training's settings, as before the option existed
    assert cells[keys[("candidates", "MLP, context (default)", 0)]].config.candidates == "context"
    table = (tmp_path / "report.md").read_text().split("## Training softmax over the candidates")[1].split("\n## ")[0]
    assert "open: within-5 %" in table and "| MLP, measured |" in table


def _committed_outcome(study_names: tuple[str, ...]) -> AblationOutcome:
    """The committed labels-baselines-g8 grid as ``reformer ablate`` plans it today, read back from its cells."""
    directory = COMMITTED / "labels-baselines-g8"
    run = json.loads((directory / "run.json").read_text())
    options = AblationOptions(studies=study_names, seeds=tuple(run["identity"]["seeds"]))
    rows = tuple(v for s in study_names for v in variants(s))
    keys, cells, _ = plan_cells(rows, options, run["identity"]["data"])
    records = {key: record for key in cells if (record := read_cell(directory, key)) is not None}
    return AblationOutcome(variants=rows, seeds=options.seeds, keys=keys, records=records, computed=0,
                           reused=len(records), notices=(), run=run)


def test_committed_cell_keys_are_unchanged_and_the_candidates_study_reuses_the_mlp_cells():
    outcome = _committed_outcome(("labels", "candidates", "baselines"))
    committed = {p.stem for p in (COMMITTED / "labels-baselines-g8" / "cells").glob("*.json")}
    assert committed == set(outcome.records)  # every committed cell is still planned under its key
    keys = outcome.keys
    assert keys[("baselines", "mlp", 0)] == "2d0eda6fc08f4b70"  # the default MLP cell's key, as committed
    for seed in outcome.seeds:
        assert keys[("candidates", "MLP, context (default)", seed)] == keys[("baselines", "mlp", seed)]
        assert keys[("candidates", "context (default)", seed)] == keys[("baselines", "reformer (defaults)", seed)]
    # The MLP trained over the measured kernels is the MLP every grid ran before the candidates option existed.
    full = json.loads((COMMITTED / "full" / "run.json").read_text())
    options = AblationOptions(studies=("candidates",), seeds=(0,))
    old, _, _ = plan_cells(variants("candidates"), options, full["identity"]["data"])
    stored = read_cell(COMMITTED / "full", old[("candidates", "MLP, measured", 0)])
    assert stored is not None and stored["kind"] == "mlp"


def test_report_from_committed_cells_has_every_topk_column_and_open_within5(tmp_path):
    outcome = _committed_outcome(("labels", "candidates", "baselines"))
    paths = write_report(tmp_path, outcome)
    results = pl.read_parquet(paths[0])
    assert tuple(results.columns) == RESULT_COLUMNS
    assert {f"{p}top{k}_{n}" for p in ("", "open_") for k in TOP_KS for n in TOPK_KEYS} <= set(RESULT_COLUMNS)
    # Every row but torch_default (not measured on MI100), 3 seeds each.
    assert results.height == 3 * (len(variants("labels")) + len(variants("candidates")) + len(variants("baselines")) - 1)
    assert _topk_matches_cells(results, outcome) == results.height
    text = (tmp_path / "report.md").read_text()
    for title in ("## Label formulation", "## Training softmax over the candidates", "## Baselines"):
        assert "| open: within-5 % |" in text.split(title)[1].split("\n## ")[0], title


def test_report_shows_a_dash_for_cells_older_than_a_metric():
    outcome = _committed_outcome(("baselines",))
    old = {key: {**record, "metrics": {k: v for k, v in record["metrics"].items()
                                       if not k.startswith("open_") and k != "topk"}}
           for key, record in outcome.records.items()}
    results = ablation_report.results_frame(dataclasses.replace(outcome, records=old))
    assert results["top3_top1"].null_count() == results.height == results["open_within5"].null_count()
    table = study_table(summarize(results), "baselines")
    assert "| – |" in table and "open: within-5 %" in table


def test_cli_help_lists_every_study_and_both_protocols():
    result = CliRunner().invoke(reformer, ["ablate", "--help"], terminal_width=1000)
    assert result.exit_code == 0
    assert f"Comma-separated subset of: {', '.join(STUDIES)}." in result.output
    assert "both protocols" in result.output and f"top-k for k = {', '.join(map(str, TOP_KS))}" in result.output


def test_a_dataset_of_undescribed_devices_is_refused_before_run_json(tmp_path):
    """Device tokens need a descriptor for every device of a merged dataset: the grid says so at once (without
    naming --no-device-tokens, which fit has and ablate does not) and leaves no report directory behind."""
    from kernelbench import schema
    from tests.reformer.synthetic import synthetic_device_frame, synthetic_frame

    frame = pl.concat([synthetic_frame(120, seed=1), synthetic_device_frame(120, seed=1, device="other")])
    schema.write_dataset(frame, tmp_path / "two.parquet", {"source": "test"})
    result = CliRunner().invoke(reformer, ["ablate", str(tmp_path / "two.parquet"), "-o", str(tmp_path / "r"),
                                           "--quick", "--seeds", "1", "--studies", "labels", "--no-progress"])
    assert result.exit_code == 2 and "no descriptor for device" in result.output, result.output
    assert "--no-device-tokens" not in result.output
    assert not (tmp_path / "r" / "run.json").exists()
