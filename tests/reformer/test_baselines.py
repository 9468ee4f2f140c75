"""The learned baselines: flat features, MLP, LightGBM, static order; batched and single-problem paths agree."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from reformer.baselines import (
    BaselineUnavailable,
    FlatFeatures,
    LightGBMConfig,
    MLPConfig,
    StaticSelector,
    fit_lightgbm,
    fit_mlp,
    lightgbm_missing,
)
from reformer.data import NON_FIELD_COLUMNS
from reformer.metrics import argmax_applicable, first_applicable, oracle_picks, selection_metrics
from reformer.splits import SplitSpec, make_split


@pytest.fixture(scope="module")
def split(matrix):
    return make_split(matrix.problems, SplitSpec(seed=0))


@pytest.fixture(scope="module")
def mlp(matrix, split):
    return fit_mlp(matrix, split, MLPConfig(hidden=(64, 32), epochs=12, batch_size=64, lr=1e-2, seed=0))


@pytest.fixture(scope="module")
def lgbm(matrix, split):
    pytest.importorskip("lightgbm")
    return fit_lightgbm(matrix, split, LightGBMConfig(n_estimators=60, seed=0))


def _rows(matrix, rows):
    return [{k: v for k, v in r.items() if k not in NON_FIELD_COLUMNS} for r in matrix.subset(rows).problems.to_dicts()]


def _metrics(matrix, split, selector):
    test = matrix.subset(split.test)
    picks = argmax_applicable(selector.scores(test.columns(), test.applicable), test.applicable)
    static = first_applicable(StaticSelector.fit(matrix, split).order, test.applicable)
    return picks, selection_metrics(test.time_ms, picks, static)


def test_flat_features_one_problem_matches_batch(matrix, split):
    train = matrix.subset(split.train)
    features = FlatFeatures.fit(train.columns())
    test = matrix.subset(split.test)
    batch = features.encode(test.columns())
    one = np.stack([features.encode_one(row) for row in _rows(matrix, split.test)])
    assert batch.shape == (len(split.test), features.width)
    np.testing.assert_allclose(one, batch, rtol=1e-5, atol=1e-5)
    # Each categorical token is exactly one hot slot; numeric tokens are standardised on train.
    n_cat = sum(features.encoder.n_categories)
    assert np.all(batch[:, :n_cat].sum(axis=1) == len(features.encoder.categorical))
    train_numeric = features.encode(train.columns())[:, n_cat:]
    varying = np.asarray(features.encoder.std) > 1e-6  # a constant field's float round-off "std" is not a scale
    np.testing.assert_allclose(train_numeric.mean(axis=0)[varying], 0.0, atol=1e-4)


def test_flat_features_unseen_category_goes_to_slot_zero(matrix, split):
    features = FlatFeatures.fit(matrix.subset(split.train).columns())
    row = _rows(matrix, split.test[:1])[0]
    j = features.encoder.categorical.index("dtype")
    row["dtype"] = "int8"  # not in the synthetic training data
    x = features.encode_one(row)
    offset = sum(features.encoder.n_categories[:j])
    assert x[offset] == 1.0
    assert x[offset + 1 : offset + features.encoder.n_categories[j]].sum() == 0.0


@pytest.mark.parametrize("name", ["mlp", "lgbm"])
def test_learned_baseline_beats_static_and_single_path_agrees(request, matrix, split, name):
    fitted = request.getfixturevalue(name)
    picks, metrics = _metrics(matrix, split, fitted.selector)
    static_top1 = _metrics(matrix, split, StaticSelector.fit(matrix, split))[1].top1
    assert metrics.top1 > static_top1 + 0.1
    assert metrics.oracle_ratio > 0.8
    assert fitted.fit_seconds > 0
    test = matrix.subset(split.test)
    one = [fitted.selector.select_one(row, test.applicable[i]) for i, row in enumerate(_rows(matrix, split.test))]
    assert one == [matrix.kernels[j] for j in picks]


@pytest.mark.parametrize("name", ["mlp", "lgbm"])
def test_masking_restricts_the_pick(request, matrix, split, name):
    selector = request.getfixturevalue(name).selector
    row = _rows(matrix, split.test[:1])[0]
    test = matrix.subset(split.test[:1])
    free = selector.select_one(row)
    only = np.zeros(len(matrix.kernels), dtype=bool)
    # The kernel that wins least often in training: a never-winning class must still be pickable.
    least = int(np.argmin(np.bincount(oracle_picks(matrix.time_ms[split.train]), minlength=len(matrix.kernels))))
    only[least] = True
    assert selector.select_one(row, only) == matrix.kernels[least]
    scores = selector.scores(test.columns(), only[None, :])
    assert np.isinf(scores[0, ~only]).all() and np.isfinite(scores[0, least])
    assert free in matrix.kernels


def test_mlp_keeps_best_validation_epoch_and_records_curve(mlp):
    assert len(mlp.curve) == 12
    assert [r.epoch for r in mlp.curve] == list(range(1, 13))
    assert all(0 <= r.validation_top1 <= 1 for r in mlp.curve)


@pytest.mark.parametrize("epochs", [1, 2, 3, 4])  # one step per epoch: OneCycleLR once divided by zero at 4 steps
def test_mlp_trains_very_short_runs(matrix, split, epochs):
    """`reformer ablate --quick` on a small dataset (the README demo's) gives the MLP a handful of steps."""
    fitted = fit_mlp(matrix, split, MLPConfig(hidden=(16,), epochs=epochs, batch_size=len(split.train), seed=0))
    assert [r.epoch for r in fitted.curve] == list(range(1, epochs + 1))
    assert all(np.isfinite(r.train_loss) and r.lr > 0 for r in fitted.curve)


def test_mlp_is_deterministic(matrix, split):
    config = MLPConfig(hidden=(16,), epochs=2, batch_size=128, seed=3)
    a = fit_mlp(matrix, split, config).selector
    b = fit_mlp(matrix, split, config).selector
    test = matrix.subset(split.test)
    np.testing.assert_array_equal(a.scores(test.columns(), test.applicable), b.scores(test.columns(), test.applicable))


def test_static_selector_picks_first_applicable_in_win_order(matrix, split):
    static = StaticSelector.fit(matrix, split)
    row = _rows(matrix, split.test[:1])[0]
    mask = np.ones(len(matrix.kernels), dtype=bool)
    assert static.select_one(row, mask) == matrix.kernels[static.order[0]]
    mask[static.order[0]] = False
    assert static.select_one(row, mask) == matrix.kernels[static.order[1]]


def test_lightgbm_missing_gives_notice_and_raises(monkeypatch, matrix, split):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # makes `import lightgbm` raise ImportError
    notice = lightgbm_missing()
    assert notice is not None and "pip install" in notice
    with pytest.raises(BaselineUnavailable, match="lightgbm"):
        fit_lightgbm(matrix, split)


def test_mlp_membership_head_scores_with_reformers_rule(matrix, split):
    """The MLP gets the same membership head and score z + log σ(u) as Reformer, on both of its paths."""
    import torch

    config = MLPConfig(hidden=(16,), epochs=2, batch_size=128, seed=0, membership_head=True)
    selector = fit_mlp(matrix, split, config).selector
    test = matrix.subset(split.test)
    x = torch.from_numpy(selector.features.encode(test.columns()))
    with torch.inference_mode():
        z, u = selector.net.net(x).chunk(2, dim=1)  # the raw head: two logits per kernel
    expected = (z + torch.nn.functional.logsigmoid(u)).numpy()
    assert z.shape[1] == len(matrix.kernels)
    np.testing.assert_allclose(selector.scores(test.columns(), np.ones_like(test.applicable)), expected, rtol=1e-6)
    one = [selector.select_one(row, test.applicable[i]) for i, row in enumerate(_rows(matrix, split.test))]
    assert one == [matrix.kernels[j] for j in argmax_applicable(expected, test.applicable)]
    closed = fit_mlp(matrix, split, MLPConfig(hidden=(16,), epochs=2, batch_size=128, seed=0, candidates="measured",
                                              membership_head=True)).selector
    assert not closed.net.membership_head  # the closed training has no candidates to learn membership from
