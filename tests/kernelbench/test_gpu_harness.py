"""The hand-written CUDA kernels' bodies, run on the CPU by the host harness, match the float64 reference.

The harness simulates every block and thread of the launch that
``kernelbench.gpu.launch`` computes, calling the same ``__host__ __device__``
functions the GPU runs; parameters are packed by the runtime's ``pack_params``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernelbench.gpu import instances
from kernelbench.gpu.launch import PARAM_FIELDS, applies_for, launch_for, pack_params
from kernelbench.kernels.base import ProblemInputs
from kernelbench.problem import problem_2d
from tests.kernelbench.cuda_harness.build import Harness

#: Small shapes covering odd sizes, padding, stride 2, dilation, groups, depthwise and non-square filters.
SHAPES = {
    "basic_3x3_pad1": problem_2d(batch=2, in_channels=3, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=3,
                                 pad_h=1, pad_w=1),
    "odd_stride2": problem_2d(batch=1, in_channels=5, out_channels=8, in_h=11, in_w=13, filter_h=3, filter_w=3,
                              pad_h=1, pad_w=1, stride_h=2, stride_w=2),
    "dilation2_asym_pad": problem_2d(batch=2, in_channels=4, out_channels=4, in_h=12, in_w=10, filter_h=3, filter_w=3,
                                     pad_h=2, pad_w=1, dilation_h=2, dilation_w=2),
    "groups2_1x3": problem_2d(batch=2, in_channels=6, out_channels=8, in_h=7, in_w=9, filter_h=1, filter_w=3,
                              pad_w=1, groups=2),
    "depthwise_5x5_s2": problem_2d(batch=1, in_channels=8, out_channels=8, in_h=13, in_w=11, filter_h=5, filter_w=5,
                                   pad_h=2, pad_w=2, stride_h=2, stride_w=2, groups=8),
    "pointwise_1x1": problem_2d(batch=3, in_channels=16, out_channels=12, in_h=5, in_w=6, filter_h=1, filter_w=1),
    "wide_k_odd": problem_2d(batch=1, in_channels=7, out_channels=70, in_h=6, in_w=35, filter_h=2, filter_w=3,
                             pad_h=0, pad_w=2, stride_w=3),
}


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Harness:
    return Harness.build(tmp_path_factory.mktemp("harness"))


def test_param_order_matches_the_header(harness):
    problem = SHAPES["wide_k_odd"]
    echoed = harness.params(problem)
    assert list(echoed) == list(PARAM_FIELDS)
    assert echoed == dict(zip(PARAM_FIELDS, pack_params(problem).tolist(), strict=True))
    assert (echoed["out_h"], echoed["out_w"], echoed["s"]) == (problem.out_h, problem.out_w, problem.filter_w)


def _half_test_values() -> np.ndarray:
    rng = np.random.default_rng(0)
    every_half = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    finite = every_half[np.isfinite(every_half)]
    # Midpoints between neighbouring halves are the round-to-nearest-even ties; their neighbours test rounding.
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    special = np.array([0.0, -0.0, 65504, 65519.99, 65520, 1e6, -1e6, np.inf, -np.inf, 2**-25, 2**-24, 2**-14,
                        3 * 2**-26, 1e-10], dtype=np.float32)
    return np.concatenate([every_half, mids, near, special, rng.standard_normal(10000).astype(np.float32) * 100])


def test_float_to_half_matches_numpy_bit_for_bit(harness):
    values = _half_test_values()
    values = values[~np.isnan(values)]
    got = harness.to_half_bits(values)
    with np.errstate(over="ignore"):  # values past 65504 overflow to inf, as in the kernel
        want = values.astype(np.float16).view(np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. {values[bad[:5]]} -> {got[bad[:5]]} != {want[bad[:5]]}"
    assert np.isnan(harness.to_half_bits(np.array([np.nan], dtype=np.float32)).view(np.float16)).all()


def test_half_to_float_matches_numpy_for_every_half(harness):
    bits = np.arange(2**16, dtype=np.uint16)
    got = harness.to_float(bits)
    want = bits.view(np.float16).astype(np.float32)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))


def _inputs(problem, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    x = rng.standard_normal((problem.batch, problem.in_channels, problem.in_h, problem.in_w)).astype(np_dtype)
    w = rng.standard_normal((problem.out_channels, problem.in_channels // problem.groups, problem.filter_h,
                             problem.filter_w)).astype(np_dtype)
    return x, w


@pytest.mark.parametrize("inst", instances.instances(), ids=lambda i: i.name_expression.replace(" ", ""))
def test_every_instantiation_matches_the_float64_reference(harness, inst):
    from kernelbench.reference import max_rel_error, reference_output, tolerance

    checked = []
    for name, base in SHAPES.items():
        problem = dataclasses.replace(base, dtype=inst.dtype)
        if applies_for(problem, inst.config) is not None:
            continue
        x, w = _inputs(problem, inst.dtype, seed=len(checked))
        y = harness.run(inst, problem, launch_for(problem, inst.config), x, w)
        reference = reference_output(problem, ProblemInputs(x=x, w=w))
        assert not np.isnan(y).any(), f"{name}: outputs left unwritten"
        err = max_rel_error(y, reference)
        # fp32 accumulates exactly as on the GPU: hold it to far less than the sweep's tolerance.
        limit = tolerance(problem) if inst.dtype == "fp16" else min(tolerance(problem), 1e-5)
        assert err <= limit, f"{name}: max relative error {err:.3g} > {limit:.1g}"
        checked.append(name)
    # Every instantiation must have been exercised on groups, stride 2 and dilation at least once.
    assert {"odd_stride2", "dilation2_asym_pad"} <= set(checked)
    assert {"groups2_1x3", "depthwise_5x5_s2"} & set(checked)


def test_a_wrong_launch_is_caught(harness):
    """The comparison can fail: a grid one block short leaves outputs unwritten (NaN)."""
    inst = instances.Instance(instances.IGEMM_CONFIGS[0], "fp32")
    problem = SHAPES["odd_stride2"]
    launch = launch_for(problem, inst.config)
    short = type(launch)(grid=(launch.grid[0] - 1, *launch.grid[1:]), block=launch.block)
    x, w = _inputs(problem, "fp32", seed=0)
    assert np.isnan(harness.run(inst, problem, short, x, w)).any()

