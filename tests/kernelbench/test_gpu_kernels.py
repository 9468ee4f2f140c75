"""The CUDA kernel list and the CuPy wrapper of the array-level algorithms, checked without a GPU.

The wrapper is run with numpy substituted for CuPy: the copy-in, dtype and
copy-out glue is the CUDA-specific part; the algorithms themselves are tested
against the float64 reference in the array-level tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernelbench.gpu import arraylevel as gpu_arraylevel
from kernelbench.gpu import kernels as gpu_kernels
from kernelbench.kernels.arraylevel import ALGORITHMS
from kernelbench.kernels.cuda import cuda_kernels
from kernelbench.problem import problem_2d
from kernelbench.reference import make_inputs, max_rel_error, reference_output, tolerance


def test_cuda_offers_at_least_eight_distinct_candidates():
    kernels = cuda_kernels()
    names = [k.name for k in kernels]
    assert len(names) == len(set(names)) >= 8
    assert all(k.backend == "cuda" and k.description for k in kernels)
    families = {k.algorithm for k in kernels}
    assert {"direct", "implicit_gemm", "im2col_gemm", "gemm_1x1", "fft", "winograd"} <= families
    assert sum(k.name.startswith("cuda_direct") for k in kernels) >= 2
    assert sum(k.name.startswith("cuda_igemm") for k in kernels) >= 3
    assert any(k.default for k in kernels)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_every_kernel_applies_to_a_plain_3x3_problem(dtype):
    problem = problem_2d(batch=2, in_channels=8, out_channels=8, in_h=10, in_w=10, filter_h=3, filter_w=3, pad_h=1,
                         pad_w=1, dtype=dtype, groups=1)
    applicable = {k.name for k in cuda_kernels() if k.applies(problem) is None}
    assert {k.name for k in gpu_kernels.raw_kernels()} <= applicable
    assert {"cupy_im2col_gemm", "cupy_fft", "cupy_winograd_f2x2_3x3"} <= applicable


def test_kernels_report_why_they_cannot_run_without_a_device(monkeypatch):
    monkeypatch.setattr(gpu_kernels, "cuda_unavailable", lambda: "CUDARuntimeError: cudaErrorNoDevice")
    kernel = gpu_kernels.raw_kernels()[0]
    assert kernel.unavailable() == "CUDARuntimeError: cudaErrorNoDevice"


@pytest.fixture
def numpy_device(monkeypatch):
    """Run the CuPy wrapper on numpy: ``to_host`` copies, as ``cupy.asnumpy`` does."""
    syncs: list[int] = []
    monkeypatch.setattr(gpu_arraylevel, "device_array_module", lambda: (np, np.array, lambda: syncs.append(1)))
    return syncs


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
def test_array_kernel_wrapper_matches_the_reference(numpy_device, algorithm, dtype):
    shapes = [
        problem_2d(batch=2, in_channels=4, out_channels=6, in_h=9, in_w=7, filter_h=3, filter_w=3, pad_h=1, pad_w=1),
        problem_2d(batch=1, in_channels=6, out_channels=4, in_h=8, in_w=11, filter_h=1, filter_w=1, groups=2),
        problem_2d(batch=1, in_channels=6, out_channels=6, in_h=9, in_w=9, filter_h=3, filter_w=3, pad_h=2,
                   pad_w=2, dilation_h=2, dilation_w=2, groups=6),
        problem_2d(batch=3, in_channels=5, out_channels=7, in_h=13, in_w=11, filter_h=3, filter_w=1, pad_h=1,
                   stride_h=2, stride_w=2),
    ]
    kernel = next(k for k in gpu_arraylevel.array_kernels() if k.name == "cupy_" + algorithm.name)
    ran = 0
    for base in shapes:
        problem = dataclasses.replace(base, dtype=dtype)
        if kernel.applies(problem) is not None:
            continue
        inputs = make_inputs(problem, seed=1)
        prepared = kernel.prepare(problem, inputs)
        out = prepared.result(prepared.run())
        prepared.sync()
        assert out.dtype == (np.float16 if dtype == "fp16" else np.float32)
        assert max_rel_error(out, reference_output(problem, inputs)) <= tolerance(problem)
        ran += 1
    assert ran >= 1 and len(numpy_device) == ran


def test_one_dtype_mapping_for_every_gpu_kernel_family():
    from kernelbench.gpu import cudnn, dtypes, instances, launch

    assert dtypes.GPU_DTYPES == ("fp32", "fp16") and set(instances.CUDA_TYPES) == set(dtypes.GPU_DTYPES)
    assert dtypes.numpy_dtype("fp16") is np.float16 and dtypes.numpy_dtype("fp32") is np.float32
    with pytest.raises(ValueError, match="bf16"):
        dtypes.numpy_dtype("bf16")  # was silently float32
    bf16 = problem_2d(batch=1, in_channels=4, out_channels=4, in_h=8, in_w=8, filter_h=3, filter_w=3, dtype="bf16")
    assert cudnn.applies(bf16) == launch.applies_for(bf16, instances.DIRECT_CONFIGS[0], launch.DeviceLimits()) \
        == "fp32 and fp16 only"
