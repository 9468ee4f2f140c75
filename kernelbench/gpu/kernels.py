"""The CUDA kernels: hand-written RawModule kernels, array-level algorithms on CuPy, optional cuDNN.

:func:`cuda_kernels` is what the registry offers for backend ``cuda``.  Building
the list needs neither CuPy nor a device; CuPy is imported when a kernel is
prepared, and device limits are read on the first applicability check.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kernelbench.gpu import instances
from kernelbench.gpu.detect import cuda_unavailable
from kernelbench.gpu.dtypes import numpy_dtype
from kernelbench.gpu.instances import DirectConfig, IgemmConfig, Instance, KernelConfig
from kernelbench.gpu.launch import DeviceLimits, applies_for, launch_for, pack_params
from kernelbench.kernels.base import Kernel, Prepared, ProblemInputs
from kernelbench.problem import ConvProblem

#: Hand-written kernels in the backend's ``default`` set.
_DEFAULT_RAW = {instances.DIRECT_CONFIGS[0].kernel_name, instances.IGEMM_CONFIGS[1].kernel_name}


@cache
def device_limits() -> DeviceLimits:
    """Limits of the current CUDA device (needs CuPy and a device)."""
    import cupy

    return DeviceLimits.from_properties(cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id))


def _limits_or_default() -> DeviceLimits:
    # Listing or filtering kernels on a machine without a device uses the limits every GPU since sm_30 meets.
    return device_limits() if cuda_unavailable() is None else DeviceLimits()


@cache
def raw_module(source: str) -> Any:
    """The RawModule of one ``.cu`` source with all its instantiations (compiled by NVRTC on first use)."""
    import cupy

    return cupy.RawModule(
        code=instances.source_text(source),
        options=instances.compile_options(),
        name_expressions=instances.name_expressions(source),
    )


def _prepare_raw(config: KernelConfig, problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    """Copy inputs to the device, allocate the output, look up the instantiation; ``run`` is one launch."""
    import cupy

    dtype = numpy_dtype(problem.dtype)
    x = cupy.asarray(inputs.x, dtype=dtype)
    w = cupy.asarray(inputs.w, dtype=dtype)
    y = cupy.empty((problem.batch, problem.out_channels, problem.out_h, problem.out_w), dtype=dtype)
    params = cupy.asarray(pack_params(problem))
    kernel = raw_module(config.source).get_function(Instance(config, problem.dtype).name_expression)
    launch = launch_for(problem, config)
    args = (x, w, y, params)

    def run() -> Any:
        kernel(launch.grid, launch.block, args)
        return y

    return Prepared(run=run, result=cupy.asnumpy, workspace_bytes=int(params.nbytes),
                    sync=cupy.cuda.Device().synchronize)


def _describe(config: KernelConfig) -> str:
    if isinstance(config, DirectConfig):
        return (f"direct NCHW convolution, {config.block_h}x{config.block_w} output pixels per block, "
                f"{config.k_per_thread} output channel(s) per thread (CUDA C, fp32/fp16)")
    assert isinstance(config, IgemmConfig)
    return (f"implicit-GEMM convolution, {config.bm}x{config.bn} tile, depth {config.bk}, "
            f"{config.tm}x{config.tn} per thread, shared-memory tiles (CUDA C, fp32/fp16)")


def raw_kernels() -> tuple[Kernel, ...]:
    """The hand-written kernels, one per configuration (each covers fp32 and fp16)."""
    configs: tuple[KernelConfig, ...] = instances.DIRECT_CONFIGS + instances.IGEMM_CONFIGS
    return tuple(
        Kernel(
            name=config.kernel_name,
            algorithm=config.algorithm,
            backend="cuda",
            applies=lambda problem, c=config: applies_for(problem, c, _limits_or_default()),
            prepare=lambda problem, inputs, c=config: _prepare_raw(c, problem, inputs),
            unavailable=cuda_unavailable,
            default=config.kernel_name in _DEFAULT_RAW,
            description=_describe(config),
        )
        for config in configs
    )


def cuda_kernels() -> tuple[Kernel, ...]:
    """Every kernel of backend ``cuda``: hand-written, array-level on CuPy, and cuDNN engines when installed."""
    from kernelbench.gpu.arraylevel import array_kernels
    from kernelbench.gpu.cudnn import cudnn_kernels

    return raw_kernels() + array_kernels() + cudnn_kernels()
