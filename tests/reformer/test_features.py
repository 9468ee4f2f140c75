import numpy as np
import pytest

from kernelbench.errors import InputError
from kernelbench.problem import problem_2d
from reformer.features import FeatureEncoder, derived_values


def columns(problems):
    rows = [p.as_row() for p in problems]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def test_derived_values_hand_computed():
    # N=2, C=4 -> K=8, 5x5 input, 3x3 filter, pad 1: 5x5 output.
    p = problem_2d(batch=2, in_channels=4, out_channels=8, in_h=5, in_w=5, filter_h=3, filter_w=3, pad_h=1, pad_w=1)
    d = {k: float(np.asarray(v).item()) for k, v in derived_values(p.as_row()).items()}
    assert (d["gemm_m"], d["gemm_n"], d["gemm_k"]) == (2 * 25, 8, 4 * 9)
    assert d["flops"] == p.flops == 2 * 2 * 8 * 25 * 4 * 9
    assert d["bytes"] == 4 * (2 * 4 * 25 + 8 * 4 * 9 + 2 * 8 * 25)
    assert d["intensity"] == pytest.approx(d["flops"] / d["bytes"])


def test_gemm_view_follows_direction_and_groups():
    base = {"batch": 2, "in_channels": 4, "out_channels": 8, "in_h": 5, "in_w": 5, "filter_h": 3, "filter_w": 3, "groups": 2, "dtype": "fp16"}
    bwd_data = derived_values(problem_2d(**base, direction="bwd_data").as_row())
    bwd_weights = derived_values(problem_2d(**base, direction="bwd_weights").as_row())
    # out 3x3; per group C'=2, K'=4, R=9.
    assert [int(np.asarray(bwd_data[k]).item()) for k in ("gemm_m", "gemm_n", "gemm_k")] == [2 * 25, 2, 4 * 9]
    assert [int(np.asarray(bwd_weights[k]).item()) for k in ("gemm_m", "gemm_n", "gemm_k")] == [4, 2 * 9, 2 * 9]
    assert float(np.asarray(bwd_data["bytes"]).item()) == 2 * (2 * 4 * 25 + 8 * 2 * 9 + 2 * 8 * 9)


def test_normalisation_comes_from_the_given_columns_and_constants_are_safe():
    train = [problem_2d(batch=b, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3) for b in (1, 3)]
    enc = FeatureEncoder.fit(columns(train), derived=(), drop_constant=False)
    j = enc.numeric.index("batch")
    assert enc.mean[j] == pytest.approx(1.5)  # log2(2), log2(4)
    assert enc.std[j] == pytest.approx(0.5)
    assert enc.std[enc.numeric.index("in_channels")] == 1.0  # constant: no division by zero
    encoded = enc.encode(columns(train))
    np.testing.assert_allclose(encoded.numeric[:, j], [-1, 1])
    assert np.isfinite(encoded.numeric).all()


def test_constant_tokens_are_dropped_by_default():
    train = [problem_2d(batch=b, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3) for b in (1, 3)]
    enc = FeatureEncoder.fit(columns(train))
    assert "batch" in enc.numeric and "in_channels" not in enc.numeric and "direction" not in enc.categorical
    # fwd: gemm_m and the work vary with batch, gemm_n (= K) and gemm_k (= C * R) do not.
    assert {"gemm_m", "flops", "bytes", "intensity"} <= set(enc.numeric)
    assert not {"gemm_n", "gemm_k"} & set(enc.numeric)


def test_a_token_constant_up_to_round_off_counts_as_constant():
    train = columns([problem_2d(batch=b, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3) for b in (1, 3, 5)])
    train["in_h"] = np.array([8.0, np.nextafter(8.0, 9.0), 8.0])  # one ulp apart, as a recomputed ratio can be
    assert "in_h" not in FeatureEncoder.fit(train, derived=()).numeric
    kept = FeatureEncoder.fit(train, derived=(), drop_constant=False)
    assert kept.std[kept.numeric.index("in_h")] == 1.0
    assert np.abs(kept.encode(train).numeric[:, kept.numeric.index("in_h")]).max() < 1e-9


def test_unknown_category_maps_to_zero_and_json_round_trip():
    train = [problem_2d(batch=1, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=1, filter_w=1, dtype=d) for d in ("fp32", "fp16")]
    enc = FeatureEncoder.fit(columns(train))
    other = problem_2d(batch=1, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=1, filter_w=1, dtype="bf16")
    ids = enc.encode(columns(train + [other])).categorical[:, enc.categorical.index("dtype")]
    np.testing.assert_array_equal(ids, [2, 1, 0])  # vocabulary sorted: fp16=1, fp32=2
    assert FeatureEncoder.from_json(enc.to_json()) == enc


def test_unknown_derived_token_is_an_input_error():
    with pytest.raises(InputError, match="unknown derived"):
        FeatureEncoder.fit({}, derived=("magic",))


def test_exact_values_get_ids_only_when_frequent():
    sizes = [1] * 12 + [3] * 12 + [5] * 2
    train = [problem_2d(batch=1, in_channels=8, out_channels=8, in_h=9, in_w=9, filter_h=f, filter_w=1) for f in sizes]
    enc = FeatureEncoder.fit(columns(train), derived=(), exact_values=8)
    j = enc.numeric.index("filter_h")
    assert enc.value_vocabularies[j] == (1.0, 3.0)  # 5 is seen twice only
    probe = [problem_2d(batch=1, in_channels=8, out_channels=8, in_h=9, in_w=9, filter_h=f, filter_w=1) for f in (3, 1, 5, 7)]
    np.testing.assert_array_equal(enc.encode(columns(probe)).value_ids[:, j], [2, 1, 0, 0])
    assert FeatureEncoder.from_json(enc.to_json()) == enc
    assert FeatureEncoder.fit(columns(train), derived=()).n_values == (1,) * len(enc.numeric)
