import pytest

from kernelbench.errors import InputError
from kernelbench.problem import problem_2d
from reformer import Selector

FIELDS = {"batch": 8, "in_channels": 64, "out_channels": 64, "in_h": 56, "in_w": 56, "filter_h": 3, "filter_w": 3, "pad_h": 1, "pad_w": 1}


def test_select_ranks_all_kernels_by_probability(model_dir):
    selector = Selector.load(model_dir)
    ranked = selector.select({**FIELDS, "dtype": "fp32"}, applicable=selector.kernels, top=10)
    assert sorted(k for k, _ in ranked) == sorted(selector.kernels)
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_mapping_with_defaults_and_problem_record_agree(model_dir):
    selector = Selector.load(model_dir)
    assert selector.select(FIELDS, top=3) == selector.select(problem_2d(**FIELDS), top=3)


def test_applicable_restricts_and_ignores_unknown_names(model_dir):
    selector = Selector.load(model_dir)
    ranked = selector.select(FIELDS, applicable=["gemm", "direct", "no_such_kernel"], top=5)
    assert {k for k, _ in ranked} == {"gemm", "direct"}
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="none of the applicable kernels"):
        selector.select(FIELDS, applicable=["no_such_kernel"])


def test_select_many_matches_select(model_dir):
    selector = Selector.load(model_dir)
    problems = [FIELDS, {**FIELDS, "filter_h": 1, "filter_w": 1, "pad_h": 0, "pad_w": 0}]
    batched = selector.select_many(problems, top=2)
    one_by_one = [selector.select(p, top=2) for p in problems]
    assert [[k for k, _ in r] for r in batched] == [[k for k, _ in r] for r in one_by_one]
    # batched matmuls may round differently in the last bits
    assert [[p for _, p in r] for r in batched] == [pytest.approx([p for _, p in r], rel=1e-5) for r in one_by_one]


def test_bad_problems_are_input_errors(model_dir):
    selector = Selector.load(model_dir)
    with pytest.raises(InputError, match="unknown problem field"):
        selector.select({**FIELDS, "colour": "red"})
    with pytest.raises(InputError, match="missing problem field"):
        selector.select({"batch": 1})


def test_without_applicable_only_the_contexts_candidates_compete(model_dir):
    selector = Selector.load(model_dir)
    # In the synthetic data fft applies to forward problems only, gemm_1x1 to 1x1 filters only: the rule's
    # finer contexts keep it away from this 3x3 problem.
    backward = selector.select({**FIELDS, "direction": "bwd_data"}, top=10)
    assert {k for k, _ in backward} == {"direct", "gemm", "winograd"}
    assert sum(p for _, p in backward) == pytest.approx(1.0, abs=1e-5)
    assert "fft" in {k for k, _ in selector.select({**FIELDS, "direction": "fwd"}, top=10)}
    batched = selector.select_many([{**FIELDS, "direction": "bwd_data"}, problem_2d(**FIELDS)], top=10)
    assert [k for k, _ in batched[0]] == [k for k, _ in backward]
    assert "fft" in {k for k, _ in batched[1]}
    # an unseen dtype falls back to the kernels of the problem's direction, never another direction's
    mask, seen = selector.candidate_mask({**FIELDS, "dtype": "int8", "direction": "bwd_data"})
    assert not seen and "fft" not in {k for k, hit in zip(selector.kernels, mask) if hit}
    assert {k for k, _ in selector.select({**FIELDS, "dtype": "int8"}, top=10)} == set(selector.kernels)


def test_a_direction_never_seen_in_training_is_refused(model_dir):
    selector = Selector.load(model_dir)
    with pytest.raises(InputError, match="never saw a 'bwd_weights' problem"):
        selector.select({**FIELDS, "direction": "bwd_weights"})
