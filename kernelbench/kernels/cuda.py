"""Kernels of backend ``cuda`` (the registry imports this lazily; see :mod:`kernelbench.gpu.kernels`)."""

from __future__ import annotations

from kernelbench.kernels.base import Kernel


def cuda_kernels() -> tuple[Kernel, ...]:
    """Hand-written CUDA C kernels, array-level algorithms on CuPy, and cuDNN engines when installed."""
    from kernelbench.gpu.kernels import cuda_kernels as build

    return build()
