"""Fine-tuning (``fit(..., init=...)``, ``reformer fit --init``), training samples and the step cap."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from cli import reformer
from kernelbench import schema
from kernelbench.errors import InputError
from reformer.config import FitConfig
from reformer.data import load_matrix, pivot
from reformer.splits import SplitSpec, make_split, sample_train
from reformer.store import load_model
from tests.reformer.synthetic import DESCRIBED_DEVICES, multi_device_frame, synthetic_frame, write_multi_device

TINY = FitConfig(dim=8, blocks=1, epochs=2, min_steps=0, batch_size=64, lr=1e-2, threads=1, progress=False)


def run(*args):
    return CliRunner().invoke(reformer, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *words):
    """Exit 2 and one line on stderr (the dataset's summary may already be on stdout)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for word in words:
        assert word in lines[0], lines[0]


def spy_on_start(monkeypatch) -> dict:
    """Record the weights each fit's training loop starts from (``seen["start"]``)."""
    from reformer import train

    seen: dict = {}
    real = train.train_loop

    def spy(model, **kwargs):
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real(model, **kwargs)

    monkeypatch.setattr(train, "train_loop", spy)
    return seen


@pytest.fixture(scope="module")
def sources():
    """A model trained on two devices, and the third device's matrix (the target)."""
    from reformer.train import fit

    frame = multi_device_frame(150, seed=3)
    target = pivot(frame.filter(pl.col("device") == DESCRIBED_DEVICES[2]))
    trained = fit(pivot(frame.filter(pl.col("device") != DESCRIBED_DEVICES[2])), TINY).trained
    return trained, target


def test_fine_tuning_starts_from_the_init_weights_and_leaves_them_alone(sources, monkeypatch):
    from reformer import train

    trained, target = sources
    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    seen = spy_on_start(monkeypatch)
    result = train.fit(target, TINY, init=trained)
    assert set(seen["start"]) == set(before)
    assert all(torch.equal(seen["start"][k], before[k]) for k in before)  # starts exactly from the init weights
    assert all(torch.equal(trained.model.state_dict()[k], before[k]) for k in before)  # init not modified
    assert result.trained.encoder is trained.encoder and result.trained.kernels == trained.kernels
    assert result.trained.info["init"]["added_kernels"] == []
    # From scratch, the same data starts elsewhere.
    train.fit(target, TINY)
    assert not torch.equal(seen["start"]["head.weight"], before["head.weight"])


def test_init_keeps_the_architecture_of_the_model(sources):
    from reformer.train import fit

    trained, target = sources
    result = fit(target, dataclasses.replace(TINY, dim=32, blocks=3), init=trained)
    assert result.trained.model.config.dim == 8 and result.trained.model.config.blocks == 1
    assert result.trained.info["fit"]["dim"] == 8


def test_kernels_the_init_model_lacks_are_appended_as_the_mean_row(monkeypatch):
    from reformer import train

    frame = multi_device_frame(150, seed=4)
    trained = train.fit(pivot(frame.filter(pl.col("device") == DESCRIBED_DEVICES[1])), TINY).trained
    assert "winograd" not in trained.kernels
    seen = spy_on_start(monkeypatch)
    result = train.fit(pivot(frame.filter(pl.col("device") == DESCRIBED_DEVICES[0])), TINY, init=trained)
    assert result.trained.kernels == (*trained.kernels, "winograd")
    assert result.trained.info["init"]["added_kernels"] == ["winograd"]
    old = trained.model.state_dict()
    start = seen["start"]
    assert torch.allclose(start["head.weight"][-1], old["head.weight"].mean(dim=0))
    assert torch.allclose(start["head.bias"][-1], old["head.bias"].mean())


def test_a_membership_head_model_grows_both_heads_and_keeps_the_head():
    from reformer import train

    frame = multi_device_frame(150, seed=4)
    head = dataclasses.replace(TINY, membership_head=True)
    trained = train.fit(pivot(frame.filter(pl.col("device") == DESCRIBED_DEVICES[1])), head).trained
    result = train.fit(pivot(frame.filter(pl.col("device") == DESCRIBED_DEVICES[0])), TINY, init=trained)
    tuned = result.trained.model
    assert tuned.config.membership_head and tuned.membership.weight.shape[0] == len(result.trained.kernels)
    assert result.trained.kernels[-1] == "winograd"


def test_init_with_another_token_design_is_refused(tmp_path):
    from reformer.train import fit

    forward = synthetic_frame(200, seed=5, directions=("fwd",))
    trained = fit(pivot(forward), TINY).trained
    assert "direction" not in trained.encoder.tokens
    both = pivot(synthetic_frame(200, seed=6))
    with pytest.raises(InputError, match="token design differs.*direction"):
        fit(both, TINY, init=trained)
    # The CLI: one line, exit 2.
    schema.write_dataset(forward, tmp_path / "fwd.parquet", {"source": "test"})
    schema.write_dataset(synthetic_frame(200, seed=6), tmp_path / "both.parquet", {"source": "test"})
    small = ("--epochs", 1, "--min-steps", 0, "--dim", 8, "--blocks", 1, "--threads", 1, "--quiet")
    assert run("fit", tmp_path / "fwd.parquet", "-o", tmp_path / "m", *small).exit_code == 0
    one_line_error(run("fit", tmp_path / "both.parquet", "-o", tmp_path / "t", "--init", tmp_path / "m", *small),
                   "token design", "direction")
    one_line_error(run("fit", tmp_path / "fwd.parquet", "-o", tmp_path / "t", "--init", tmp_path / "m",
                       "--epochs", 1, "--dim", 16, "--quiet"), "--dim", "init")
    one_line_error(run("fit", tmp_path / "fwd.parquet", "-o", tmp_path / "t", "--init", tmp_path / "nothing",
                       *small), "--init")


def test_cli_fine_tunes_and_reports_the_sample(tmp_path):
    frame = multi_device_frame(150, seed=7)
    schema.write_dataset(frame.filter(pl.col("device") != DESCRIBED_DEVICES[0]), tmp_path / "src.parquet",
                         {"source": "test"})
    schema.write_dataset(frame.filter(pl.col("device") == DESCRIBED_DEVICES[0]), tmp_path / "tgt.parquet",
                         {"source": "test"})
    small = ("--epochs", 1, "--min-steps", 0, "--dim", 8, "--blocks", 1, "--threads", 1, "--quiet")
    assert run("fit", tmp_path / "src.parquet", "-o", tmp_path / "src", *small).exit_code == 0
    result = run("fit", tmp_path / "tgt.parquet", "-o", tmp_path / "tuned", "--init", tmp_path / "src",
                 "--train-fraction", 0.25, *small)
    assert result.exit_code == 0, result.output
    assert "fine-tuned from" in result.output and "winograd" in result.output  # the kernel it added
    info = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert info["train_sample"] == {"problems": 30, "of": 120, "seed": 0}  # 25 % of the 80 % train split of 150
    assert info["init"]["added_kernels"] == ["winograd"]
    assert load_model(tmp_path / "tuned").kernels[-1] == "winograd"
    # The init model reads the device: a fine-tuned model keeps its device tokens, and says so.
    assert load_model(tmp_path / "tuned").encoder.device_tokens and info["fit"].get("device_tokens", True)
    one_line_error(run("fit", tmp_path / "tgt.parquet", "-o", tmp_path / "x", "--init", tmp_path / "src",
                       "--no-device-tokens", *small), "--device-tokens", "(on)")
    assert not (tmp_path / "x").exists()
    for value in (0, -0.1, 1.5):
        one_line_error(run("fit", tmp_path / "tgt.parquet", "-o", tmp_path / "x", "--train-fraction", value, *small),
                       "--train-fraction", "(0, 1]")
    one_line_error(run("fit", tmp_path / "tgt.parquet", "-o", tmp_path / "x", "--train-problems", 500, *small),
                   "--train-problems")


def test_train_sample_is_seeded_nested_and_of_the_right_size(matrix):
    split = make_split(matrix.problems, SplitSpec(seed=0))
    n = len(split.train)
    a = sample_train(split, fraction=0.1, seed=0)
    assert len(a.train) == round(0.1 * n) and set(a.train) <= set(split.train)
    assert np.array_equal(a.train, sample_train(split, fraction=0.1, seed=0).train)
    assert not np.array_equal(a.train, sample_train(split, fraction=0.1, seed=1).train)
    assert set(a.train) <= set(sample_train(split, fraction=0.25, seed=0).train)  # nested
    assert np.array_equal(a.validation, split.validation) and np.array_equal(a.test, split.test)
    assert len(sample_train(split, problems=7, seed=0).train) == 7
    assert sample_train(split, fraction=1.0) is split
    with pytest.raises(InputError, match="train-fraction"):
        sample_train(split, fraction=0.0)
    with pytest.raises(InputError, match="train-fraction"):
        FitConfig(train_fraction=1.01)
    with pytest.raises(InputError, match="not both"):
        FitConfig(train_fraction=0.5, train_problems=10)


def test_fit_trains_on_the_sample(matrix):
    from reformer.train import fit

    result = fit(matrix, dataclasses.replace(TINY, train_problems=50))
    full = make_split(matrix.problems, TINY.split)
    assert result.split.sizes()["train"] == 50 and result.trained.info["train_sample"]["of"] == len(full.train)
    assert np.array_equal(result.split.test, full.test)


def test_max_steps_lowers_epochs_only_on_large_datasets():
    from reformer.train import training_epochs

    config = FitConfig()
    assert training_epochs(config, 146_888) == 15  # MI100: 287 batches x 15 = 4,305 steps, under the cap
    assert training_epochs(config, 344_730) == 11  # five devices: 674 batches, 8,000 // 674
    assert training_epochs(config, 5_000_000) == 1  # at least one epoch
    assert training_epochs(dataclasses.replace(config, max_steps=0), 344_730) == 15  # no cap
    assert training_epochs(config, 1_000) == 250  # min_steps still raises small ones
    assert "max_steps" not in config.as_dict() and dataclasses.replace(config, max_steps=9).as_dict()["max_steps"] == 9
    with pytest.raises(InputError, match="max-steps"):
        FitConfig(max_steps=-1)


def test_evaluate_scores_a_described_new_device_and_refuses_an_undescribed_one(tmp_path):
    frame = multi_device_frame(120, seed=8)
    schema.write_dataset(frame.filter(pl.col("device") == DESCRIBED_DEVICES[0]), tmp_path / "a.parquet",
                         {"source": "test"})
    schema.write_dataset(frame.filter(pl.col("device") == DESCRIBED_DEVICES[1]), tmp_path / "b.parquet",
                         {"source": "test"})
    unknown = frame.filter(pl.col("device") == DESCRIBED_DEVICES[1]).with_columns(pl.lit("miopen:gfx999:7").alias("device"))
    schema.write_dataset(unknown, tmp_path / "c.parquet", {"source": "test"})
    assert run("fit", tmp_path / "a.parquet", "-o", tmp_path / "m", "--epochs", 1, "--min-steps", 0, "--dim", 8,
               "--blocks", 1, "--threads", 1, "--quiet").exit_code == 0
    result = run("evaluate", tmp_path / "m", tmp_path / "b.parquet")
    assert result.exit_code == 0, result.output
    assert "not trained on: miopen:gfx90a:110" in result.output
    one_line_error(run("evaluate", tmp_path / "m", tmp_path / "c.parquet"), "no descriptor", "gfx999")


def test_multi_device_dataset_round_trip(tmp_path):
    write_multi_device(tmp_path / "all.parquet", 60)
    assert load_matrix(tmp_path / "all.parquet").devices == tuple(sorted(DESCRIBED_DEVICES))


def test_fine_tuned_rule_keeps_the_init_contexts_and_adds_the_targets(sources):
    """A fine-tuning set of a few problems must not shrink the candidates to its own few contexts."""
    from reformer.candidates import CONTEXT_LEVELS, DEVICE_PROPERTY
    from reformer.train import fit

    trained, target = sources
    result = fit(target, dataclasses.replace(TINY, train_problems=3), init=trained)
    old = trained.info["candidates"]
    new = result.trained.info["candidates"]
    assert set(new["devices"]) == {*old["devices"], DESCRIBED_DEVICES[2]}
    for level in range(len(CONTEXT_LEVELS)):
        for key, names in old["kernels_by_level"][level].items():
            assert set(names) <= set(new["kernels_by_level"][level][key])  # every init context kept
        added = {k: v for k, v in new["kernels_by_device_level"][level].items()
                 if k.startswith(DESCRIBED_DEVICES[2] + "|")}
        for key, names in old["kernels_by_level"][level].items():  # the new device starts from the unseen union
            assert set(names) <= set(added[f"{DESCRIBED_DEVICES[2]}|{key}"])
    assert DEVICE_PROPERTY in new["fields"]
