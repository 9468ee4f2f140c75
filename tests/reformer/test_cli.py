import json
import os

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import reformer
from kernelbench import schema
from kernelbench.errors import InputError
from tests.reformer.synthetic import synthetic_device_frame, synthetic_frame, write_synthetic

PROBLEM = "batch=8,in_channels=64,in_h=56,in_w=56,out_channels=64,filter_h=3,filter_w=3,pad_h=1,pad_w=1,dtype=fp32,direction=fwd"
KEYS = ["top1", "within5", "oracle_ratio", "sum_ratio", "mean_pick_ms", "speedup_static_sum",
        "speedup_static_geomean", "n_problems", "skipped_problems",
        "open_hit_rate", "open_top1", "open_within5", "open_oracle_ratio", "open_sum_ratio"]  # fmt: skip


def run(*args):
    return CliRunner().invoke(reformer, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_synthetic(root / "d.parquet", 300, seed=2)
    result = run("fit", root / "d.parquet", "-o", root / "model", "--epochs", 2, "--min-steps", 0, "--dim", 16, "--blocks", 1,
                 "--batch-size", 64, "--threads", 1, "--quiet")
    return root, result


def test_fit_writes_model_dir_and_prints_table(fitted):
    root, result = fitted
    assert result.exit_code == 0, result.output
    for name in ("weights.safetensors", "config.json", "metrics.json", "curve.csv", "curve.png"):
        assert (root / "model" / name).stat().st_size > 0
    for word in ("reformer", "oracle", "static", "random", "top-1"):
        assert word in result.output
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert list(metrics["test"]) == KEYS + ["topk", "open_topk"] and metrics["fit_seconds"] > 0
    assert set(metrics["test"]["open_topk"]) == {"1", "2", "3"}  # fit's default --top-k
    assert len((root / "model" / "curve.csv").read_text().splitlines()) == 3  # header + 2 epochs


def test_evaluate_json_has_exactly_the_keys(fitted):
    root, _ = fitted
    result = run("evaluate", root / "model", root / "d.parquet", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(data) == [*KEYS, "borrowed_share"] and data["n_problems"] == 300 and data["skipped_problems"] == 0
    assert data["borrowed_share"] == 0.0  # a synthetic (undescribed) device keeps no orders


def test_evaluate_reports_unknown_kernels(fitted, tmp_path):
    root, _ = fitted
    frame = synthetic_frame(100, seed=7).with_columns(
        pl.when(pl.col("kernel") == "fft").then(pl.lit("fft_new")).otherwise(pl.col("kernel")).alias("kernel"))
    schema.write_dataset(frame, tmp_path / "other.parquet", {"device": "other"})
    result = run("evaluate", root / "model", tmp_path / "other.parquet")
    assert result.exit_code == 0, result.output
    assert "unknown to the model" in result.output and "fft_new" in result.output


def test_select_prints_ranked_kernels(fitted):
    root, _ = fitted
    result = run("select", root / "model", "--problem", PROBLEM, "--top", 2, "--applicable", "gemm,winograd,direct")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1"
    assert {line.split()[1] for line in lines} <= {"gemm", "winograd", "direct"}


def test_bad_input_exits_2_with_one_line(fitted, tmp_path):
    root, _ = fitted
    missing_column = tmp_path / "missing.parquet"
    pq.write_table(synthetic_frame(20).drop("kernel").to_arrow().replace_schema_metadata(schema.encode_metadata({})),
                   missing_column)
    no_ok = tmp_path / "no_ok.parquet"
    schema.write_dataset(synthetic_frame(20).with_columns(status=pl.lit("error"), time_ms=pl.lit(None)), no_ok, {})
    one_kernel = tmp_path / "one.parquet"
    schema.write_dataset(synthetic_frame(20).filter(pl.col("kernel") == "gemm"), one_kernel, {})
    other_version = tmp_path / "v2.parquet"
    write_synthetic(other_version, 20)
    table = pq.read_table(other_version)
    meta = dict(table.schema.metadata)
    meta[b"kernelbench.schema_version"] = b"2"
    pq.write_table(table.replace_schema_metadata(meta), other_version)
    old_model = tmp_path / "old_model"
    old_model.mkdir()
    for f in (root / "model").iterdir():
        (old_model / f.name).write_bytes(f.read_bytes())
    config = json.loads((old_model / "config.json").read_text())
    config["format_version"] = 0
    (old_model / "config.json").write_text(json.dumps(config))
    cases = [
        (("fit", missing_column, "-o", tmp_path / "m"), "missing required column(s): kernel"),
        (("fit", no_ok, "-o", tmp_path / "m"), "no rows with status 'ok'"),
        (("fit", one_kernel, "-o", tmp_path / "m"), "at least 2"),
        (("fit", other_version, "-o", tmp_path / "m"), "schema version 2"),
        (("fit", root / "d.parquet", "-o", tmp_path / "m", "--split-by", "colour=red"), "--split-by column"),
        (("select", root / "model", "--problem", PROBLEM + ",colour=red"), "unknown problem field"),
        (("select", root / "model", "--problem", "batch=8,in_channels=64"), "missing problem field"),
        (("select", root / "model", "--problem", "batch"), "not FIELD=VALUE"),
        (("select", old_model, "--problem", PROBLEM), "format version 0"),
        (("evaluate", old_model, root / "d.parquet"), "format version 0"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_an_aborted_run_exits_1_with_one_line(fitted, tmp_path, monkeypatch):
    import importlib

    from kernelbench.errors import RunAborted

    ablate = importlib.import_module("reformer.ablate")  # `reformer` here is the click group from cli

    def abort(*args, **kwargs):
        raise RunAborted("a worker process died; re-run the same command to resume")

    monkeypatch.setattr(ablate, "run_ablation", abort)
    root, _ = fitted
    result = CliRunner().invoke(reformer, ["ablate", str(root / "d.parquet"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output == "Aborted: a worker process died; re-run the same command to resume\n"


def test_select_without_applicable_prints_every_candidate_and_flags_an_unseen_context(fitted):
    root, _ = fitted
    result = run("select", root / "model", "--problem", PROBLEM.replace("dtype=fp32", "dtype=bf16"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["context_seen"] is False and data["candidates"] == "context"
    assert "never saw a training problem of this problem's context" in result.stderr
    ranked = [entry["kernel"] for entry in data["ranked"]]
    probabilities = [entry["probability"] for entry in data["ranked"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-5)
    seen = run("select", root / "model", "--problem", PROBLEM, "--json")
    assert json.loads(seen.stdout)["context_seen"] is True and "warning" not in seen.stderr
    assert len(ranked) >= len(json.loads(seen.stdout)["ranked"])  # the backed-off context is coarser


def test_evaluate_top_k_reports_both_protocols(fitted):
    root, _ = fitted
    result = run("evaluate", root / "model", root / "d.parquet", "--json", "--top-k", "1,2")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(data["topk"]) == set(data["open_topk"]) == {"1", "2"}
    assert data["topk"]["1"]["top1"] == data["top1"] and data["open_topk"]["1"]["top1"] == data["open_top1"]
    assert data["topk"]["2"]["oracle_ratio"] >= data["oracle_ratio"]
    assert 0 < data["open_hit_rate"] <= 1


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two"])
def test_bad_top_k_exits_2_with_one_line(fitted, value):
    root, _ = fitted
    result = run("evaluate", root / "model", root / "d.parquet", "--top-k", value)
    assert result.exit_code == 2 and "--top-k" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_model_without_a_candidate_rule_says_how_to_refit(fitted, tmp_path):
    import hashlib
    import shutil

    root, _ = fitted
    old = tmp_path / "old-model"
    shutil.copytree(root / "model", old)
    config = json.loads((old / "config.json").read_text())
    del config["candidates"]
    (old / "config.json").write_text(json.dumps(config))
    # A whole directory as an older reformer would have saved it: the manifest names the config it holds.
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["config.json"] = hashlib.sha256((old / "config.json").read_bytes()).hexdigest()
    (old / "manifest.json").write_text(json.dumps(manifest))
    for args in (("select", old, "--problem", PROBLEM), ("evaluate", old, root / "d.parquet")):
        result = run(*args)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert "no candidate rule" in result.output and f"-o {old}" in result.output
        assert "--applicable" not in result.output  # which fails the same way: the model cannot be loaded


def test_fit_choice_lists_are_fitconfigs():
    import click

    from reformer import config
    from reformer.splits import GROUPINGS

    choices = {p.name: tuple(p.type.choices) for p in reformer.commands["fit"].params if isinstance(p.type, click.Choice)}
    assert choices == {"labels": config.LABELS, "paths": config.PATHS, "block": config.BLOCKS,
                       "activation": config.ACTIVATIONS, "schedule": config.SCHEDULES, "group_by": GROUPINGS,
                       "precision": config.PRECISIONS, "candidates": config.CANDIDATES,
                       "membership_term": config.MEMBERSHIP_TERMS}


def test_fit_refuses_an_unwritable_output_before_training(tmp_path):
    write_synthetic(tmp_path / "d.parquet", 50, seed=3)
    (tmp_path / "file").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    cases = [(tmp_path / "file" / "model", "is not a directory"), (tmp_path / "data", "non-empty directory without a model")]
    if not os.access("/sys", os.W_OK) or os.path.ismount("/sys"):
        cases.append(("/sys/reformer-model", "not writable"))  # sysfs refuses new files, even to root
    for output, reason in cases:
        result = run("fit", tmp_path / "d.parquet", "-o", output, "--epochs", 1, "--quiet")
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: -o/--output: ") and reason in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "problems" not in result.output  # nothing ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet", "data", "file"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["keep.txt"]


def _raw(frame, path):
    """A dataset file written without write_dataset's checks (as another tool might write it)."""
    pq.write_table(frame.to_arrow().replace_schema_metadata(schema.encode_metadata({})), path)
    return path


def test_bad_values_and_no_choice_exit_2_with_one_line_in_every_command(fitted, tmp_path):
    root, _ = fitted
    good = synthetic_frame(30, seed=3)
    single = good.unique(subset="problem_id", keep="last", maintain_order=True)
    assert single["kernel"].n_unique() >= 2  # several kernels, but one per problem
    datasets = {
        "nothing can be learned or scored": schema.write_dataset(single, tmp_path / "single.parquet", {})
        or tmp_path / "single.parquet",
        "no plausible time_ms": _raw(good.with_columns(time_ms=float("nan")), tmp_path / "nan.parquet"),
        "invalid problem: batch=-": _raw(good.with_columns(-pl.col("batch")), tmp_path / "neg.parquet"),
        "a value of in_channels that is not a whole number": _raw(good.with_columns(pl.col("in_channels") + 0.5),
                                                                  tmp_path / "frac.parquet"),
        "repeat a (problem, kernel) pair": _raw(pl.concat([good, good]), tmp_path / "twice.parquet"),
    }
    for message, path in datasets.items():
        for args in (("fit", path, "-o", tmp_path / "m"), ("evaluate", root / "model", path, "--json"),
                     ("ablate", path, "-o", tmp_path / "r", "--quick", "--no-progress")):
            result = CliRunner().invoke(reformer, [str(a) for a in args])
            assert result.exit_code == 2, (args, result.output)
            assert message in result.stderr and result.stdout == "", (args, result.output)
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert not (tmp_path / "m").exists() and not (tmp_path / "r" / "results.parquet").exists()


def test_select_refuses_a_field_given_twice_and_integers_out_of_bounds(fitted):
    root, _ = fitted
    cases = [
        ("batch=32,batch=64," + PROBLEM.replace("batch=8,", ""), "gives batch twice (batch=32 and batch=64)"),
        (PROBLEM.replace("batch=8", "batch=2147483648"), "batch=2147483648 is above 2147483647"),
        (PROBLEM.replace("in_h=56", "in_h=99999999999999999999"), "in_h=99999999999999999999 is above 2147483647"),
        (PROBLEM.replace("batch=8", "batch=-1"), "batch=-1 must be >= 1"),
        (PROBLEM.replace("batch=8", "batch=1.5"), "batch='1.5' is not an integer"),
    ]
    for problem, message in cases:
        result = CliRunner().invoke(reformer, ["select", str(root / "model"), "--problem", problem])
        assert result.exit_code == 2, (problem, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (problem, result.stderr)


def test_a_model_of_two_devices_offers_each_device_its_own_kernels(tmp_path):
    both = pl.concat([synthetic_frame(200, seed=2), synthetic_device_frame(200, seed=2)])  # no winograd on "other"
    schema.write_dataset(both, tmp_path / "ab.parquet", {"source": "test"})
    # Labels without a device descriptor: candidates per device, scores without device tokens.
    result = run("fit", tmp_path / "ab.parquet", "-o", tmp_path / "m", "--epochs", 1, "--min-steps", 0, "--dim", 16,
                 "--blocks", 1, "--batch-size", 64, "--threads", 1, "--quiet", "--no-device-tokens")
    assert result.exit_code == 0, result.output
    assert "400 problems ((problem, device) pairs on 2 devices)" in result.output

    def ranked(*device):
        out = run("select", tmp_path / "m", "--problem", PROBLEM, *device, "--json")
        return {r["kernel"] for r in json.loads(out.stdout)["ranked"]}, json.loads(out.stdout)["context_seen"], out

    on_synthetic, seen_synthetic, _ = ranked("--device", "synthetic")
    on_other, seen_other, _ = ranked("--device", "other")
    assert "winograd" in on_synthetic and "winograd" not in on_other and seen_synthetic and seen_other
    anywhere, seen, out = ranked()
    assert anywhere == on_synthetic | on_other and not seen and "device not given" in out.stderr
    held = run("fit", tmp_path / "ab.parquet", "-o", tmp_path / "m2", "--split-by", "device=other", "--epochs", 1,
               "--min-steps", 0, "--dim", 16, "--blocks", 1, "--batch-size", 64, "--threads", 1, "--quiet",
               "--no-device-tokens")
    assert "test = problems with device in {other}" in held.output and "test 200" in held.output


@pytest.fixture(scope="module")
def cpu_fitted(tmp_path_factory):
    """A model of a kernelbench CPU sweep (forward fp32 only): its candidate rule is the kernels' own applies."""
    import polars as pl

    from kernelbench import schema
    from tests.reformer.synthetic import synthetic_frame

    root = tmp_path_factory.mktemp("cpu")
    names = {"direct": "onednn_nchw", "gemm": "torch_im2col", "winograd": "numpy_winograd_f2x2_3x3",
             "gemm_1x1": "numpy_gemm_1x1", "fft": "numpy_fft"}
    frame = synthetic_frame(200, seed=4, directions=("fwd",)).with_columns(pl.col("kernel").replace(names))
    schema.write_dataset(frame, root / "cpu.parquet",
                         {"source": "kernelbench-sweep", "devices": {"synthetic": [{"backend": "cpu"}]}})
    result = run("fit", root / "cpu.parquet", "-o", root / "model", "--epochs", 1, "--min-steps", 0, "--dim", 8,
                 "--blocks", 1, "--threads", 1, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((root / "model" / "config.json").read_text())["candidates"]["kind"] == "applies"
    return root


def test_select_with_an_applies_rule_flags_an_unseen_context_and_refuses_a_problem_nothing_applies_to(cpu_fitted):
    model = cpu_fitted / "model"
    seen = run("select", model, "--problem", PROBLEM, "--json")
    assert seen.exit_code == 0 and json.loads(seen.stdout)["context_seen"] is True and "warning" not in seen.stderr
    assert json.loads(seen.stdout)["candidates"] == "applies"
    # Grouped convolutions were never swept: the kernels' own applies still decide, and the output says so.
    grouped = run("select", model, "--problem", PROBLEM + ",groups=2", "--json")
    assert grouped.exit_code == 0, grouped.output
    assert json.loads(grouped.stdout)["context_seen"] is False
    assert "never saw a training problem" in grouped.stderr and "own applicability check" in grouped.stderr
    # Naming the applicable kernels does not hide that the context is new.
    named = run("select", model, "--problem", PROBLEM + ",groups=2", "--applicable", "torch_im2col", "--json")
    assert json.loads(named.stdout)["context_seen"] is False and "never saw" in named.stderr
    # No CPU kernel computes a backward pass: one line, exit 2, not a traceback.
    backward = run("select", model, "--problem", PROBLEM.replace("direction=fwd", "direction=bwd_data"))
    assert backward.exit_code == 2 and len(backward.output.strip().splitlines()) == 1
    assert "no kernel of the model is a candidate" in backward.output and "direction=bwd_data" in backward.output


def test_select_applicable_still_flags_a_context_rule_s_unseen_context(fitted):
    root, _ = fitted
    result = run("select", root / "model", "--problem", PROBLEM.replace("dtype=fp32", "dtype=bf16"),
                 "--applicable", "gemm,direct", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["context_seen"] is False and "never saw" in result.stderr


def test_fit_says_when_min_steps_raises_the_epochs(fitted, tmp_path):
    root, result = fitted
    assert "raised to" not in result.output  # --min-steps 0: the epochs asked for
    # 300 problems: 240 train, 4 batches of 64 per epoch, so 20 steps need 5 epochs.
    raised = run("fit", root / "d.parquet", "-o", tmp_path / "m", "--epochs", 1, "--min-steps", 20, "--dim", 8,
                 "--blocks", 1, "--batch-size", 64, "--threads", 1, "--quiet")
    assert raised.exit_code == 0, raised.output
    assert "5 epochs (--epochs 1 raised to 5 by --min-steps 20)" in raised.output


@pytest.mark.parametrize("args", [("--lr", "nan"), ("--ratio-power", "inf"), ("--membership-weight", "nan"),
                                  ("--time-weight", "nan"), ("--train-noise", "nan"), ("--seed", "-1"),
                                  ("--seed", str(2**64))])
def test_fit_refuses_non_finite_floats_and_seeds_out_of_range_before_training(fitted, tmp_path, args):
    root, _ = fitted
    result = run("fit", root / "d.parquet", "-o", tmp_path / "m", *args, "--quiet")
    assert result.exit_code == 2 and args[0] in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_fit_config_refuses_nan_from_python_too():
    from reformer.config import FitConfig
    from reformer.transfer import TransferOptions

    for field in ("lr", "ratio_power", "softmax_tau_ms", "membership_weight", "weight_decay", "time_weight"):
        with pytest.raises(InputError, match="must be"):
            FitConfig(**{field: float("nan")})
    with pytest.raises(InputError, match="--finetune-lr"):
        TransferOptions(finetune_lr=float("nan"))
    with pytest.raises(InputError, match="--targets names no device"):
        TransferOptions(targets=())


def test_an_interrupted_fit_says_that_nothing_was_written(fitted, tmp_path, monkeypatch):
    from reformer import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "fit", interrupted)
    root, _ = fitted
    result = run("fit", root / "d.parquet", "-o", tmp_path / "m", "--quiet")
    assert result.exit_code == 130 and result.stderr.strip() == "Interrupted; nothing was written."
    assert not (tmp_path / "m").exists()


def test_a_multi_line_input_error_is_printed_on_one_line(fitted, monkeypatch):
    from reformer import selector

    def fails(*args, **kwargs):
        raise InputError("cannot load the weights:\n\tsize mismatch for head.weight\n\tcopying a param")

    monkeypatch.setattr(selector.Selector, "load", fails)
    root, _ = fitted
    result = run("select", root / "model", "--problem", PROBLEM)
    assert result.exit_code == 2
    assert result.stderr == "Error: cannot load the weights: size mismatch for head.weight copying a param\n"


def test_select_notes_a_device_the_model_was_not_trained_on(fitted):
    root, _ = fitted
    trained_on = json.loads((root / "model" / "config.json").read_text())["devices"]
    result = run("select", root / "model", "--problem", PROBLEM, "--device", "nope")
    assert result.exit_code == 0 and f"--device nope is not a device the model was trained on ({trained_on[0]}" in result.stderr
    same = run("select", root / "model", "--problem", PROBLEM, "--device", trained_on[0])
    assert same.exit_code == 0 and "not a device the model was trained on" not in same.stderr


def test_select_checks_derived_fields_given_in_the_problem(fitted):
    from cli import _parse_problem
    from kernelbench.problem import ConvProblem

    root, _ = fitted

    out_h = ConvProblem.from_mapping(_parse_problem(PROBLEM)).as_row()["out_h"]
    assert run("select", root / "model", "--problem", f"{PROBLEM},out_h={out_h}").exit_code == 0
    wrong = run("select", root / "model", "--problem", f"{PROBLEM},out_h={out_h + 1}")
    assert wrong.exit_code == 2 and f"out_h={out_h + 1}" in wrong.output and f"make it {out_h}" in wrong.output
