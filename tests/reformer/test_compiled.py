import math

import numpy as np
import pytest
import torch

from reformer.compiled import ERF_CLAMP, erf_coefficients, masked_top1


def test_fitted_erf_is_as_accurate_as_float32():
    p, q = erf_coefficients()
    z = np.linspace(-6.0, 6.0, 100_001)
    clamped = np.clip(z, -ERF_CLAMP, ERF_CLAMP)
    s = clamped * clamped
    approx = clamped * np.polynomial.polynomial.polyval(s, p.astype(np.float64)) / np.polynomial.polynomial.polyval(s, q.astype(np.float64))
    exact = np.array([math.erf(v) for v in z])
    assert np.abs(approx - exact).max() < 3e-7
    assert q[0] == 1.0


@pytest.mark.parametrize("activation", ["gelu", "relu", "silu", "tanh"])
def test_compiled_activations_match_torch(activation):
    from reformer.compiled import ACTIVATION_CODES, _activate_rows

    zw = np.linspace(-8.0, 8.0, 4 * 64, dtype=np.float32).reshape(4, 64)
    bias = np.linspace(-0.5, 0.5, 64, dtype=np.float32)
    out = np.empty_like(zw)
    _activate_rows(zw, bias, ACTIVATION_CODES[activation], out)
    function = {"gelu": torch.nn.functional.gelu, "relu": torch.relu, "silu": torch.nn.functional.silu,
                "tanh": torch.tanh}[activation]
    expected = function(torch.from_numpy(zw.astype(np.float64) + bias)).numpy()
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=2e-6)


def test_masked_top1_picks_the_best_applicable_and_its_probability():
    logits = np.array([3.0, 1.0, 2.0, 2.0], dtype=np.float32)
    best, probability = masked_top1(logits, np.array([False, True, True, True]))
    assert best == 2  # ties go to the lowest index, as with np.argmax
    expected = math.exp(2.0) / (math.exp(1.0) + 2 * math.exp(2.0))
    assert probability == pytest.approx(expected, rel=1e-6)
    assert masked_top1(logits, np.ones(4, dtype=bool)) == (0, pytest.approx(math.exp(3) / sum(math.exp(v) for v in logits)))
    assert masked_top1(logits, np.zeros(4, dtype=bool)) == (-1, 0.0)
