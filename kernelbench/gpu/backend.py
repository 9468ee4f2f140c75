"""The CUDA backend: kernels on one GPU, timed with CUDA events after an L2 flush.

Implements :class:`kernelbench.backends.Backend`.  Construct it only after
:func:`kernelbench.gpu.detect.detect_cuda` reported a usable device
(:func:`kernelbench.backends.resolve_backend` does).  The device description
is built by pure functions (:func:`device_metadata`, :func:`device_label`)
from CuPy's property and attribute dicts, so it is tested with fake ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kernelbench.gpu.detect import Detection
from kernelbench.gpu.events import EventApi, event_timer
from kernelbench.gpu.l2 import L2Flusher, flush_bytes_from_properties
from kernelbench.gpu.nvml import ClockWindow, NvmlMonitor
from kernelbench.kernels.base import Kernel, Prepared


def cuda_version_text(version: int) -> str:
    """CUDA's integer version (1000 * major + 10 * minor) as ``major.minor``: 12040 -> ``12.4``."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def _text(value: object) -> str:
    return value.decode(errors="replace").rstrip("\x00") if isinstance(value, bytes) else str(value)


def device_metadata(
    props: Mapping[str, Any],
    *,
    device_index: int,
    driver_version: int,
    runtime_version: int,
    cupy_version: str,
    flush_bytes: int,
    attributes: Mapping[str, Any],
    clocks: Mapping[str, Any] | None = None,
    libraries: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The device description for the manifest and the Parquet metadata.

    ``props`` is ``cupy.cuda.runtime.getDeviceProperties(device_index)``; its ``name`` is bytes.
    Properties that CUDA 13 dropped from ``cudaDeviceProp`` (``clockRate``, ``memoryClockRate``)
    are recorded when present and left out otherwise.

    ``attributes`` is ``cupy.cuda.Device(device_index).attributes``.  ``descriptor`` is the device's
    descriptor (:func:`kernelbench.gpu.descriptor.recorded_descriptor`: the package table's entry, else
    one built from the attributes) as :meth:`~kernelbench.devices.DeviceDescriptor.as_dict` gives it, or
    ``None`` with the reason in ``descriptor_error``; exported datasets carry it under ``devices``, where
    reformer finds it (:func:`reformer.device_features.dataset_descriptors`).
    """
    from kernelbench.gpu.descriptor import recorded_descriptor
    from kernelbench.device import library_versions

    meta: dict[str, Any] = {
        "backend": "cuda",
        "device_index": device_index,
        "name": _text(props["name"]),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "sm_count": int(props["multiProcessorCount"]),
        "memory_bytes": int(props["totalGlobalMem"]),
        "l2_cache_bytes": int(props.get("l2CacheSize", 0)),
        "shared_memory_per_block_bytes": int(props.get("sharedMemPerBlock", 0)),
        "shared_memory_per_block_optin_bytes": int(props.get("sharedMemPerBlockOptin", 0)),
        "driver_version": cuda_version_text(driver_version),
        "runtime_version": cuda_version_text(runtime_version),
        "cupy_version": cupy_version,
        "l2_flush_bytes": flush_bytes,
        "timing": "cuda events on a dedicated stream; L2 flushed before every sample, outside the timed interval",
        "versions": {**library_versions(), "cupy": cupy_version, **(libraries or {})},
    }
    for key, name in (("clockRate", "sm_clock_max_khz"), ("memoryClockRate", "memory_clock_khz")):
        if key in props:
            meta[name] = int(props[key])
    if clocks:
        meta["clocks_at_start"] = dict(clocks)
    found, why = recorded_descriptor(device_label(meta), props, attributes)
    meta["descriptor"] = None if found is None else found.as_dict()
    if why is not None:
        meta["descriptor_error"] = why
    return meta


def device_label(meta: Mapping[str, Any]) -> str:
    """The dataset's ``device`` value: ``cuda:<GPU name>:sm<major><minor>``, e.g. ``cuda:NVIDIA A100-SXM4-40GB:sm80``."""
    return f"cuda:{meta['name']}:sm{meta['compute_capability'].replace('.', '')}"


class CudaBackend:
    """Kernels on one CUDA device (the one ``detection`` found usable).

    ``cupy`` and ``nvml`` can be injected (tests pass fakes); by default the real
    modules are imported.  ``events`` defaults to real CUDA events on a new stream.
    """

    name = "cuda"

    def __init__(
        self,
        *,
        detection: Detection,
        cupy: Any = None,
        nvml: Any = None,
        events: EventApi | None = None,
    ) -> None:
        if not detection.usable:
            raise ValueError(f"CudaBackend needs a usable device: {detection.reason}")
        if cupy is None:
            import cupy
        self._cp = cupy
        index = detection.device_index
        self._device = cupy.cuda.Device(index)
        self._device.use()
        runtime = cupy.cuda.runtime
        props = runtime.getDeviceProperties(index)
        self._monitor = NvmlMonitor(pci_bus_id=runtime.deviceGetPCIBusId(index), nvml=nvml)
        start = self._monitor.sample()
        self._monitor.reset_window()
        self._flusher = L2Flusher(flush_bytes_from_properties(props), xp=cupy)
        if events is None:
            from kernelbench.gpu.events import cupy_event_api

            events = cupy_event_api()
        self._events = events
        clocks = None
        if start is not None:
            clocks = {"sm_clock_mhz": start.sm_clock_mhz, "temperature_c": start.temperature_c}
        self._meta = device_metadata(
            props,
            device_index=index,
            driver_version=runtime.driverGetVersion(),
            runtime_version=runtime.runtimeGetVersion(),
            cupy_version=str(cupy.__version__),
            flush_bytes=self._flusher.nbytes,
            attributes=self._device.attributes,
            clocks=clocks,
            libraries=_optional_library_versions(),
        )
        self._meta["nvml"] = "available" if self._monitor.available else self._monitor.reason
        self.device_label = device_label(self._meta)
        #: The clock window of the last :meth:`throttled` call (SM clock range, max temperature).
        self.last_clock_window: ClockWindow | None = None

    def device_metadata(self) -> dict[str, Any]:
        return dict(self._meta)

    def kernels(self, spec: str) -> tuple[Kernel, ...]:
        from kernelbench.kernels.registry import select_kernels

        return select_kernels("cuda", spec)

    def timer(self, prepared: Prepared) -> Callable[[], float]:
        """Event-timed ``prepared.run``; the L2 flush precedes each sample on the same stream, untimed."""
        self._device.synchronize()  # the checked run and input copies are complete before sampling
        after = self._monitor.sample if self._monitor.available else None
        return event_timer(prepared.run, api=self._events, before=self._flusher, after=after)

    def side_tables(self) -> dict[str, list[dict[str, Any]]]:
        """Per-problem tables beside the rows: which cuDNN plan heuristic modes A and B picked."""
        from kernelbench.gpu.cudnn import heuristic_picks

        picks = heuristic_picks()
        return {"cudnn_heuristics": picks} if picks else {}

    def throttled(self) -> bool | None:
        """Whether any sample since the last call ran while NVML reported a slowdown (None without NVML)."""
        self.last_clock_window = self._monitor.reset_window()
        if not self._monitor.available:
            return None
        return self.last_clock_window.throttled


def _optional_library_versions() -> dict[str, str]:
    """Versions of the optional GPU packages that are installed (cuDNN frontend, nvidia-ml-py)."""
    from importlib import metadata

    versions = {}
    for dist in ("nvidia-cudnn-frontend", "nvidia-ml-py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions
