import numpy as np
import pytest

from kernelbench.errors import InputError
from reformer.labels import targets

NAN = np.nan


def test_onehot_puts_all_mass_on_the_fastest():
    q = targets(np.array([[2.0, 1.0, 4.0], [NAN, 3.0, 0.5]]), kind="onehot")
    np.testing.assert_array_equal(q, [[0, 1, 0], [0, 0, 1]])


def test_onehot_splits_exact_ties():
    q = targets(np.array([[1.0, 2.0, 1.0]]), kind="onehot")
    np.testing.assert_allclose(q, [[0.5, 0, 0.5]])


@pytest.mark.parametrize("kind", ["onehot", "softmax", "ratio"])
def test_single_applicable_kernel_gets_everything(kind):
    q = targets(np.array([[NAN, 7.0, NAN]]), kind=kind)
    np.testing.assert_array_equal(q, [[0, 1, 0]])


def test_softmax_hand_computed():
    # t = 1, 2 ms, tau = 1 ms: q = e^-1 / (e^-1 + e^-2), e^-2 / (...)
    q = targets(np.array([[1.0, 2.0, NAN]]), kind="softmax", softmax_tau_ms=1.0)
    e1, e2 = np.exp(-1.0), np.exp(-2.0)
    np.testing.assert_allclose(q, [[e1 / (e1 + e2), e2 / (e1 + e2), 0]], rtol=1e-6)


def test_softmax_depends_on_tau_and_ties_share():
    q = targets(np.array([[1.0, 1.0, 3.0]]), kind="softmax", softmax_tau_ms=2.0)
    w = np.array([1.0, 1.0, np.exp(-1.0)])
    np.testing.assert_allclose(q[0], w / w.sum(), rtol=1e-6)


def test_ratio_preserves_time_ratios():
    q = targets(np.array([[1.0, 2.0, 4.0]]), kind="ratio")
    np.testing.assert_allclose(q, [[4 / 7, 2 / 7, 1 / 7]], rtol=1e-6)
    assert q[0, 0] / q[0, 1] == pytest.approx(2.0)


def test_ratio_power_sharpens():
    q = targets(np.array([[1.0, 2.0]]), kind="ratio", ratio_power=3.0)
    np.testing.assert_allclose(q, [[8 / 9, 1 / 9]], rtol=1e-6)


def test_sharp_settings_do_not_underflow():
    q = targets(np.array([[100.0, 5000.0]]), kind="softmax", softmax_tau_ms=0.01)
    np.testing.assert_array_equal(q, [[1, 0]])


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="label formulation"):
        targets(np.array([[1.0]]), kind="rank")
    with pytest.raises(InputError, match="softmax-tau"):
        targets(np.array([[1.0]]), kind="softmax", softmax_tau_ms=0)
    with pytest.raises(ValueError, match="at least one applicable"):
        targets(np.array([[NAN, NAN]]), kind="ratio")


def test_onehot_spreads_over_near_ties_when_time_rse_is_recorded():
    # 1.00 vs 1.04 ms: within the 8 % floor, a near-tie; 1.20 ms is not (rse 1 %: tolerance stays 8 %).
    t = np.array([[1.00, 1.04, 1.20]])
    rse = np.full_like(t, 0.01)
    np.testing.assert_allclose(targets(t, kind="onehot", time_rse=rse), [[0.5, 0.5, 0.0]])
    # Without rse (imported data) only exact ties share.
    np.testing.assert_allclose(targets(t, kind="onehot"), [[1.0, 0.0, 0.0]])


def test_onehot_near_tie_widens_with_a_large_rse():
    # 1.00 vs 1.20 ms, both rse 10 %: tolerance 2 * hypot(0.1, 0.1) = 28 %, so the two are a tie.
    t = np.array([[1.00, 1.20, np.nan]])
    rse = np.array([[0.10, 0.10, np.nan]])
    np.testing.assert_allclose(targets(t, kind="onehot", time_rse=rse), [[0.5, 0.5, 0.0]])


def test_ratio_labels_take_near_ties_as_ties_when_time_rse_is_recorded():
    # 1.00 vs 1.04 ms at rse 1 % is a near-tie (8 % floor): equal mass; 1.20 ms keeps its ratio to the best.
    t = np.array([[1.00, 1.04, 1.20]])
    rse = np.full_like(t, 0.01)
    q = targets(t, kind="ratio", ratio_power=8.0, time_rse=rse)[0]
    assert q[0] == pytest.approx(q[1]) and q[2] / q[0] == pytest.approx(1.2 ** -8, rel=1e-5)
    # Without rse (imported data) the 4 % difference is taught: 1.04^8 = 1.37 times less mass.
    plain = targets(t, kind="ratio", ratio_power=8.0)[0]
    assert plain[0] / plain[1] == pytest.approx(1.04 ** 8, rel=1e-5)
