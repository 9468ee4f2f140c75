import dataclasses
import itertools

import numpy as np
import pytest

from kernelbench.kernels.base import ProblemInputs
from kernelbench.problem import ConvProblem, problem_2d
from kernelbench.reference import (
    INT8_RANGE,
    TOLERANCES,
    make_inputs,
    max_rel_error,
    reference_output,
    tolerance,
)


def problem_3d(**fields) -> ConvProblem:
    base = ConvProblem.from_mapping({
        "spatial_dims": 3, "batch": 2, "in_channels": 4, "out_channels": 6, "groups": 2, "in_d": 5, "in_h": 6,
        "in_w": 4, "filter_d": 3, "filter_h": 2, "filter_w": 3, "pad_d": 1, "pad_w": 1, "stride_d": 2,
        "dilation_h": 2})
    return dataclasses.replace(base, **fields)


PROBLEMS_2D = [
    problem_2d(batch=2, in_channels=3, out_channels=4, in_h=7, in_w=6, filter_h=3, filter_w=3, pad_h=1, pad_w=1),
    problem_2d(batch=1, in_channels=4, out_channels=6, in_h=9, in_w=8, filter_h=3, filter_w=2, pad_h=1, pad_w=0,
               stride_h=2, stride_w=3, dilation_h=2, groups=2),
    problem_2d(batch=2, in_channels=4, out_channels=4, in_h=6, in_w=7, filter_h=3, filter_w=3, pad_h=2, pad_w=1,
               groups=4),
]


def naive_conv2d(x: np.ndarray, w: np.ndarray, p: ConvProblem) -> np.ndarray:
    """Textbook loops over every output element: the definition the reference must agree with."""
    y = np.zeros((p.batch, p.out_channels, p.out_h, p.out_w))
    cg, kg = p.in_channels // p.groups, p.out_channels // p.groups
    for n, k, i, j in itertools.product(range(p.batch), range(p.out_channels), range(p.out_h), range(p.out_w)):
        g = k // kg
        for c, r, s in itertools.product(range(cg), range(p.filter_h), range(p.filter_w)):
            ih = i * p.stride_h - p.pad_h + r * p.dilation_h
            iw = j * p.stride_w - p.pad_w + s * p.dilation_w
            if 0 <= ih < p.in_h and 0 <= iw < p.in_w:
                y[n, k, i, j] += x[n, g * cg + c, ih, iw] * w[k, c, r, s]
    return y


@pytest.mark.parametrize("problem", PROBLEMS_2D, ids=lambda p: p.describe())
def test_forward_reference_matches_the_definition(problem):
    inputs = make_inputs(problem, seed=3)
    ref = reference_output(problem, inputs)
    assert ref.dtype == np.float64
    np.testing.assert_allclose(ref, naive_conv2d(inputs.x.astype(np.float64), inputs.w.astype(np.float64), problem),
                               rtol=1e-12, atol=1e-12)


def test_forward_3d_reference_matches_a_sum_of_2d_convolutions():
    # A 3D convolution is, per output depth, a sum over filter depth taps of 2D convolutions.
    p = problem_3d()
    inputs = make_inputs(p, seed=1)
    ref = reference_output(p, inputs)
    assert ref.shape == (p.batch, p.out_channels, p.out_d, p.out_h, p.out_w)
    as_2d = problem_2d(batch=p.batch, in_channels=p.in_channels, out_channels=p.out_channels, in_h=p.in_h,
                       in_w=p.in_w, filter_h=p.filter_h, filter_w=p.filter_w, pad_h=p.pad_h, pad_w=p.pad_w,
                       dilation_h=p.dilation_h, groups=p.groups)
    for od in range(p.out_d):
        expected = np.zeros((p.batch, p.out_channels, p.out_h, p.out_w))
        for fd in range(p.filter_d):
            d = od * p.stride_d - p.pad_d + fd * p.dilation_d
            if 0 <= d < p.in_d:
                expected += naive_conv2d(inputs.x[:, :, d].astype(np.float64),
                                         inputs.w[:, :, fd].astype(np.float64), as_2d)
        np.testing.assert_allclose(ref[:, :, od], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("problem", PROBLEMS_2D + [problem_3d()], ids=lambda p: p.describe())
def test_backward_references_are_adjoints_of_the_forward(problem):
    """<conv(x, w), dy> = <x, dx(dy, w)> = <w, dw(x, dy)>: both gradients of the same bilinear form."""
    fwd = make_inputs(problem, seed=5)
    dy = make_inputs(dataclasses.replace(problem, direction="bwd_data"), seed=5).dy.astype(np.float64)
    inputs = ProblemInputs(x=fwd.x, w=fwd.w, dy=dy)
    y = reference_output(problem, inputs)
    dx = reference_output(dataclasses.replace(problem, direction="bwd_data"), inputs)
    dw = reference_output(dataclasses.replace(problem, direction="bwd_weights"), inputs)
    assert dx.shape == fwd.x.shape and dw.shape == fwd.w.shape
    form = float((y * dy).sum())
    assert form == pytest.approx(float((fwd.x * dx).sum()), rel=1e-10)
    assert form == pytest.approx(float((fwd.w * dw).sum()), rel=1e-10)


def test_backward_reference_without_dy_is_rejected():
    p = dataclasses.replace(PROBLEMS_2D[0], direction="bwd_data")
    inputs = make_inputs(PROBLEMS_2D[0], seed=0)
    with pytest.raises(ValueError, match="needs dy"):
        reference_output(p, inputs)


def test_reference_rejects_inputs_of_another_problem():
    with pytest.raises(ValueError, match="expected"):
        reference_output(PROBLEMS_2D[0], make_inputs(PROBLEMS_2D[1], seed=0))


def test_inputs_are_deterministic_and_differ_between_seeds_and_problems():
    a, b = make_inputs(PROBLEMS_2D[0], seed=7), make_inputs(PROBLEMS_2D[0], seed=7)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.w, b.w)
    assert not np.array_equal(a.x, make_inputs(PROBLEMS_2D[0], seed=8).x)
    other = problem_2d(batch=2, in_channels=3, out_channels=4, in_h=7, in_w=6, filter_h=3, filter_w=3, pad_h=2,
                       pad_w=2)  # same tensor shapes, different problem
    assert not np.array_equal(a.x, make_inputs(other, seed=7).x)


@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weights"])
def test_inputs_have_the_logical_shapes(direction):
    p = dataclasses.replace(PROBLEMS_2D[1], direction=direction)
    inputs = make_inputs(p, seed=0)
    assert inputs.x.shape == (1, 4, 9, 8) and inputs.w.shape == (6, 2, 3, 2)
    if direction == "fwd":
        assert inputs.dy is None
    else:
        assert inputs.dy.shape == (1, 6, p.out_h, p.out_w)


def test_input_values_fit_each_dtype():
    def make(dtype):
        return make_inputs(dataclasses.replace(PROBLEMS_2D[0], dtype=dtype), seed=0).x

    fp32, fp16, bf16, int8 = make("fp32"), make("fp16"), make("bf16"), make("int8")
    assert fp32.dtype == np.float32 and fp16.dtype == np.float16
    assert -1 <= fp32.min() and fp32.max() < 1
    assert bf16.dtype == np.float32 and (bf16.view(np.uint32) & 0xFFFF).max() == 0  # low mantissa bits are zero
    assert len(np.unique(bf16)) > 20
    assert int8.dtype == np.float32 and np.array_equal(int8, np.round(int8))
    assert int8.min() >= -INT8_RANGE and int8.max() <= INT8_RANGE and len(np.unique(int8)) > 5


def test_max_rel_error_normalises_by_the_largest_reference_value():
    ref = np.array([[4.0, -2.0], [0.0, 1.0]])
    out = np.array([[4.0, -2.0], [0.5, 1.0]], dtype=np.float32)
    assert max_rel_error(out, ref) == pytest.approx(0.5 / 4.0)
    assert max_rel_error(ref, ref) == 0.0
    assert max_rel_error(np.array([0.25]), np.array([0.0])) == pytest.approx(0.25)  # all-zero reference


def test_max_rel_error_flags_non_finite_outputs_and_shape_mismatch():
    ref = np.ones((2, 2))
    assert max_rel_error(np.array([[1.0, np.nan], [1.0, 1.0]]), ref) == float("inf")
    assert max_rel_error(np.array([[1.0, np.inf], [1.0, 1.0]]), ref) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        max_rel_error(np.ones((2, 3)), ref)


def test_tolerance_grows_as_precision_shrinks():
    def tol(dtype):
        return tolerance(dataclasses.replace(PROBLEMS_2D[0], dtype=dtype))

    assert tol("fp32") == TOLERANCES["fp32"] == 1e-3
    assert tol("int8") < tol("fp32") < tol("fp16") < tol("bf16")
    # fp16 must accept the unavoidable output rounding (2**-11 relative).
    assert tol("fp16") > 2.0 ** -11
