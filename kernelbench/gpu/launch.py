"""Parameters, launch geometry and applicability of the hand-written CUDA kernels (pure functions).

The same functions feed the runtime launch and the host harness, which
simulates exactly the grid computed here; nothing in this module needs a GPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from kernelbench.gpu.dtypes import GPU_DTYPES, UNSUPPORTED_DTYPE
from kernelbench.gpu.instances import DirectConfig, IgemmConfig, KernelConfig
from kernelbench.problem import ConvProblem

#: Order of the int32 parameter array; must match KB_PARAM_FIELDS in kb_common.cuh
#: (the host harness test checks it).
PARAM_FIELDS = (
    "n", "c", "h", "w", "k", "r", "s", "pad_h", "pad_w", "stride_h", "stride_w",
    "dil_h", "dil_w", "groups", "out_h", "out_w",
)  # fmt: skip
_PROBLEM_ATTRS = {
    "n": "batch", "c": "in_channels", "h": "in_h", "w": "in_w", "k": "out_channels", "r": "filter_h",
    "s": "filter_w", "pad_h": "pad_h", "pad_w": "pad_w", "stride_h": "stride_h", "stride_w": "stride_w",
    "dil_h": "dilation_h", "dil_w": "dilation_w", "groups": "groups", "out_h": "out_h", "out_w": "out_w",
}  # fmt: skip
#: The kernels index with 32-bit ints.
_MAX_ELEMENTS = 2**31 - 1


def pack_params(problem: ConvProblem) -> np.ndarray:
    """The kernels' ``packed`` argument: int32 values in :data:`PARAM_FIELDS` order."""
    return np.array([getattr(problem, _PROBLEM_ATTRS[f]) for f in PARAM_FIELDS], dtype=np.int32)


@dataclasses.dataclass(frozen=True)
class DeviceLimits:
    """The device limits applicability depends on (defaults: every GPU since sm_30)."""

    shared_bytes_per_block: int = 48 * 1024
    max_threads_per_block: int = 1024
    max_grid: tuple[int, int, int] = (2**31 - 1, 65535, 65535)

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> DeviceLimits:
        """From ``cupy.cuda.runtime.getDeviceProperties`` (keys ``sharedMemPerBlock``, ``maxThreadsPerBlock``,
        ``maxGridSize``)."""
        return cls(
            shared_bytes_per_block=int(props["sharedMemPerBlock"]),
            max_threads_per_block=int(props["maxThreadsPerBlock"]),
            max_grid=tuple(int(v) for v in props["maxGridSize"]),  # type: ignore[arg-type]
        )


@dataclasses.dataclass(frozen=True)
class Launch:
    """Grid and block dimensions (x, y, z) of one kernel launch."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def direct_launch(problem: ConvProblem, config: DirectConfig) -> Launch:
    """Geometry of ``conv_direct``: one thread per output pixel and ``k_per_thread`` channels."""
    tiles = _ceil_div(problem.out_h, config.block_h) * _ceil_div(problem.out_w, config.block_w)
    return Launch(
        grid=(tiles, _ceil_div(problem.out_channels, config.k_per_thread), problem.batch),
        block=(config.block_w, config.block_h, 1),
    )


def igemm_launch(problem: ConvProblem, config: IgemmConfig) -> Launch:
    """Geometry of ``conv_igemm``: one block per BM x BN tile of each group's GEMM."""
    gemm_m = problem.batch * problem.out_h * problem.out_w
    gemm_n = problem.out_channels // problem.groups
    return Launch(
        grid=(_ceil_div(gemm_m, config.bm), _ceil_div(gemm_n, config.bn), problem.groups),
        block=(config.threads, 1, 1),
    )


def launch_for(problem: ConvProblem, config: KernelConfig) -> Launch:
    if isinstance(config, DirectConfig):
        return direct_launch(problem, config)
    return igemm_launch(problem, config)


def _common_reason(problem: ConvProblem) -> str | None:
    if problem.direction != "fwd":
        return "forward only"
    if problem.spatial_dims != 2 or problem.layout != "NCHW":
        return "2D NCHW only"
    if problem.dtype not in GPU_DTYPES:
        return UNSUPPORTED_DTYPE
    elements = {
        "input": problem.batch * problem.in_channels * problem.in_h * problem.in_w,
        "filter": problem.out_channels * problem.in_channels // problem.groups * problem.filter_h * problem.filter_w,
        "output": problem.batch * problem.out_channels * problem.out_h * problem.out_w,
    }
    for name, count in elements.items():
        if count > _MAX_ELEMENTS:
            return f"{name} has more than 2^31-1 elements (32-bit indexing)"
    return None


def _launch_reason(launch: Launch, threads: int, shared_bytes: int, limits: DeviceLimits) -> str | None:
    if threads > limits.max_threads_per_block:
        return f"{threads} threads per block > device limit {limits.max_threads_per_block}"
    if shared_bytes > limits.shared_bytes_per_block:
        return f"{shared_bytes} B shared memory per block > device limit {limits.shared_bytes_per_block} B"
    for axis, size, limit in zip("xyz", launch.grid, limits.max_grid, strict=True):
        if size > limit:
            return f"grid.{axis} = {size} > device limit {limit}"
    return None


def direct_applies(problem: ConvProblem, config: DirectConfig, limits: DeviceLimits = DeviceLimits()) -> str | None:
    """``None`` if ``conv_direct`` with ``config`` computes ``problem`` on a device with ``limits``, else why not."""
    reason = _common_reason(problem)
    if reason is not None:
        return reason
    if (problem.out_channels // problem.groups) % config.k_per_thread:
        return f"output channels per group not a multiple of {config.k_per_thread}"
    return _launch_reason(direct_launch(problem, config), config.threads, config.shared_bytes, limits)


def igemm_applies(problem: ConvProblem, config: IgemmConfig, limits: DeviceLimits = DeviceLimits()) -> str | None:
    """``None`` if ``conv_igemm`` with ``config`` computes ``problem`` on a device with ``limits``, else why not."""
    reason = _common_reason(problem)
    if reason is not None:
        return reason
    return _launch_reason(igemm_launch(problem, config), config.threads, config.shared_bytes, limits)


def applies_for(problem: ConvProblem, config: KernelConfig, limits: DeviceLimits = DeviceLimits()) -> str | None:
    if isinstance(config, DirectConfig):
        return direct_applies(problem, config, limits)
    return igemm_applies(problem, config, limits)
