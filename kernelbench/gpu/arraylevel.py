"""The array-level algorithms of :mod:`kernelbench.kernels.arraylevel`, run with ``xp=cupy``.

The algorithm code is the CPU backend's, line for line; only the array module
differs, so cuBLAS (``cupy.matmul``) and cuFFT (``cupy.fft``) do the work.  The
numpy tests of that module therefore validate the code path run here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kernelbench.gpu.detect import cuda_unavailable
from kernelbench.gpu.dtypes import numpy_dtype
from kernelbench.kernels.arraylevel import ALGORITHMS, ArrayAlgorithm
from kernelbench.kernels.base import Kernel, Prepared, ProblemInputs
from kernelbench.problem import ConvProblem

#: Array-level algorithms in the CUDA backend's ``default`` set.
DEFAULT_ALGORITHMS = ("im2col_gemm", "gemm_1x1", "fft", "winograd_f2x2_3x3")
PREFIX = "cupy_"


def device_array_module() -> tuple[Any, Callable[[Any], np.ndarray], Callable[[], None]]:
    """``(xp, to_host, synchronize)`` of the device: CuPy, ``cupy.asnumpy``, device synchronize.

    Tests substitute numpy here to run the wrapper without a GPU.
    """
    import cupy

    return cupy, cupy.asnumpy, cupy.cuda.Device().synchronize


def _prepare(algorithm: ArrayAlgorithm, problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    """Copy the inputs to the device (untimed) and prepare the algorithm there."""
    xp, to_host, synchronize = device_array_module()
    dtype = numpy_dtype(problem.dtype)
    x = xp.asarray(inputs.x, dtype=dtype)
    w = xp.asarray(inputs.w, dtype=dtype)
    call = algorithm.prepare(xp, problem, x, w)
    return Prepared(run=call.run, result=to_host, workspace_bytes=call.workspace_bytes, sync=synchronize)


def array_kernels() -> tuple[Kernel, ...]:
    """One CUDA kernel ``cupy_<name>`` per array-level algorithm."""
    return tuple(
        Kernel(
            name=PREFIX + algorithm.name,
            algorithm=algorithm.family,
            backend="cuda",
            applies=algorithm.applies,
            prepare=lambda problem, inputs, a=algorithm: _prepare(a, problem, inputs),
            unavailable=cuda_unavailable,
            default=algorithm.name in DEFAULT_ALGORITHMS,
            description=f"{algorithm.description} (CuPy: cuBLAS / cuFFT)",
        )
        for algorithm in ALGORITHMS
    )
