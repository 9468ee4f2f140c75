"""Backends: where kernels run and how one run is timed.

The sweep (``kernelbench.sweep``) is backend-neutral; a backend supplies the
kernel list, a per-run timer for a prepared kernel, and the device metadata
that travels with every result.  ``resolve_backend("auto")`` picks CUDA when a
usable device is found, else the CPU, and says which and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kernelbench.errors import InputError
from kernelbench.kernels.base import Kernel, Prepared


class Backend(Protocol):
    """What the sweep needs from a device."""

    #: ``cpu`` or ``cuda``; selects the kernel registry.
    name: str
    #: The dataset's ``device`` column, e.g. ``cpu:AMD EPYC 7B13:2t``.  Results with different labels are not merged.
    device_label: str

    def device_metadata(self) -> dict[str, Any]:
        """Device description for the manifest and the Parquet metadata."""
        ...

    def kernels(self, spec: str) -> tuple[Kernel, ...]:
        """Kernels named by ``spec`` (``all``, ``default`` or ``a,b,c``).  Raises InputError on unknown names."""
        ...

    def timer(self, prepared: Prepared) -> Callable[[], float]:
        """A ``time_one()`` for :func:`kernelbench.timing.measure`: one run of ``prepared``, in ms."""
        ...

    def throttled(self) -> bool | None:
        """Whether the device throttled since the last call (None: not known on this backend)."""
        ...

    def side_tables(self) -> dict[str, list[dict[str, Any]]]:
        """Extra per-problem tables the sweep writes beside its rows (``RUN_DIR/<name>.parquet``)."""
        ...


class CpuBackend:
    """Kernels on the host CPU, timed with ``time.perf_counter`` around each call."""

    name = "cpu"

    def __init__(self, *, threads: int) -> None:
        from kernelbench import device

        self.threads = threads
        # The label needs the CPU's name only; the full description (library versions: imports
        # polars and pyarrow) is built when asked for, so a measurement worker starts quickly.
        self.device_label = device.cpu_label({"name": device.cpu_model(), "threads": threads})

    def device_metadata(self) -> dict[str, Any]:
        from kernelbench import device

        return device.cpu_metadata(threads=self.threads)

    def kernels(self, spec: str) -> tuple[Kernel, ...]:
        from kernelbench.kernels.registry import select_kernels

        return select_kernels("cpu", spec)

    def timer(self, prepared: Prepared) -> Callable[[], float]:
        from kernelbench.timing import host_timer

        return host_timer(prepared.run, sync=prepared.sync)

    def throttled(self) -> bool | None:
        return None

    def side_tables(self) -> dict[str, list[dict[str, Any]]]:
        return {}


def resolve_backend(device: str, *, threads: int, say: Callable[[str], None] = print) -> Backend:
    """The backend for ``--device cpu|cuda|auto``.

    ``auto`` chooses CUDA when :func:`kernelbench.gpu.detect.detect_cuda` finds a usable
    device, else the CPU, and reports the choice and the reason through ``say``.

    Raises:
        InputError: ``cuda`` was asked for and no usable device exists, or the name is unknown.
    """
    if device not in ("cpu", "cuda", "auto"):
        raise InputError(f"unknown device {device!r}; use cpu, cuda or auto")
    if device == "cpu":
        return CpuBackend(threads=threads)
    from kernelbench.gpu.detect import detect_cuda

    found = detect_cuda()
    if found.usable:
        from kernelbench.gpu.backend import CudaBackend

        if device == "auto":
            say(f"device: cuda ({found.reason})")
        return CudaBackend(detection=found)
    if device == "cuda":
        raise InputError(f"--device cuda: no usable CUDA device ({found.reason}); use --device cpu")
    say(f"device: cpu (no usable CUDA device: {found.reason})")
    return CpuBackend(threads=threads)
