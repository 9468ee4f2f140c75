"""On a real GPU: every CUDA kernel matches the float64 reference, and event timing works.

Marked ``gpu`` and skipped without a usable device.  Each piece of logic here is
also tested without a GPU (host harness, numpy equivalence, fake events); these
tests close the gap between the simulation and the hardware.
"""

from __future__ import annotations

import dataclasses

import pytest

from kernelbench.gpu.detect import cuda_unavailable
from kernelbench.problem import problem_2d
from kernelbench.timing import StoppingRule, measure

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(cuda_unavailable() is not None, reason=f"no usable CUDA device: {cuda_unavailable()}"),
]

PROBLEMS = [
    problem_2d(batch=2, in_channels=16, out_channels=32, in_h=17, in_w=15, filter_h=3, filter_w=3, pad_h=1, pad_w=1),
    problem_2d(batch=1, in_channels=8, out_channels=8, in_h=21, in_w=19, filter_h=3, filter_w=3, pad_h=2, pad_w=2,
               stride_h=2, stride_w=2, dilation_h=2, dilation_w=2, groups=2),
    problem_2d(batch=4, in_channels=32, out_channels=64, in_h=8, in_w=8, filter_h=1, filter_w=1),
]


@pytest.fixture(scope="module")
def backend():
    from kernelbench.gpu.backend import CudaBackend
    from kernelbench.gpu.detect import detect_cuda

    return CudaBackend(detection=detect_cuda())


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_every_cuda_kernel_matches_the_reference_on_the_device(backend, dtype):
    from kernelbench.reference import make_inputs, max_rel_error, reference_output, tolerance

    checked = 0
    for base in PROBLEMS:
        problem = dataclasses.replace(base, dtype=dtype)
        inputs = make_inputs(problem, seed=0)
        reference = reference_output(problem, inputs)
        for kernel in backend.kernels("all"):
            if kernel.applies(problem) is not None:
                continue
            prepared = kernel.prepare(problem, inputs)
            out = prepared.run()
            prepared.sync()
            err = max_rel_error(prepared.result(out), reference)
            assert err <= tolerance(problem), f"{kernel.name} on {problem.describe()}: {err:.3g}"
            checked += 1
    assert checked >= 8


def test_event_timer_measures_a_kernel_on_the_device(backend):
    from kernelbench.reference import make_inputs

    problem = PROBLEMS[0]
    kernel = next(k for k in backend.kernels("all") if k.name.startswith("cuda_igemm"))
    prepared = kernel.prepare(problem, make_inputs(problem, seed=0))
    prepared.run()
    result = measure(backend.timer(prepared), rule=StoppingRule(warmup=2, min_samples=5, budget_s=0.5))
    assert all(0 < t < 1000 for t in result.samples_ms)
    assert backend.throttled() in (True, False, None)
    meta = backend.device_metadata()
    assert meta["sm_count"] > 0 and meta["l2_flush_bytes"] >= 2 * meta["l2_cache_bytes"]
