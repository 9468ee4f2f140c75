"""Describe the host: CPU model, threads, library versions, memory-allocator settings.

This metadata travels with every result (run manifest, Parquet metadata) and
:func:`cpu_label` gives the dataset's ``device`` column, which export compares
before merging runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path
from typing import Any

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
#: glibc refuses larger mmap thresholds on 64-bit hosts (DEFAULT_MMAP_THRESHOLD_MAX).
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024

ALLOCATOR_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "THP_MEM_ALLOC_ENABLE", "LD_PRELOAD", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "OPENBLAS_CORETYPE")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else ``platform.processor()``."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown-cpu"


def keep_freed_memory() -> dict[str, Any]:
    """Make glibc keep freed memory mapped, so timed runs after warm-up do not page-fault.

    Without this, buffers above the (dynamic) mmap threshold are unmapped on free and
    every run pays fresh page faults (~2.5 µs per 4 KiB page measured on our VM), and a
    sweep's results depend on what ran before.  Sets ``M_MMAP_THRESHOLD`` to its maximum
    (32 MiB), ``M_TRIM_THRESHOLD`` and ``M_TOP_PAD`` high.  Returns what was applied, for
    the metadata; on non-glibc systems returns ``{"applied": False}``.  The environment
    variable ``KERNELBENCH_NO_MALLOPT=1`` skips it (used by ``benchmarks/bench_sweep.py`` to
    show what it fixes).
    """
    if os.environ.get("KERNELBENCH_NO_MALLOPT") == "1":
        return {"applied": False, "reason": "KERNELBENCH_NO_MALLOPT=1"}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return {"applied": False, "reason": "no glibc mallopt"}
    settings = {"M_MMAP_THRESHOLD": _MMAP_THRESHOLD_MAX, "M_TRIM_THRESHOLD": 1 << 30, "M_TOP_PAD": 256 << 20}
    codes = {"M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD, "M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD, "M_TOP_PAD": _M_TOP_PAD}
    applied = {key: bool(mallopt(codes[key], value)) for key, value in settings.items()}
    return {"applied": all(applied.values()), "mallopt": settings, "accepted": applied}


def physical_memory_bytes(*, cgroup_limit_path: str = "/sys/fs/cgroup/memory.max") -> int | None:
    """The machine's physical memory in bytes (``os.sysconf``), or the container's limit if smaller.

    The limit is cgroup v2's ``memory.max`` (``max`` means none).  Returns None where the
    system does not say.
    """
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        total = pages * page_size if pages > 0 and page_size > 0 else None
    except (ValueError, OSError, AttributeError):
        total = None
    limit = _read(cgroup_limit_path)
    if limit is not None and limit.isdigit() and int(limit) > 0:
        total = int(limit) if total is None else min(total, int(limit))
    return total


#: Default of the sweep's ``max_memory_gb``: this share of :func:`physical_memory_bytes`.
DEFAULT_MEMORY_SHARE = 0.5


def default_max_memory_gb() -> float:
    """:data:`DEFAULT_MEMORY_SHARE` of :func:`physical_memory_bytes`, in GB (1e9 bytes); inf where unknown."""
    total = physical_memory_bytes()
    return float("inf") if total is None else DEFAULT_MEMORY_SHARE * total / 1e9


def memory_settings() -> dict[str, Any]:
    """Allocator and huge-page settings that change CPU timings (recorded, not changed)."""
    return {
        "transparent_hugepage": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "transparent_hugepage_defrag": _read("/sys/kernel/mm/transparent_hugepage/defrag"),
        "env": {k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ},
        "libc": " ".join(platform.libc_ver()),
    }


def library_versions() -> dict[str, str]:
    import numpy
    import polars
    import pyarrow

    import kernelbench

    versions = {
        "kernelbench": kernelbench.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "polars": polars.__version__,
        "pyarrow": pyarrow.__version__,
    }
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return versions


def cpu_metadata(*, threads: int) -> dict[str, Any]:
    """The CPU device description for manifests and datasets."""
    import torch

    return {
        "backend": "cpu",
        "name": cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "torch_parallel_info": torch.__config__.parallel_info().splitlines()[:6],
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "nnpack": bool(torch.backends.nnpack.is_available()),
        "memory": memory_settings(),
        "versions": library_versions(),
    }


def cpu_label(metadata: dict[str, Any]) -> str:
    """The dataset's ``device`` value for a CPU: ``cpu:<model>:<threads>t``."""
    return f"cpu:{metadata['name']}:{metadata['threads']}t"
