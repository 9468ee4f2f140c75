import dataclasses

import numpy as np
import pytest
import torch

from kernelbench.errors import InputError
from reformer.config import MEMBERSHIP_WEIGHT, FitConfig
from reformer.splits import SplitSpec, make_split
from reformer.train import fit
from tests.reformer.conftest import QUICK


def test_fit_learns_beyond_the_static_order(fit_result):
    test = fit_result.evaluations["test"]
    assert test.model.top1 > test.baselines["static"].top1 + 0.1
    assert test.model.oracle_ratio > test.baselines["random"].oracle_ratio
    assert test.baselines["oracle"].top1 == 1.0
    assert fit_result.fit_seconds > 0 and 1 <= fit_result.best_epoch <= QUICK.epochs
    assert [r.epoch for r in fit_result.curve] == list(range(1, QUICK.epochs + 1))
    best = max(r.validation_oracle_ratio for r in fit_result.curve)
    # The best epoch's weights were kept; the default (candidates=context) early-stops on the open protocol.
    assert fit_result.evaluations["validation"].model.open_oracle_ratio == pytest.approx(best, abs=1e-12)


def test_metrics_json_layout(fit_result):
    data = fit_result.metrics_json()
    for side in ("train", "validation", "test"):
        assert list(data[side]) == [
            "top1", "within5", "oracle_ratio", "sum_ratio", "mean_pick_ms", "speedup_static_sum",
            "speedup_static_geomean", "n_problems", "skipped_problems",
            "open_hit_rate", "open_top1", "open_within5", "open_oracle_ratio", "open_sum_ratio",
        ]  # fmt: skip
    assert data["fit_seconds"] == fit_result.fit_seconds


def test_fit_is_deterministic_under_seed(matrix):
    small = matrix.subset(np.arange(200))
    config = dataclasses.replace(QUICK, epochs=2)
    a, b = fit(small, config), fit(small, config)
    state_a, state_b = a.trained.model.state_dict(), b.trained.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    c = fit(small, dataclasses.replace(config, seed=1))
    assert not all(torch.equal(state_a[k], c.trained.model.state_dict()[k]) for k in state_a)


def test_precomputed_split_and_training_noise(matrix):
    small = matrix.subset(np.arange(200))
    split = make_split(small.problems, SplitSpec(seed=5))
    config = dataclasses.replace(QUICK, epochs=1, seed=0)
    clean = fit(small, config, split=split)
    noisy = fit(small, dataclasses.replace(config, train_noise_sigma=0.5), split=split)
    np.testing.assert_array_equal(clean.split.test, split.test)
    np.testing.assert_array_equal(noisy.evaluations["test"].scored, clean.evaluations["test"].scored)
    assert clean.curve[0].train_loss != noisy.curve[0].train_loss  # labels changed, test times did not
    assert clean.evaluations["test"].baselines["oracle"].mean_pick_ms == noisy.evaluations["test"].baselines["oracle"].mean_pick_ms


def test_small_datasets_get_enough_steps(matrix):
    small = matrix.subset(np.arange(100))  # 80 train problems, 2 batches of 64 per epoch
    result = fit(small, dataclasses.replace(QUICK, epochs=1, min_steps=5))
    assert len(result.curve) == 3


@pytest.mark.parametrize("epochs", [1, 2, 3])  # 2, 4 and 6 optimiser steps: OneCycleLR once divided by zero at 4
def test_very_short_runs_train_under_the_default_schedule(matrix, epochs):
    small = matrix.subset(np.arange(100))  # 80 train problems, 2 batches of 64 per epoch
    result = fit(small, dataclasses.replace(QUICK, epochs=epochs, schedule="onecycle"))
    assert len(result.curve) == epochs
    assert all(np.isfinite(r.train_loss) and r.lr >= 0 for r in result.curve)


def test_bfloat16_training_learns_and_keeps_float32_weights(matrix):
    config = dataclasses.replace(QUICK, precision="bfloat16")
    result = fit(matrix, config)
    test = result.evaluations["test"]
    assert test.model.top1 > test.baselines["static"].top1 + 0.1
    state = result.trained.model.state_dict()
    assert all(t.dtype in (torch.float32, torch.int64) for t in state.values())
    assert result.trained.info["fit"]["precision"] == "bfloat16"
    small = matrix.subset(np.arange(200))
    one_epoch = dataclasses.replace(config, epochs=1)
    bf16, fp32 = fit(small, one_epoch), fit(small, dataclasses.replace(one_epoch, precision="float32"))
    assert bf16.curve[0].train_loss != fp32.curve[0].train_loss  # the forward pass really ran in bfloat16


def test_bad_options_are_input_errors():
    for bad in ({"precision": "float16"}, {"ratio_power": 0}, {"labels": "rank"}, {"paths": "none"}, {"derived": ("magic",)}, {"epochs": 0},
                {"membership_term": "max"}, {"membership_weight": -1}):
        with pytest.raises(InputError):
            FitConfig(**bad)


def test_forward_only_dataset_drops_constant_tokens():
    from reformer.data import pivot
    from tests.reformer.synthetic import synthetic_frame

    matrix = pivot(synthetic_frame(150, seed=4, directions=("fwd",)))
    result = fit(matrix, dataclasses.replace(QUICK, epochs=1))
    encoder = result.trained.encoder
    assert "direction" not in encoder.categorical and "in_d" not in encoder.numeric
    assert all(np.isfinite(encoder.std)) and min(encoder.std) > 0
    assert np.isfinite(result.evaluations["test"].model.oracle_ratio)


@pytest.mark.parametrize("block", ["gamma", "transformer"])
def test_validation_picks_do_not_depend_on_the_chunk_size(block):
    from reformer.model import ModelConfig, Reformer
    from reformer.train import VALIDATION_CHUNK, _validation_logits

    torch.manual_seed(0)
    model = Reformer(ModelConfig(n_categories=(3, 2), n_numeric=5, n_values=(4,) * 5, n_kernels=6, dim=16,
                                 block=block))
    n = 3 * VALIDATION_CHUNK + 17  # several chunks and a short last one
    generator = torch.Generator().manual_seed(1)
    inputs = (torch.randint(0, 2, (n, 2), generator=generator), torch.randn(n, 5, generator=generator),
              torch.randint(0, 4, (n, 5), generator=generator))
    applicable = np.random.default_rng(2).random((n, 6)) < 0.7
    applicable[:, 0] = True
    logits_one_pass = model.eval()(*inputs).detach().numpy()
    logits = _validation_logits(model, inputs)
    assert np.array_equal(logits, _validation_logits(model, inputs, chunk=n))
    masked = np.where(applicable, logits_one_pass, -np.inf)
    assert np.array_equal(np.where(applicable, logits, -np.inf).argmax(axis=1), masked.argmax(axis=1))


def test_fit_options_keep_the_keys_of_earlier_cells():
    """Options at the values models had before them are left out, so ablation cells computed then stay valid."""
    measured = FitConfig(candidates="measured", membership_head=True).as_dict()
    assert not {"candidates", "membership_weight", "membership_head", "membership_trunk"} & set(measured)
    old_context = FitConfig(candidates="context", membership_head=False).as_dict()
    assert not {"membership_head", "membership_trunk"} & set(old_context) and old_context["membership_weight"] == MEMBERSHIP_WEIGHT
    assert FitConfig(candidates="context", membership_head=True).as_dict()["membership_head"] is True
    assert "membership_term" not in FitConfig(membership_term="set").as_dict()
    assert "membership_term" not in FitConfig(candidates="measured", membership_term="pick").as_dict()
    assert FitConfig(membership_term="pick").as_dict()["membership_term"] == "pick"


@pytest.mark.parametrize("candidates", ["context", "measured"])
def test_membership_head_fit_scores_with_its_own_rule(matrix, candidates):
    """With --candidates context the model has the head, and the Selector's scores (fast path) are the torch
    model's z + log σ(u); with measured the option does nothing (same model as without it)."""
    small = matrix.subset(np.arange(300))
    config = dataclasses.replace(QUICK, epochs=2, candidates=candidates, membership_head=True)
    result = fit(small, config)
    model = result.trained.model
    assert (model.membership is not None) == (candidates == "context")
    encoded = result.trained.encoder.encode(small.columns())
    with torch.inference_mode():
        scores, u = model.scores_and_membership(*(torch.from_numpy(a) for a in (encoded.categorical, encoded.numeric,
                                                                                  encoded.value_ids)))
    fast = result.selector.logits(small.columns())
    np.testing.assert_allclose(fast, scores.numpy(), atol=1e-5 * float(scores.abs().max()), rtol=0)
    if candidates == "measured":
        plain = fit(small, dataclasses.replace(config, membership_head=False))
        np.testing.assert_array_equal(plain.selector.logits(small.columns()), fast)
        assert result.trained.info["fit"] == plain.trained.info["fit"]


@pytest.mark.parametrize("term", ["set", "pick"])
def test_reformer_and_the_mlp_train_with_the_configured_membership_term(monkeypatch, matrix, term):
    """--membership-term reaches the loss of both Reformer and the MLP baseline (one constant for both)."""
    from reformer import baselines, model, train
    from reformer.baselines import MLPConfig, fit_mlp

    seen: list[str] = []

    def recording(*args, **kwargs):
        seen.append(kwargs["membership_term"])
        return model.soft_cross_entropy(*args, **kwargs)

    monkeypatch.setattr(train, "soft_cross_entropy", recording)
    monkeypatch.setattr(baselines, "soft_cross_entropy", recording)
    small = matrix.subset(np.arange(200))
    fit(small, dataclasses.replace(QUICK, epochs=1, membership_term=term))
    fit_mlp(small, make_split(small.problems, SplitSpec(seed=0)), MLPConfig(epochs=1, membership_term=term))
    assert seen and set(seen) == {term}
    assert MLPConfig().membership_term == FitConfig().membership_term
