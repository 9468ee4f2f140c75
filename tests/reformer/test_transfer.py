"""The transfer study (``reformer transfer``), the lookup baseline and the device distance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import reformer
from kernelbench import schema
from kernelbench.devices import descriptor, distance, table
from kernelbench.problem import problem_2d
from reformer.config import FitConfig
from reformer.data import pivot
from reformer.lookup import lookup
from reformer.transfer import QuickTransfer, TransferOptions, run_transfer
from reformer.transfer_report import write_report
from tests.reformer.synthetic import DESCRIBED_DEVICES, write_multi_device

ROOT = Path(__file__).resolve().parents[2]
TINY = FitConfig(dim=8, blocks=1, epochs=2, min_steps=4, batch_size=32, lr=1e-2, threads=1, progress=False)
QUICK = QuickTransfer(problems_per_device=90, epochs=2, min_steps=4, lightgbm_rounds=5)


def test_distance_is_a_normalised_metric_on_the_table():
    mi100, mi250, r9 = (descriptor(d) for d in DESCRIBED_DEVICES)
    assert distance(mi100, mi100) == 0.0
    assert distance(mi100, mi250) == pytest.approx(distance(mi250, mi100))
    assert distance(mi250, mi100) < distance(mi250, r9)  # CDNA 2 is nearer CDNA 1 than GCN 3
    assert all(distance(a, b) >= 0 for a in table().values() for b in table().values())


def _frame(times: dict[tuple[str, str], dict[str, float]]) -> pl.DataFrame:
    problems = {"p1": problem_2d(batch=1, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3),
                "p2": problem_2d(batch=2, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3),
                "p3": problem_2d(batch=4, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3),
                "p4": problem_2d(batch=8, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3),
                "p5": problem_2d(batch=16, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3)}
    rows = []
    for (name, device), kernels in times.items():
        for kernel, t in kernels.items():
            rows.append({**problems[name].as_row(), "kernel": kernel, "algorithm": kernel, "status": "ok",
                         "time_ms": t, "device": device, "source": "test"})
    return schema.conform(pl.DataFrame(rows, schema_overrides=schema.POLARS_SCHEMA, infer_schema_length=None))


def test_lookup_takes_the_nearest_devices_winner():
    near, far, target = "miopen:gfx908:120", "miopen:gfx803:64", "miopen:gfx90a:110"
    frame = _frame({
        ("p1", near): {"a": 1.0, "b": 2.0, "c": 3.0},  # nearest: a wins
        ("p1", far): {"a": 3.0, "b": 1.0, "c": 2.0},  # farther: b wins
        ("p2", far): {"a": 3.0, "b": 2.0, "c": 1.0},  # only the far device has p2: c
        ("p1", target): {"a": 1.0, "b": 1.5, "c": 1.2},
        ("p2", target): {"a": 1.0, "b": 1.5, "c": 1.2},
        ("p3", target): {"a": 1.0, "b": 1.5, "c": 1.2},  # nobody has p3: static order
    })
    matrix = pivot(frame)
    device = matrix.problems["device"].to_numpy()
    sources, targets = matrix.subset(np.flatnonzero(device != target)), matrix.subset(np.flatnonzero(device == target))
    order = np.array([1, 0, 2])  # static: b, a, c
    found = lookup(sources, targets, order)
    ids = targets.problems["problem_id"].to_list()
    by_id = {pid: (found.scores[i], found.source[i]) for i, pid in enumerate(ids)}
    p1, p2, p3 = (frame.filter((pl.col("device") == target) & (pl.col("batch") == b))["problem_id"][0]
                  for b in (1, 2, 4))
    assert by_id[p1][1] == near and int(np.argmax(by_id[p1][0])) == 0  # a
    assert list(np.argsort(-by_id[p1][0])) == [0, 1, 2]  # then by the near device's times
    assert by_id[p2][1] == far and int(np.argmax(by_id[p2][0])) == 2  # c
    assert by_id[p3][1] == "" and list(np.argsort(-by_id[p3][0])) == [1, 0, 2]  # the static order
    assert found.coverage == pytest.approx(2 / 3)
    # Swap the distance: the far device becomes the nearest.
    swapped = lookup(sources, targets, order, distance=lambda a, b: 0.0 if b == far else 1.0)
    assert int(np.argmax(swapped.scores[ids.index(p1)])) == 1


def test_transfer_ceiling_script_bounds_every_remap_of_the_nearest_winner(tmp_path):
    """benchmarks/bench_transfer_ceiling.py: coverage, lookup top-1 and the remap ceiling, on hand-made times."""
    near, far, target = "miopen:gfx908:120", "miopen:gfx803:64", "miopen:gfx90a:110"
    frame = _frame({
        ("p1", near): {"a": 1.0, "b": 2.0}, ("p1", target): {"a": 1.0, "b": 2.0},  # a -> a
        ("p2", near): {"a": 1.0, "b": 2.0}, ("p2", target): {"a": 2.0, "b": 1.0},  # a -> b
        ("p3", near): {"a": 2.0, "b": 1.0}, ("p3", target): {"a": 2.0, "b": 1.0},  # b -> b
        ("p4", near): {"a": 1.0, "b": 2.0}, ("p4", target): {"b": 1.0, "c": 3.0},  # a -> b, a not recorded
        ("p5", far): {"a": 1.0}, ("p5", target): {"a": 1.0},  # only the far device has p5
    })
    dataset = tmp_path / "d.parquet"
    schema.write_dataset(frame, dataset, {"source": "test"})
    out = tmp_path / "c.json"
    script = ROOT / "benchmarks" / "bench_transfer_ceiling.py"
    proc = subprocess.run([sys.executable, str(script), str(dataset), "--target", "gfx90a_110", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert list(figures["sources"]) == [near, far]  # nearest first
    nearest = figures["sources"][near]
    assert nearest["shared"] == pytest.approx(4 / 5)
    assert nearest["lookup_top1"] == pytest.approx(2 / 4)  # p1, p3
    assert nearest["winner_recorded"] == pytest.approx(3 / 4)  # not p4
    # The best map from the near winner: a -> b (p2, p4 right, p1 wrong), b -> b (p3): 3 of 4.
    assert nearest["remap_ceiling[winner]"] == pytest.approx(3 / 4)
    assert figures["sources"][far]["lookup_top1"] == pytest.approx(1.0)
    assert figures["pairs"][f"{near} <- {target}"] == pytest.approx(2 / 4)
    bad = subprocess.run([sys.executable, str(script), str(dataset), "--target", "gfx942_304"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "not a device of the dataset" in bad.stderr


def test_fewshot_sources_script_reads_each_sources_times_of_the_same_problem(tmp_path):
    """benchmarks/bench_fewshot_sources.py: the source-measurement features on hand-made times, then a run."""
    import importlib.util

    from reformer.data import load_matrix

    near, far, target = "miopen:gfx908:120", "miopen:gfx803:64", "miopen:gfx90a:110"
    frame = _frame({
        ("p1", near): {"a": 1.0, "b": 4.0}, ("p1", target): {"a": 3.0},
        ("p2", far): {"b": 2.0}, ("p2", target): {"b": 1.0},
    })
    dataset = tmp_path / "d.parquet"
    schema.write_dataset(frame, dataset, {"source": "test"})
    spec = importlib.util.spec_from_file_location("bench_fewshot_sources", ROOT / "benchmarks" / "bench_fewshot_sources.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    matrix = load_matrix(dataset)
    rows = np.flatnonzero(matrix.problems["device"].to_numpy() == target)
    rows = rows[np.argsort(matrix.problems["batch"].to_numpy()[rows])]  # p1, p2
    a, b = matrix.kernels.index("a"), matrix.kernels.index("b")
    x = bench.source_measurements(matrix, rows, [near, far])
    width = len(matrix.kernels) + 1
    assert x.shape == (2, 2 * width)
    assert x[0, a] == 0.0 and x[0, b] == pytest.approx(np.log(4.0)) and x[0, width - 1] == pytest.approx(0.0)
    assert np.isnan(x[1, :width]).all()  # the near device did not measure p2
    assert x[1, width + b] == 0.0 and x[1, 2 * width - 1] == pytest.approx(np.log(2.0))
    assert np.isnan(x[0, width:]).all()

    write_multi_device(tmp_path / "m.parquet", 120)
    script = ROOT / "benchmarks" / "bench_fewshot_sources.py"
    out = tmp_path / "f.json"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "m.parquet"), "--target", "gfx90a_110",
                           "--fractions", "0.5", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    cells = json.loads(out.read_text())["figures"]["0.5"]
    assert set(cells) == {"lightgbm", "lightgbm + sources"}
    assert all(0.0 < cell["top1"] <= 1.0 and cell["oracle_ratio"] <= 1.0 for cell in cells.values())

    # The ensemble's mixture: a log-softmax over the measured kernels only, finite everywhere.
    lp = bench.log_softmax_over(np.array([[0.0, np.log(3.0), 5.0]]), np.array([[True, True, False]]))
    assert lp[0, :2] == pytest.approx(np.log([0.25, 0.75])) and lp[0, 2] == -1e6
    from reformer.report import save_fit
    from reformer.train import fit

    multi = load_matrix(tmp_path / "m.parquet")
    save_fit(tmp_path / "model", fit(multi, TINY))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "m.parquet"), "--target", "gfx90a_110",
                           "--fractions", "0.5", "--threads", "1", "--ensemble", str(tmp_path / "model"),
                           "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    ensemble = json.loads(out.read_text())["figures"]["0.5"]["ensemble"]
    assert ensemble["weight"] in bench.WEIGHTS and 0.0 < ensemble["top1"] <= 1.0
    two = subprocess.run([sys.executable, str(script), str(tmp_path / "m.parquet"), "--target", "gfx90a_110",
                          "--fractions", "0.1,0.5", "--ensemble", str(tmp_path / "model")],
                         capture_output=True, text=True, cwd=ROOT)
    assert two.returncode != 0 and "one --fractions value" in two.stderr
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "m.parquet"), "--target", "gfx942_304"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "not a device" in bad.stderr


def _options(**kwargs):
    defaults = {"targets": (DESCRIBED_DEVICES[1],), "fractions": (0.1, 0.5), "threads": 1, "quick": QUICK,
                "base": TINY}
    return TransferOptions(**{**defaults, **kwargs})


def test_tiny_study_runs_resumes_and_reports(tmp_path):
    write_multi_device(tmp_path / "all.parquet", 90)
    out = tmp_path / "report"
    outcome = run_transfer(tmp_path / "all.parquet", out, _options(), progress=False, say=lambda _: None)
    methods = [(c.method, c.fraction) for _, c in outcome.cells]
    assert methods == [("zero-shot", None), ("lookup", None),
                       ("fine-tune", 0.1), ("scratch", 0.1), ("lightgbm", 0.1),
                       ("fine-tune", 0.5), ("scratch", 0.5), ("lightgbm", 0.5),
                       ("scratch", 1.0), ("lightgbm", 1.0)]
    assert outcome.computed == len(methods) and outcome.reused == 0
    records = {(c.method, c.fraction): outcome.records[k] for k, c in outcome.cells}
    assert all("error" not in r for r in records.values()), [r.get("error") for r in records.values()]
    # Target split of 90: 72 train; the samples are 7 (10 %) and 36 (50 %) problems, the same for every method.
    assert records[("scratch", 0.1)]["train_problems"] == records[("fine-tune", 0.1)]["train_problems"] == 7
    assert records[("lightgbm", 0.5)]["train_problems"] == 36 and records[("scratch", 1.0)]["train_problems"] == 72
    assert records[("zero-shot", None)]["train_problems"] == 162  # 90 % of the two source devices' 180 rows
    assert records[("lookup", None)]["coverage"] == 1.0  # every problem was measured on the sources
    assert records[("zero-shot", None)]["borrowed_share"] == 0.0  # no source is a gfx90a
    n_test = {r["metrics"]["n_problems"] for r in records.values()}
    assert n_test == {9}  # every cell scores the same target test split
    for record in records.values():
        assert 0 < record["metrics"]["oracle_ratio"] <= 1 and 0 <= record["metrics"]["open_top1"] <= 1
    model_key = outcome.cells[0][1].settings["model"]
    assert (out / "models" / model_key / "weights.safetensors").is_file()
    assert records[("fine-tune", 0.1)]["settings"]["init"] == model_key
    paths = write_report(out, outcome)
    text = (out / "report.md").read_text()
    assert "## miopen:gfx90a:110" in text and "in-device (scratch)" in text and "open: top-1" in text
    assert "measured order of a training device of the same architecture" not in text
    digest = schema.file_sha256(tmp_path / "all.parquet")[:16]
    assert f"- dataset: all.parquet, sha256 {digest}… (270 (problem, device) rows" in text
    assert str(tmp_path) not in text  # no path of the machine that ran it
    assert {p.name for p in paths} == {"results.parquet", "report.md", "transfer.png"}
    assert pl.read_parquet(out / "results.parquet").height == len(methods)
    # A second run reads everything back and computes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    again = run_transfer(tmp_path / "all.parquet", out, _options(), progress=False, say=lambda _: None)
    assert again.computed == 0 and again.reused == len(methods)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == mtimes


def test_a_change_in_scoring_rescores_the_saved_zero_shot_model_without_training(tmp_path, monkeypatch):
    import reformer.transfer as transfer

    write_multi_device(tmp_path / "all.parquet", 90)
    out = tmp_path / "report"
    first = run_transfer(tmp_path / "all.parquet", out, _options(), progress=False, say=lambda _: None)
    before = {c.method: first.records[k] for k, c in first.cells if c.fraction is None}

    def no_training(*args, **kwargs):
        raise AssertionError("the zero-shot model was trained again")

    monkeypatch.setattr(transfer, "_train_zero_shot", no_training)
    monkeypatch.setattr(transfer, "UNSEEN_DEVICE_CANDIDATES", "another rule")
    again = run_transfer(tmp_path / "all.parquet", out, _options(), progress=False, say=lambda _: None)
    assert again.computed == 2 and again.reused == len(again.cells) - 2  # zero-shot and lookup only
    after = {c.method: again.records[k] for k, c in again.cells if c.fraction is None}
    assert after["zero-shot"]["rescored"] and "rescored" not in before["zero-shot"]
    # Scoring the saved model gives what the fit itself scored (the rule did not really change).
    assert after["zero-shot"]["metrics"] == before["zero-shot"]["metrics"]
    assert after["zero-shot"]["fit_seconds"] == before["zero-shot"]["fit_seconds"]
    assert after["zero-shot"]["train_problems"] == before["zero-shot"]["train_problems"] == 162
    assert after["lookup"]["metrics"] == before["lookup"]["metrics"]


def test_killed_study_resumes_without_recomputing(tmp_path):
    """A real SIGKILL of `reformer transfer --quick`; the re-run computes only the cells not yet stored."""
    write_multi_device(tmp_path / "all.parquet", 90)
    out = tmp_path / "report"
    args = [sys.executable, "-c", "import cli; cli.reformer()", "transfer", str(tmp_path / "all.parquet"), "-o",
            str(out), "--targets", DESCRIBED_DEVICES[1], "--fractions", "0.1,0.5", "--quick", "--threads", "1",
            "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = out / "cells"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if cells.is_dir() and len([p for p in cells.iterdir() if p.suffix == ".json"]) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the study ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.name: p.stat().st_mtime_ns for p in cells.iterdir() if p.suffix == ".json"}
    assert 3 <= len(done) < 10
    result = CliRunner().invoke(reformer, ["transfer", str(tmp_path / "all.parquet"), "-o", str(out), "--targets",
                                           DESCRIBED_DEVICES[1], "--fractions", "0.1,0.5", "--quick", "--threads",
                                           "1", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{10 - len(done)} cell(s) computed, {len(done)} read back" in result.output
    assert all((cells / name).stat().st_mtime_ns == mtime for name, mtime in done.items())


def test_bad_transfer_input_is_one_line(tmp_path):
    write_multi_device(tmp_path / "all.parquet", 30)
    schema.write_dataset(pl.read_parquet(tmp_path / "all.parquet").filter(pl.col("device") == DESCRIBED_DEVICES[0]),
                         tmp_path / "one.parquet", {"source": "test"})
    for args, words in (((tmp_path / "all.parquet", "--targets", "miopen:gfx942:304"), ("--targets", "not a device")),
                        ((tmp_path / "all.parquet", "--fractions", "0.1,1.5"), ("--fractions",)),
                        ((tmp_path / "one.parquet",), ("one device",))):
        result = CliRunner().invoke(reformer, ["transfer", *map(str, args), "-o", str(tmp_path / "r"), "--quick",
                                               "--no-progress"], catch_exceptions=False)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and all(w in lines[0] for w in words), result.output


def test_a_zero_shot_target_with_a_sibling_source_borrows_and_says_so(tmp_path):
    sibling = "miopen:gfx803:36"  # the same architecture as DESCRIBED_DEVICES[2]
    write_multi_device(tmp_path / "all.parquet", 60, devices=(DESCRIBED_DEVICES[0], DESCRIBED_DEVICES[2], sibling))
    out = tmp_path / "report"
    outcome = run_transfer(tmp_path / "all.parquet", out, _options(targets=(sibling,), fractions=(0.5,)),
                           progress=False, say=lambda _: None)
    zero = next(outcome.records[k] for k, c in outcome.cells if c.method == "zero-shot")
    assert zero["borrowed_share"] == 1.0  # every test problem was measured on the gfx803 source
    write_report(out, outcome)
    assert ("Zero-shot: 100.0 % of the test problems were ranked by the measured order of a training device of "
            "the same architecture") in (out / "report.md").read_text()
    assert pl.read_parquet(out / "results.parquet").filter(pl.col("method") == "zero-shot")["borrowed_share"][0] == 1.0
