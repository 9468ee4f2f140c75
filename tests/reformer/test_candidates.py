"""The candidate rule: contexts chosen on validation evidence, back-off, never another direction."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from kernelbench.errors import InputError
from reformer.candidates import CONTEXT_LEVELS, CandidateRule, fit_rule, rule_from_info
from reformer.model import soft_cross_entropy

KERNELS = ("a1x1", "b", "c_bwd")


def columns(rows):
    names = rows[0].keys()
    return {n: np.array([r[n] for r in rows]) for n in names}


def problem(direction="fwd", filt=3, dtype="fp32"):
    return {"direction": direction, "dtype": dtype, "filter_h": filt, "filter_w": filt, "groups": 1, "in_channels": 8}


def test_rule_picks_the_finest_level_that_keeps_the_fastest_kernel():
    train = [problem(filt=1), problem(filt=3), problem("bwd_data")]
    measured = np.array([[True, True, False], [False, True, False], [False, False, True]])
    validation = [problem(filt=1), problem(filt=3), problem("bwd_data", filt=1)]
    times = np.array([[1.0, 2.0, np.nan], [np.nan, 1.0, np.nan], [np.nan, np.nan, 1.0]])
    rule = fit_rule(kernels=KERNELS, train_columns=columns(train), train_measured=measured,
                    validation_columns=columns(validation), validation_time_ms=times)
    assert rule.kind == "context" and rule.level == len(CONTEXT_LEVELS) - 1  # every level covers: the finest
    assert [e["coverage"] for e in rule.evidence] == [1.0] * len(CONTEXT_LEVELS)
    mask, seen = rule.masks(columns(validation), KERNELS)
    # 1x1 problems keep a1x1; the 3x3 one does not; the backward 1x1 context was never seen: backed off.
    assert mask.tolist() == [[True, True, False], [False, True, False], [False, False, True]]
    assert seen.tolist() == [True, True, False]


def test_an_unseen_dtype_stays_in_its_direction_and_an_unseen_direction_is_refused():
    train = [problem(), problem("bwd_data")]
    rule = fit_rule(kernels=KERNELS, train_columns=columns(train),
                    train_measured=np.array([[True, True, False], [False, False, True]]))
    mask, seen = rule.masks(columns([problem(dtype="bf16")]), KERNELS)
    assert mask.tolist() == [[True, True, False]] and not seen[0]
    with pytest.raises(InputError, match="never saw a 'bwd_weights' problem"):
        rule.masks(columns([problem("bwd_weights")]), KERNELS)


def test_rule_round_trips_through_json_and_a_missing_rule_says_how_to_refit():
    rule = fit_rule(kernels=KERNELS, train_columns=columns([problem()]), train_measured=np.array([[True, True, False]]))
    again = CandidateRule.from_json(json.loads(json.dumps(rule.to_json())))
    assert again.masks(columns([problem()]), KERNELS)[0].tolist() == rule.masks(columns([problem()]), KERNELS)[0].tolist()
    with pytest.raises(InputError, match="no candidate rule .* refit it: reformer fit d.parquet -o m"):
        rule_from_info({"dataset": {"metadata": {"path": "d.parquet"}}}, model_dir="m")


def test_kernelbench_sweeps_use_each_kernels_own_applies():
    rule = fit_rule(kernels=("numpy_gemm_1x1", "torch_im2col"), train_columns=columns([problem()]),
                    train_measured=np.array([[False, True]]),
                    metadata={"source": "kernelbench-sweep", "devices": {"cpu:x": [{"backend": "cpu"}]}})
    assert rule.kind == "applies"
    assert CandidateRule.from_json(rule.to_json()).kind == "applies"
    full = {"batch": 1, "in_channels": 4, "out_channels": 4, "in_h": 8, "in_w": 8, "filter_h": 3, "filter_w": 3}
    mask, _ = rule.masks({k: [v] for k, v in {**full, "filter_h": 1, "filter_w": 1}.items()}, rule_kernels := ("numpy_gemm_1x1", "torch_im2col"))
    assert mask.tolist() == [[True, True]]
    mask, seen = rule.masks({k: [v] for k, v in full.items()}, rule_kernels)
    assert mask.tolist() == [[False, True]] and seen.tolist() == [True]
    # The rule keeps the training contexts only to flag new ones: bf16 was never trained on, applies still decide.
    mask, seen = rule.masks({k: [v] for k, v in {**full, "dtype": "bf16"}.items()}, rule_kernels)
    assert mask.tolist() == [[False, True]] and seen.tolist() == [False]
    assert CandidateRule.from_json(rule.to_json()).applies_seen({"dtype": ["bf16", "fp32"]}).tolist() == [False, True]
    # A rule saved before it kept contexts calls every context seen.
    older = CandidateRule.from_json({"kind": "applies", "backend": "cpu"})
    assert older.masks({k: [v] for k, v in {**full, "dtype": "bf16"}.items()}, rule_kernels)[1].tolist() == [True]


def test_membership_term_interpolates_between_the_closed_and_the_candidate_softmax():
    logits = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    target = torch.tensor([[0.7, 0.3, 0.0, 0.0]])
    measured = torch.tensor([[True, True, False, False]])
    candidates = torch.tensor([[True, True, True, False]])
    closed = soft_cross_entropy(logits, target, measured)
    open_ = -(target * torch.log_softmax(logits.masked_fill(~candidates, float("-inf")), 1).masked_fill(~candidates, 0)).sum()
    assert soft_cross_entropy(logits, target, measured, candidates=candidates, membership_weight=0.0) == pytest.approx(closed.item())
    assert soft_cross_entropy(logits, target, measured, candidates=candidates, membership_weight=1.0).item() == pytest.approx(open_.item())
    half = soft_cross_entropy(logits, target, measured, candidates=candidates, membership_weight=0.5).item()
    assert closed.item() < half < open_.item()


def test_pick_term_weighs_the_best_measured_logit_against_the_unmeasured_without_a_head_start():
    # Four measured kernels and one unmeasured candidate, all at the same logit: the set term is log(5/4) (the
    # measured set holds 4/5 of the mass), the pick term log 2 (the best measured kernel against the unmeasured).
    logits = torch.zeros(1, 6, requires_grad=True)
    target = torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0, 0.0]])
    measured = torch.tensor([[True, True, True, True, False, False]])
    candidates = torch.tensor([[True, True, True, True, True, False]])
    closed = soft_cross_entropy(logits, target, measured).item()
    as_set = soft_cross_entropy(logits, target, measured, candidates=candidates, membership_term="set")
    as_pick = soft_cross_entropy(logits, target, measured, candidates=candidates, membership_term="pick")
    assert as_set.item() - closed == pytest.approx(np.log(5 / 4))
    assert as_pick.item() - closed == pytest.approx(np.log(2))
    as_pick.backward()
    assert logits.grad[0, 4] == pytest.approx(0.5) and logits.grad[0, 5] == 0  # only candidates are pushed down
    # Every candidate measured: the term is 0 and its gradient finite.
    logits.grad = None
    everything = soft_cross_entropy(logits, target, measured, candidates=measured, membership_term="pick")
    everything.backward()
    assert everything.item() == pytest.approx(closed) and torch.isfinite(logits.grad).all()


def test_contexts_are_per_device_when_training_spans_devices_and_an_unknown_device_backs_off():
    train = [{**problem(filt=1), "device": "A"}, {**problem(filt=1), "device": "B"}]
    measured = np.array([[True, False, False], [False, True, False]])  # a1x1 recorded on A, b on B
    rule = fit_rule(kernels=KERNELS, train_columns=columns(train), train_measured=measured)
    assert rule.devices == ("A", "B") and rule.fields()[0] == "device"
    queries = [{**problem(filt=1), "device": d} for d in ("A", "B", "C")]
    mask, seen = rule.masks(columns(queries), KERNELS)
    assert mask.tolist() == [[True, False, False], [False, True, False], [True, True, False]]
    assert seen.tolist() == [True, True, False]
    # Without a device the problem is of an unknown device as well.
    mask, seen = rule.masks(columns([problem(filt=1)]), KERNELS)
    assert mask.tolist() == [[True, True, False]] and not seen[0]
    again = CandidateRule.from_json(json.loads(json.dumps(rule.to_json())))
    assert again.masks(columns(queries), KERNELS)[0].tolist() == rule.masks(columns(queries), KERNELS)[0].tolist()
    assert rule.describe(queries[0]).startswith("device=A, direction=fwd")


def test_a_one_device_rule_keeps_device_free_contexts_and_flags_another_device():
    train = [{**problem(filt=1), "device": "A"}]
    rule = fit_rule(kernels=KERNELS, train_columns=columns(train), train_measured=np.array([[True, True, False]]))
    assert not rule.per_device and rule.to_json()["fields"] == list(CONTEXT_LEVELS[0])
    mask, seen = rule.masks(columns([{**problem(filt=1), "device": d} for d in ("A", "Z")]), KERNELS)
    assert mask.tolist() == [[True, True, False]] * 2 and seen.tolist() == [True, False]
    assert rule.masks(columns([problem(filt=1)]), KERNELS)[1].tolist() == [True]
    # A rule saved before rules knew devices still loads and answers as it did.
    old = {k: v for k, v in rule.to_json().items() if k not in ("devices", "kernels_by_device_level")}
    assert CandidateRule.from_json(old).masks(columns([problem(filt=1)]), KERNELS)[1].tolist() == [True]


def test_an_unseen_device_gets_the_nearest_training_device_that_recorded_its_context():
    near, far, target = "miopen:gfx908:120", "miopen:gfx803:64", "miopen:gfx90a:110"
    train = [{**problem(filt=1), "device": near}, {**problem(filt=1), "device": far},
             {**problem(filt=3), "device": far}]
    # 1x1: a1x1 recorded on the near device, b on the far one; 3x3: only the far device recorded it (b).
    measured = np.array([[True, False, False], [False, True, False], [False, True, False]])
    rule = fit_rule(kernels=KERNELS, train_columns=columns(train), train_measured=measured)
    rule = dataclasses.replace(rule, level=len(CONTEXT_LEVELS) - 1)  # contexts tell 1x1 from 3x3
    queries = [{**problem(filt=1), "device": target}, {**problem(filt=3), "device": target},
               {**problem(filt=1), "device": "no-descriptor"}]
    mask, seen = rule.masks(columns(queries), KERNELS)
    assert mask.tolist() == [[True, False, False],  # the nearest device's context
                             [False, True, False],  # the only device that recorded the context
                             [True, True, False]]  # no descriptor: the union over the training devices
    assert seen.tolist() == [False, False, False]
    # Descriptors given by the caller place a device the table lacks (here: described as the far device).
    from kernelbench.devices import descriptor

    mask, _ = rule.masks(columns(queries[2:]), KERNELS, descriptors={"no-descriptor": descriptor(far)})
    assert mask.tolist() == [[False, True, False]]
