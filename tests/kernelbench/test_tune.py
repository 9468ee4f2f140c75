"""kernelbench tune: rank with a model, measure the top K / up to confidence P, resume, export, --compare, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import kernelbench
from kernelbench import schema
from kernelbench.backends import CpuBackend
from kernelbench.errors import InputError
from kernelbench.kernels.registry import select_kernels
from kernelbench.spaces import SpaceEntry, load_spec
from kernelbench.store import RunStore, read_parts
from kernelbench.sweep import SweepOptions, run_sweep
from kernelbench.timing import StoppingRule
from kernelbench.tune import TuneOptions, check_model_device, plan_from, rank_problems
from kernelbench.tune_compare import compare_runs, format_comparison
from tests.kernelbench.helpers import TINY_SPEC, problems, rows

#: Real CPU kernels that apply to the 3x3 problems below, and one that does not (1x1 only).
KERNELS = "onednn_nchw,torch_im2col,numpy_im2col_gemm,numpy_shifted_gemm"
#: The synthetic dataset's kernels (tests/reformer/synthetic.py) renamed to real CPU kernels.
RENAME = {"direct": "numpy_shifted_gemm", "gemm": "numpy_im2col_gemm", "winograd": "onednn_nchw",
          "gemm_1x1": "numpy_gemm_1x1", "fft": "torch_im2col"}
RULE = StoppingRule(warmup=0, min_samples=2, rse_target=1e-9, budget_s=0.01, timeout_s=30.0)
FAST = ["--kernels", KERNELS, "--threads", "1", "--budget-s", "0.01", "--rse", "1e-9", "--warmup", "0",
        "--min-samples", "2", "--flush-every-s", "0", "--no-progress", "--device", "cpu"]
SPEC = TINY_SPEC


@pytest.fixture(scope="module")
def device_label() -> str:
    return CpuBackend(threads=1).device_label


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, device_label):
    """A small model whose vocabulary is real CPU kernels, trained on this machine's device label.

    The runtimes are the synthetic cost model's (the tests check tune's mechanics, not the ranking's
    quality); the kernels it ranks are then run for real.
    """
    from reformer.data import load_matrix
    from reformer.store import save_model
    from reformer.train import fit
    from tests.reformer.conftest import QUICK
    from tests.reformer.synthetic import synthetic_frame

    frame = synthetic_frame(300, seed=0).with_columns(pl.col("kernel").replace_strict(RENAME),
                                                      pl.lit(device_label).alias("device"))
    path = tmp_path_factory.mktemp("data") / "renamed.parquet"
    schema.write_dataset(frame, path, {"devices": {device_label: {"backend": "cpu"}}})
    directory = tmp_path_factory.mktemp("model")
    save_model(directory, fit(load_matrix(path), dataclasses.replace(QUICK, epochs=2)).trained)
    return directory


@pytest.fixture(scope="module")
def selector(model_dir):
    from reformer.selector import Selector

    return Selector.load(model_dir)


@pytest.fixture
def entries():
    return [SpaceEntry(problem=p, network="test", layer=f"l{i}") for i, p in enumerate(problems(4))]


def kernels():
    return select_kernels("cpu", KERNELS)


def open_store(path, device_label):
    identity = {"space": {"space": "test"}, "kernels": KERNELS.split(","), "rule": {}, "seed": 0,
                "device_label": device_label, "tune": {"model_sha256": "test"}}
    return RunStore.open(path, identity, {})


def tune(path, entries, selector, options, *, kernel_list=None, **run):
    kernel_list = kernel_list or kernels()
    backend = CpuBackend(threads=1)
    store = open_store(path, backend.device_label)
    ranking = rank_problems(selector, entries, kernel_list)
    summary = run_sweep(entries, kernel_list, backend=backend, store=store, progress=False,
                        options=SweepOptions(rule=RULE, flush_every_s=0, isolation="none"), plan=plan_from(ranking, options), **run)
    return ranking, summary


def measured(path) -> dict[str, list[tuple[str, int, float, str]]]:
    """Per problem: (kernel, predicted_rank, predicted_prob, status), in rank order."""
    frame = read_parts(path).sort("problem_id", "predicted_rank")
    out: dict[str, list] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row["problem_id"], []).append(
            (row["kernel"], row["predicted_rank"], row["predicted_prob"], row["status"]))
    return out


# ---------------------------------------------------------------- ranking and stopping


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_measures_exactly_k_kernels_per_problem_in_rank_order(tmp_path, entries, selector, k):
    ranking, summary = tune(tmp_path / "run", entries, selector, TuneOptions(top_k=k))
    got = measured(tmp_path / "run")
    assert set(got) == {e.problem.problem_id for e in entries}
    for entry in entries:
        expected = selector.select(entry.problem, applicable=KERNELS.split(","), top=k)
        rows_ = got[entry.problem.problem_id]
        assert [(kernel, rank) for kernel, rank, _, _ in rows_] == [(name, r) for r, (name, _) in enumerate(expected, 1)]
        assert [p for _, _, p, _ in rows_] == pytest.approx([p for _, p in expected], abs=1e-6)
        assert {s for *_, s in rows_} == {"ok"}
    frame = read_parts(tmp_path / "run")
    assert (frame["source"] == "kernelbench-tune").all() and (frame["measure_s"] > 0).all()
    assert summary.rows_written == k * len(entries)


def test_confidence_measures_until_the_probability_mass_reaches_p(tmp_path, entries, selector):
    p = 0.9
    tune(tmp_path / "run", entries, selector, TuneOptions(confidence=p))
    got = measured(tmp_path / "run")
    for entry in entries:
        ranked = selector.select(entry.problem, applicable=KERNELS.split(","), top=4)
        mass = np.cumsum([prob for _, prob in ranked])
        n = int(np.argmax(mass >= p - 1e-6)) + 1  # the shortest prefix holding mass P
        assert [kernel for kernel, *_ in got[entry.problem.problem_id]] == [name for name, _ in ranked[:n]]
        assert sum(prob for _, _, prob, _ in got[entry.problem.problem_id][:-1]) < p
    # With top-k as a cap, whichever comes first.
    tune(tmp_path / "capped", entries, selector, TuneOptions(confidence=p, top_k=1))
    assert all(len(v) == 1 for v in measured(tmp_path / "capped").values())
    # confidence 1 measures every ranked kernel
    tune(tmp_path / "all", entries, selector, TuneOptions(confidence=1.0))
    assert all(len(v) == 4 for v in measured(tmp_path / "all").values())


def test_when_the_top_kernels_fail_tuning_goes_on_down_the_ranking(tmp_path, entries, selector):
    first = selector.select(entries[0].problem, applicable=KERNELS.split(","), top=1)[0][0]

    def wrong_prepare(kernel):
        def prepare(problem, inputs):
            prepared = kernel.prepare(problem, inputs)
            return dataclasses.replace(prepared, result=lambda out: 2 * prepared.result(out))
        return prepare

    broken = [dataclasses.replace(k, prepare=wrong_prepare(k)) if k.name == first else k for k in kernels()]
    tune(tmp_path / "run", entries[:1], selector, TuneOptions(top_k=1), kernel_list=broken)
    (got,) = measured(tmp_path / "run").values()
    assert [(kernel, rank, status) for kernel, rank, _, status in got][:1] == [(first, 1, "wrong_result")]
    assert len(got) == 2 and got[1][1] == 2 and got[1][3] == "ok"


def test_resume_skips_measured_pairs_and_a_larger_k_measures_only_the_rest(tmp_path, entries, selector):
    class Stop(Exception):
        pass

    def stop(index):
        if index == 1:
            raise Stop

    with pytest.raises(Stop):
        tune(tmp_path / "run", entries, selector, TuneOptions(top_k=2), on_problem_done=stop)
    assert read_parts(tmp_path / "run").height == 4
    _, summary = tune(tmp_path / "run", entries, selector, TuneOptions(top_k=2))
    assert summary.problems_skipped == 2 and summary.rows_written == 4
    _, again = tune(tmp_path / "run", entries, selector, TuneOptions(top_k=2))
    assert again.rows_written == 0 and again.problems_skipped == 4
    _, more = tune(tmp_path / "run", entries, selector, TuneOptions(top_k=3))
    assert more.rows_written == 4
    frame = read_parts(tmp_path / "run")
    assert frame.height == 12 and frame.select("problem_id", "kernel").is_duplicated().sum() == 0
    assert sorted(frame["predicted_rank"].to_list()) == [1] * 4 + [2] * 4 + [3] * 4


def test_bad_options_and_models_without_a_ranking_are_refused(entries, selector):
    for bad in ({"top_k": 0}, {"top_k": -1}, {"top_k": 1.5}, {"top_k": True}, {"confidence": 0.0},
                {"confidence": 1.5}, {"confidence": math.nan}, {}):
        with pytest.raises(InputError):
            TuneOptions(**bad)
    with pytest.raises(InputError, match="ranks none of this run's kernels"):
        rank_problems(selector, entries, select_kernels("cpu", "numpy_fft,nnpack"))


def test_a_model_of_another_device_is_refused_unless_allowed(selector, device_label):
    assert check_model_device(selector, device_label) is None
    with pytest.raises(InputError, match="--allow-other-device"):
        check_model_device(selector, "cuda:NVIDIA A100:sm80")
    assert "cuda:NVIDIA A100:sm80" in check_model_device(selector, "cuda:NVIDIA A100:sm80", allow_other_device=True)


# ---------------------------------------------------------------- --compare, figures by hand


def write_run(path, times, measure_s, *, device="cpu:test:1t", tune_model=None, rule=None):
    identity = {"space": {"space": "test"}, "kernels": ["a", "b", "c"], "rule": rule or {}, "seed": 0,
                "device_label": device}
    if tune_model:
        identity["tune"] = {"model_sha256": tune_model}
    store = RunStore.open(path, identity, {})
    out = rows(times, device=device)
    for row, seconds in zip(out, measure_s):
        row["measure_s"] = seconds
    store.write_part(out, shard="0/1")


def test_compare_figures_on_a_case_computed_by_hand(tmp_path):
    p0, p1 = problems(2)
    write_run(tmp_path / "full", {p0: {"a": 1.0, "b": 2.0, "c": 4.0}, p1: {"a": 3.0, "b": 1.5, "c": 2.0}},
              [1.0, 1.0, 2.0, 1.0, 1.0, 1.0])
    # The tune measured a, b on p0 (chooses a, its own time 0.4 ms) and a, c on p1 (chooses c, its own time 2.1 ms).
    write_run(tmp_path / "tune", {p0: {"a": 0.4, "b": 2.0}, p1: {"a": 3.0, "c": 2.1}}, [0.5] * 4, tune_model="m")
    c = compare_runs(tmp_path / "tune", tmp_path / "full", problem_ids=[p0.problem_id, p1.problem_id])
    # p0: chosen a = best (ratio 1); p1: chosen c scored with the exhaustive 2.0 ms against best b 1.5 ms.
    assert c.tune_measure_s == pytest.approx(2.0) and c.exhaustive_measure_s == pytest.approx(7.0)
    assert c.measure_share == pytest.approx(2 / 7)
    assert c.geomean_ratio == pytest.approx(math.sqrt(2.0 / 1.5))
    assert c.sum_ratio == pytest.approx((1.0 + 2.0) / (1.0 + 1.5))
    assert c.worst_ratio == pytest.approx(2.0 / 1.5) and c.worst_problem == p1.problem_id
    assert c.chosen_is_best == 1 and c.tune_rows == 4 and c.exhaustive_rows == 6 and c.without_choice == 0
    # the chosen kernels' own times, tune / exhaustive: 0.4 / 1.0 (off by more than 2x) and 2.1 / 2.0
    assert c.remeasure_geomean == pytest.approx(math.sqrt(0.4 * 1.05)) and c.remeasure_off_2x == 1
    text = format_comparison(c, compare_dir="full", describe={p1.problem_id: "P1"})
    assert "28.6%" in text and "1.1547" in text and "1.2000" in text and "1.3333  (P1)" in text
    assert "66.7%" in text  # kernels measured 4 of 6
    assert "0.6481  (geomean of its own times in the two runs; 1 differ by more than 2x)" in text


def test_compare_scored_with_the_median_of_several_exhaustive_runs(tmp_path):
    p0, p1 = problems(2)
    # Run 1 timed c on p1 as an outlier (4.0 ms); runs 2 and 3 agree it is the fastest there.
    write_run(tmp_path / "r1", {p0: {"a": 1.0, "b": 2.0, "c": 4.0}, p1: {"a": 3.0, "b": 1.5, "c": 4.0}}, [1.0] * 6)
    write_run(tmp_path / "r2", {p0: {"a": 1.2, "b": 1.0, "c": 4.0}, p1: {"a": 3.0, "b": 1.5, "c": 1.0}}, [9.0] * 6)
    write_run(tmp_path / "r3", {p0: {"a": 1.1, "b": 2.0, "c": 4.0}, p1: {"a": 3.0, "b": 1.6, "c": 1.2}}, [9.0] * 6)
    write_run(tmp_path / "tune", {p0: {"a": 0.4, "b": 2.0}, p1: {"a": 3.0, "c": 1.1}}, [0.5] * 4, tune_model="m")
    ids = [p0.problem_id, p1.problem_id]
    alone = compare_runs(tmp_path / "tune", tmp_path / "r1", problem_ids=ids)
    assert alone.geomean_ratio == pytest.approx(math.sqrt(4.0 / 1.5))
    pooled = compare_runs(tmp_path / "tune", tmp_path / "r1", problem_ids=ids,
                          score_with=[tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"])
    # Medians: p0 a 1.1 (best; b 2.0), p1 c 1.2 (best; b 1.5): both choices are the best.
    assert pooled.geomean_ratio == pytest.approx(1.0) and pooled.chosen_is_best == 2
    # Measuring times stay the compared run's, and the chosen kernels' re-timing is against the medians.
    assert pooled.exhaustive_measure_s == pytest.approx(6.0) and pooled.measure_share == pytest.approx(2 / 6)
    assert pooled.remeasure_geomean == pytest.approx(math.sqrt(0.4 / 1.1 * 1.1 / 1.2))


def test_compare_refuses_other_problems_and_rows_without_measuring_time(tmp_path):
    p0, p1, p2 = problems(3)
    write_run(tmp_path / "full", {p0: {"a": 1.0}, p1: {"a": 1.0}}, [1.0, 1.0])
    write_run(tmp_path / "tune", {p2: {"a": 1.0}}, [1.0], tune_model="m")
    with pytest.raises(InputError, match="no measured kernel for 1 of the 1 problems"):
        compare_runs(tmp_path / "tune", tmp_path / "full", problem_ids=[p2.problem_id])
    write_run(tmp_path / "old", {p2: {"a": 1.0}}, [None])
    with pytest.raises(InputError, match="measure_s"):
        compare_runs(tmp_path / "tune", tmp_path / "old", problem_ids=[p2.problem_id])


# ---------------------------------------------------------------- the command


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


def invoke(*args):
    return CliRunner().invoke(kernelbench, [str(a) for a in args])


def test_tune_command_export_and_compare_end_to_end(tmp_path, spec, model_dir):
    full = invoke("sweep", "--spec", spec, "-o", tmp_path / "full", *FAST)
    assert full.exit_code == 0, full.output
    out = invoke("tune", "--model", model_dir, "--spec", spec, "--top-k", "2", "-o", tmp_path / "tune",
                 "--compare", tmp_path / "full", *FAST)
    assert out.exit_code == 0, out.output
    assert "kernels measured      12 of 24 applicable (50.0%), at most 2 per problem" in out.output
    assert "chosen kernel / exhaustive best (6 problems)" in out.output
    manifest = json.loads((tmp_path / "tune" / "manifest.json").read_text())
    assert manifest["tune"]["model_sha256"] and manifest["tune_options"] == {"top_k": 2, "confidence": None}
    c = compare_runs(tmp_path / "tune", tmp_path / "full",
                     problem_ids=set(read_parts(tmp_path / "tune")["problem_id"].to_list()))
    assert c.tune_rows == 12 and c.exhaustive_rows == 24 and f"{c.geomean_ratio:12.4f}" in out.output
    assert 1.0 <= c.geomean_ratio <= c.worst_ratio

    exported = invoke("export", tmp_path / "tune", "-o", tmp_path / "t.parquet")
    assert exported.exit_code == 0, exported.output
    frame, meta = schema.read_dataset(tmp_path / "t.parquet")
    assert frame.height == 12 and sorted(set(frame["predicted_rank"].to_list())) == [1, 2]
    assert frame["predicted_prob"].is_between(0, 1).all() and (frame["measure_s"] > 0).all()
    assert "kernelbench tune" in meta["coverage"] and meta["runs"][0]["tune_options"]["top_k"] == 2
    # resuming: nothing new; a sweep into the tune directory is refused (different run)
    again = invoke("tune", "--model", model_dir, "--spec", spec, "--top-k", "2", "-o", tmp_path / "tune", *FAST)
    assert again.exit_code == 0 and "rows written          0" in again.output
    mixed = invoke("sweep", "--spec", spec, "-o", tmp_path / "tune", *FAST)
    assert mixed.exit_code == 2 and "tune differs" in mixed.output


@pytest.fixture
def other_device_model(tmp_path, model_dir):
    import dataclasses

    from reformer.store import load_model, save_model

    directory = tmp_path / "other-model"
    trained = load_model(model_dir)
    dataset = {**trained.info["dataset"], "metadata": {**trained.info["dataset"]["metadata"],
                                                       "devices": {"miopen:gfx908:120": [{}]}}}
    save_model(directory, dataclasses.replace(trained, info={**trained.info, "dataset": dataset}))
    return directory


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top-k", "0"], "--top-k must be a positive integer, got 0"),
        (["--top-k", "-2"], "--top-k must be a positive integer, got -2"),
        (["--top-k", "1.5"], "--top-k must be a positive integer, got '1.5'"),
        (["--top-k", "two"], "--top-k must be a positive integer, got 'two'"),
        (["--confidence", "0"], "--confidence must be in (0, 1], got 0.0"),
        (["--confidence", "1.01"], "--confidence must be in (0, 1], got 1.01"),
        (["--confidence", "-0.5"], "--confidence must be in (0, 1], got -0.5"),
        (["--confidence", "nan"], "--confidence must be in (0, 1], got nan"),
        (["--confidence", "high"], "--confidence must be in (0, 1], got 'high'"),
        ([], "give --top-k K or --confidence P"),
        (["--top-k", "1", "--kernels", "numpy_fft"], "the model ranks none of this run's kernels (numpy_fft)"),
        (["--top-k", "1", "--model", "{other}"], "the model was trained on miopen:gfx908:120, not on this run's device"),
        (["--top-k", "1", "--compare", "{tmp}/other-problems"], "has no measured kernel for 6 of the 6 problems"),
        (["--top-k", "1", "--compare", "{tmp}/other-device"], "was measured on cpu:other:1t, this tune runs on"),
        (["--top-k", "1", "--compare", "{tmp}/nothing"], "is not a kernelbench run directory"),
        (["--top-k", "1", "--compare", "{tmp}/other-rule"], "used another stopping rule (budget_s 1.0 vs 0.01 here)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, spec, model_dir, other_device_model, args, message):
    p0, = problems(1)
    write_run(tmp_path / "other-problems", {p0: {"onednn_nchw": 1.0}}, [1.0],
              device=CpuBackend(threads=1).device_label)
    write_run(tmp_path / "other-device", {p0: {"onednn_nchw": 1.0}}, [1.0], device="cpu:other:1t")
    _, spec_entries = load_spec(spec)
    write_run(tmp_path / "other-rule", {e.problem: {"onednn_nchw": 1.0} for e in spec_entries}, [1.0] * 6,
              device=CpuBackend(threads=1).device_label, rule={**dataclasses.asdict(RULE), "budget_s": 1.0})
    args = [a.format(tmp=tmp_path, other=other_device_model) for a in args]
    if "--model" not in args:
        args += ["--model", str(model_dir)]
    # FAST first: a --kernels given in the case overrides it (click keeps the last value).
    result = invoke("tune", "--spec", spec, "-o", tmp_path / "run", *FAST, *args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and message in result.output
    assert "Traceback" not in result.output


def test_allow_other_device_lets_the_model_rank_anyway(tmp_path, spec, other_device_model):
    result = invoke("tune", "--model", other_device_model, "--spec", spec, "--top-k", "1", "-o", tmp_path / "run",
                    "--allow-other-device", *FAST)
    assert result.exit_code == 0, result.output
    assert "note: the model was trained on miopen:gfx908:120" in result.output
    assert read_parts(tmp_path / "run").height == 6
