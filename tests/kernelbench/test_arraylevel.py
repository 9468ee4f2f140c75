import dataclasses

import numpy as np
import pytest

from kernelbench.kernels import arraylevel
from kernelbench.kernels.arraylevel import ALGORITHMS, WINOGRAD_F2X2_3X3, WINOGRAD_F4X4_3X3
from kernelbench.problem import ConvProblem, problem_2d
from kernelbench.reference import make_inputs, max_rel_error, reference_output, tolerance

# Small shapes covering odd sizes, padding (also wider than the filter), stride 2, dilation,
# groups, depthwise with and without a channel multiplier, non-square and even filters.
CASES = {
    "odd_padded_3x3": problem_2d(batch=2, in_channels=3, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=3,
                           pad_h=1, pad_w=1),
    "stride2_asym_pad": problem_2d(batch=1, in_channels=4, out_channels=6, in_h=11, in_w=8, filter_h=3, filter_w=3,
                             pad_h=1, pad_w=0, stride_h=2, stride_w=2),
    "dilated_grouped": problem_2d(batch=2, in_channels=6, out_channels=4, in_h=10, in_w=9, filter_h=3, filter_w=3,
                            pad_h=2, pad_w=2, dilation_h=2, dilation_w=2, groups=2),
    "pointwise": problem_2d(batch=2, in_channels=8, out_channels=6, in_h=7, in_w=5, filter_h=1, filter_w=1),
    "pointwise_stride2_grouped": problem_2d(batch=2, in_channels=8, out_channels=6, in_h=7, in_w=5, filter_h=1,
                                      filter_w=1, stride_h=2, stride_w=2, groups=2),
    "depthwise_3x3": problem_2d(batch=2, in_channels=5, out_channels=5, in_h=9, in_w=9, filter_h=3, filter_w=3,
                          pad_h=1, pad_w=1, groups=5),
    "depthwise_mult2_5x3_stride": problem_2d(batch=2, in_channels=4, out_channels=8, in_h=9, in_w=10, filter_h=5,
                                       filter_w=3, pad_h=2, pad_w=1, stride_h=2, groups=4),
    "depthwise_dilated_stride2": problem_2d(batch=1, in_channels=4, out_channels=4, in_h=12, in_w=11, filter_h=3,
                                      filter_w=3, pad_h=2, pad_w=2, stride_h=2, stride_w=2, dilation_h=2,
                                      dilation_w=2, groups=4),
    "grouped_3x3": problem_2d(batch=3, in_channels=6, out_channels=9, in_h=13, in_w=11, filter_h=3, filter_w=3,
                        pad_h=1, pad_w=1, groups=3),
    "pad_wider_than_filter": problem_2d(batch=1, in_channels=3, out_channels=2, in_h=5, in_w=5, filter_h=3, filter_w=3,
                                  pad_h=3, pad_w=3),
    "even_filter_mixed": problem_2d(batch=2, in_channels=3, out_channels=5, in_h=8, in_w=9, filter_h=2, filter_w=4,
                              pad_h=1, pad_w=2, stride_w=2, dilation_h=2),
    "ragged_winograd_tiles": problem_2d(batch=1, in_channels=2, out_channels=3, in_h=7, in_w=6, filter_h=3, filter_w=3),
}


def case(name: str, dtype: str = "fp32") -> ConvProblem:
    return dataclasses.replace(CASES[name], dtype=dtype)


PAIRS = [(a, name) for a in ALGORITHMS for name in CASES if a.applies(case(name)) is None]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize(("algorithm", "name"), PAIRS, ids=[f"{a.name}-{n}" for a, n in PAIRS])
def test_algorithm_matches_the_reference(algorithm, name, dtype):
    problem = case(name, dtype)
    inputs = make_inputs(problem, seed=11)
    reference = reference_output(problem, inputs)
    call = algorithm.prepare(np, problem, inputs.x, inputs.w)
    out = call.run()
    assert out.shape == reference.shape and out.dtype == inputs.x.dtype and out.flags.c_contiguous
    assert max_rel_error(out, reference) <= tolerance(problem)
    # A second run reuses every buffer (padding borders must still be zero) and gives the same result.
    np.testing.assert_array_equal(call.run(), out.copy())


def test_every_algorithm_is_exercised_on_several_shapes_including_hard_ones():
    covered = {a.name: [n for b, n in PAIRS if b is a] for a in ALGORITHMS}
    assert all(len(names) >= 2 for names in covered.values()), covered
    for general in ("im2col_gemm", "shifted_gemm", "kn2row"):
        assert len(covered[general]) == len(CASES)  # stride, dilation, groups, odd sizes: all of them
    assert {"dilated_grouped", "grouped_3x3"} <= set(covered["fft"])
    assert "ragged_winograd_tiles" in covered["winograd_f4x4_3x3"]
    assert "pointwise_stride2_grouped" in covered["gemm_1x1"]


REJECTIONS = [
    ("winograd_f2x2_3x3", case("stride2_asym_pad"), "stride 1"),
    ("winograd_f4x4_3x3", case("dilated_grouped"), "dilation 1"),
    ("winograd_f2x2_3x3", dataclasses.replace(CASES["even_filter_mixed"], stride_w=1), "3x3"),
    ("fft", case("stride2_asym_pad"), "stride 1"),
    ("gemm_1x1", case("odd_padded_3x3"), "1x1"),
    ("gemm_1x1", dataclasses.replace(CASES["pointwise"], pad_h=1), "padding"),
    ("depthwise_direct", case("grouped_3x3"), "depthwise"),
    ("im2col_gemm", dataclasses.replace(CASES["odd_padded_3x3"], layout="NHWC"), "NCHW"),
    ("shifted_gemm", dataclasses.replace(CASES["odd_padded_3x3"], direction="bwd_data"), "forward"),
    ("kn2row", case("odd_padded_3x3", "bf16"), "bf16"),
]


@pytest.mark.parametrize(("name", "problem", "reason"), REJECTIONS, ids=[f"{n}-{r}" for n, _, r in REJECTIONS])
def test_applicability_rejects_what_an_algorithm_cannot_do(name, problem, reason):
    algorithm = arraylevel.algorithm(name)
    assert reason in algorithm.applies(problem)
    inputs = make_inputs(problem, seed=0)
    with pytest.raises(ValueError, match="does not apply"):
        algorithm.prepare(np, problem, inputs.x, inputs.w)


def test_rejects_3d_problems():
    p = ConvProblem.from_mapping({"spatial_dims": 3, "batch": 1, "in_channels": 2, "out_channels": 2, "in_d": 4,
                                  "in_h": 4, "in_w": 4, "filter_d": 3, "filter_h": 3, "filter_w": 3})
    assert all("2D" in a.applies(p) for a in ALGORITHMS)


def test_unknown_algorithm_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="im2col_gemm"):
        arraylevel.algorithm("nope")


@pytest.mark.parametrize("transform", [WINOGRAD_F2X2_3X3, WINOGRAD_F4X4_3X3], ids=["F2", "F4"])
def test_winograd_matrices_compute_a_1d_correlation(transform):
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(transform.alpha), rng.standard_normal(transform.r)
    y = transform.at @ ((transform.g @ g) * (transform.bt @ d))
    expected = [d[i:i + transform.r] @ g for i in range(transform.m)]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_depthwise_batch_blocking_changes_nothing_but_the_schedule():
    problem = case("depthwise_mult2_5x3_stride")
    inputs = make_inputs(problem, seed=2)
    whole = arraylevel.prepare_depthwise(np, problem, inputs.x, inputs.w).run().copy()
    per_image = arraylevel.prepare_depthwise(np, problem, inputs.x, inputs.w, block_bytes=1).run()
    np.testing.assert_array_equal(whole, per_image)
    with pytest.raises(TypeError):
        arraylevel.prepare_im2col_gemm(np, problem, inputs.x, inputs.w, block_bytes=1)


def test_workspace_counts_the_buffers_held():
    problem = case("odd_padded_3x3")
    inputs = make_inputs(problem, seed=0)
    im2col = arraylevel.prepare_im2col_gemm(np, problem, inputs.x, inputs.w)
    columns = problem.batch * problem.in_channels * 9 * problem.out_h * problem.out_w * 4
    assert im2col.workspace_bytes >= columns
    # 1x1 at stride 1 works on the input in place: only the reshaped filter is held.
    pointwise = case("pointwise")
    pw_inputs = make_inputs(pointwise, seed=0)
    assert arraylevel.prepare_gemm_1x1(np, pointwise, pw_inputs.x, pw_inputs.w).workspace_bytes == pw_inputs.w.nbytes


#: Top-level ``xp`` attributes the algorithms may use: each exists in CuPy with numpy's semantics
#: (``lib`` and ``fft`` are used only for ``lib.stride_tricks.as_strided`` and ``fft.rfft2/irfft2``).
CUPY_COMPATIBLE = {"add", "asarray", "ascontiguousarray", "conj", "empty", "fft", "lib", "matmul", "multiply",
                   "zeros"}


class RecordingNamespace:
    """numpy, recording which top-level names the algorithms look up."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(np, name)


def test_algorithms_use_only_namespace_functions_cupy_also_has():
    xp = RecordingNamespace()
    for algorithm, name in PAIRS:
        problem = case(name, "fp16")
        inputs = make_inputs(problem, seed=0)
        assert max_rel_error(algorithm.prepare(xp, problem, inputs.x, inputs.w).run(),
                             reference_output(problem, inputs)) <= tolerance(problem)
    assert xp.used and xp.used <= CUPY_COMPATIBLE, xp.used - CUPY_COMPATIBLE
