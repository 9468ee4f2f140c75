"""Which kernels a backend offers, and choosing some of them by name (``--kernels``)."""

from __future__ import annotations

import importlib

from kernelbench.errors import InputError
from kernelbench.kernels.base import Kernel

BACKENDS = ("cpu", "cuda")


def all_kernels(backend: str) -> tuple[Kernel, ...]:
    """Every kernel of ``backend`` (``cpu`` or ``cuda``), in a fixed order.

    The CUDA kernels come from ``kernelbench.kernels.cuda.cuda_kernels()``, imported
    only when asked for, so the CPU path never imports cupy.

    Raises:
        InputError: the backend name is unknown, or the CUDA kernel module cannot be
            imported or has no ``cuda_kernels``.
    """
    if backend == "cpu":
        from kernelbench.kernels.cpu import cpu_kernels

        return cpu_kernels()
    if backend == "cuda":
        try:
            module = importlib.import_module("kernelbench.kernels.cuda")
        except ImportError as exc:
            raise InputError(f"CUDA kernels cannot be loaded ({exc}); install the extra with "
                             "pip install -e '.[cuda]' or use --device cpu") from exc
        factory = getattr(module, "cuda_kernels", None)
        if factory is None:
            raise InputError("CUDA kernels are not available in this installation "
                             "(kernelbench.kernels.cuda has no cuda_kernels); use --device cpu")
        return tuple(factory())
    raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")


def select_kernels(backend: str, spec: str) -> tuple[Kernel, ...]:
    """The kernels of ``backend`` named by ``spec``.

    ``spec`` is ``all``, ``default`` (the kernels marked ``default``), or a
    comma-separated list of kernel names (order kept, duplicates dropped).

    Raises:
        InputError: the backend is unknown, the spec is empty, or a name is unknown
            (the message lists the valid names).
    """
    kernels = all_kernels(backend)
    text = spec.strip()
    if text == "all":
        return kernels
    if text == "default":
        return tuple(k for k in kernels if k.default)
    by_name = {k.name: k for k in kernels}
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise InputError(f"--kernels is empty; use all, default or names from: {', '.join(by_name)}")
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InputError(f"unknown {backend} kernel(s): {', '.join(unknown)}; "
                         f"use all, default or names from: {', '.join(by_name)}")
    return tuple(by_name[n] for n in names)
