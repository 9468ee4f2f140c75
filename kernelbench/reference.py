"""Inputs and the float64 reference every kernel's output is checked against.

* :func:`make_inputs`: deterministic random tensors of a problem, in logical layout.
* :func:`reference_output`: the float64 result of the problem's direction, from
  torch's float64 convolution and its gradient functions (``torch.nn.grad``), which
  share no code with the kernels' fp32/fp16 paths.
* :func:`max_rel_error` and :func:`tolerance`: the acceptance test.
"""

from __future__ import annotations

import numpy as np

from kernelbench.kernels.base import ProblemInputs
from kernelbench.problem import ConvProblem

#: Accepted :func:`max_rel_error` per dtype.
#: fp32: GEMM-based kernels land near 1e-6, but FFT and Winograd F(4x4,3x3) transforms
#: amplify rounding error to ~1e-5..1e-4 on wide reductions; 1e-3 accepts them while a
#: wrong index or a missing tap gives errors of order 1.
#: fp16: rounding the output alone costs up to 2**-11 ~ 4.9e-4 relative, and libraries
#: that accumulate in fp16 (elementwise tap sums) add a few ulps more.
#: bf16: 8-bit mantissa, output rounding alone up to 2**-8 ~ 3.9e-3.
#: int8: inputs are small integers, so any float32 or int32 accumulation is exact.
TOLERANCES = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 5e-2, "int8": 1e-5}

#: int8 inputs are integers in [-INT8_RANGE, INT8_RANGE]: exact in fp32 sums up to 2**24 / 64 terms.
INT8_RANGE = 8


def _shapes(problem: ConvProblem) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Logical shapes of x (N, C, [D,] H, W), w (K, C/G, [FD,] FH, FW) and y (N, K, [OD,] OH, OW)."""
    axes = "hw" if problem.spatial_dims == 2 else "dhw"
    x = (problem.batch, problem.in_channels) + tuple(getattr(problem, f"in_{a}") for a in axes)
    w = (problem.out_channels, problem.in_channels // problem.groups) + tuple(
        getattr(problem, f"filter_{a}") for a in axes)
    y = (problem.batch, problem.out_channels) + tuple(getattr(problem, f"out_{a}") for a in axes)
    return x, w, y


def make_inputs(problem: ConvProblem, *, seed: int) -> ProblemInputs:
    """Random inputs of ``problem``, identical for the same (problem, seed).

    Values are uniform in [-1, 1) (fp32 as float32, fp16 as float16, bf16 as float32
    rounded to bfloat16), or integers in [-8, 8] stored as float32 for int8.  ``dy``
    is only made for backward directions.  The random stream is seeded from both
    ``seed`` and the problem id, so different problems get different data.
    """
    rng = np.random.default_rng([seed, int(problem.problem_id, 16)])
    x_shape, w_shape, y_shape = _shapes(problem)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if problem.dtype == "int8":
            return rng.integers(-INT8_RANGE, INT8_RANGE + 1, size=shape).astype(np.float32)
        values = rng.random(shape, dtype=np.float32) * 2 - 1
        if problem.dtype == "fp16":
            return values.astype(np.float16)
        if problem.dtype == "bf16":
            import torch

            return torch.from_numpy(values).to(torch.bfloat16).to(torch.float32).numpy()
        return values

    x, w = draw(x_shape), draw(w_shape)
    dy = draw(y_shape) if problem.direction != "fwd" else None
    return ProblemInputs(x=x, w=w, dy=dy)


def reference_output(problem: ConvProblem, inputs: ProblemInputs) -> np.ndarray:
    """The problem's result in float64 and logical layout.

    ``fwd``: y (N, K, [OD,] OH, OW); ``bwd_data``: dx, shaped like x; ``bwd_weights``:
    dw, shaped like w.

    Raises:
        ValueError: a backward direction without ``inputs.dy``, or inputs of the wrong shape.
    """
    import torch
    import torch.nn.functional as F

    x_shape, w_shape, y_shape = _shapes(problem)
    if inputs.x.shape != x_shape or inputs.w.shape != w_shape:
        raise ValueError(f"inputs have shapes x{inputs.x.shape} w{inputs.w.shape}, "
                         f"expected x{x_shape} w{w_shape} for {problem.describe()}")
    three_d = problem.spatial_dims == 3
    axes = "dhw" if three_d else "hw"
    options = {
        "stride": tuple(getattr(problem, f"stride_{a}") for a in axes),
        "padding": tuple(getattr(problem, f"pad_{a}") for a in axes),
        "dilation": tuple(getattr(problem, f"dilation_{a}") for a in axes),
        "groups": problem.groups,
    }
    x = torch.from_numpy(np.asarray(inputs.x, dtype=np.float64))
    w = torch.from_numpy(np.asarray(inputs.w, dtype=np.float64))
    with torch.no_grad():
        if problem.direction == "fwd":
            result = (F.conv3d if three_d else F.conv2d)(x, w, **options)
        else:
            if inputs.dy is None or inputs.dy.shape != y_shape:
                got = None if inputs.dy is None else inputs.dy.shape
                raise ValueError(f"{problem.direction} needs dy of shape {y_shape}, got {got}")
            dy = torch.from_numpy(np.asarray(inputs.dy, dtype=np.float64))
            if problem.direction == "bwd_data":
                grad_input = torch.nn.grad.conv3d_input if three_d else torch.nn.grad.conv2d_input
                result = grad_input(x_shape, w, dy, **options)
            else:
                grad_weight = torch.nn.grad.conv3d_weight if three_d else torch.nn.grad.conv2d_weight
                result = grad_weight(x, w_shape, dy, **options)
    return result.numpy()


def max_rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``max |out - ref| / max |ref|``, computed in float64.

    Normalising by the largest reference magnitude (not element by element) keeps
    outputs near zero, where relative errors are meaningless, from dominating.  An
    all-zero reference gives the absolute error.  Returns ``inf`` when ``out``
    holds NaN or infinity.

    Raises:
        ValueError: the shapes differ.
    """
    out64 = np.asarray(out, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    if out64.shape != ref64.shape:
        raise ValueError(f"output shape {out64.shape} differs from reference shape {ref64.shape}")
    if out64.size == 0:
        return 0.0
    if not np.isfinite(out64).all():
        return float("inf")
    scale = float(np.abs(ref64).max())
    return float(np.abs(out64 - ref64).max()) / (scale if scale > 0 else 1.0)


def tolerance(problem: ConvProblem) -> float:
    """Largest accepted :func:`max_rel_error` for the problem's dtype (see :data:`TOLERANCES`)."""
    return TOLERANCES[problem.dtype]
