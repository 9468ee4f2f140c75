"""Fake CuPy and NVML modules for testing the CUDA backend's logic without a GPU."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from kernelbench.gpu.events import EventApi

#: Properties as ``cupy.cuda.runtime.getDeviceProperties`` returns them on CUDA 13 (no ``clockRate``).
A100_PROPS: dict[str, Any] = {
    "name": b"NVIDIA A100-SXM4-40GB",
    "major": 8,
    "minor": 0,
    "multiProcessorCount": 108,
    "totalGlobalMem": 42_298_834_944,
    "l2CacheSize": 41_943_040,
    "sharedMemPerBlock": 49_152,
    "sharedMemPerBlockOptin": 166_912,
    "maxThreadsPerBlock": 1024,
    "maxGridSize": (2_147_483_647, 65_535, 65_535),
}

#: ``cupy.cuda.Device(0).attributes`` of an A100-SXM4-40GB (``cudaDevAttr*`` values; kHz, bits, bytes, lanes).
#: No ``ComputeCapabilityMajor``/``Minor``: CuPy's attribute dict lacks them (kernelbench/gpu/descriptor.py).
A100_DEVICE_ATTRIBUTES: dict[str, Any] = {
    "MultiProcessorCount": 108, "ClockRate": 1_410_000, "MemoryClockRate": 1_215_000, "GlobalMemoryBusWidth": 5120,
    "L2CacheSize": 40 * 2**20, "MaxSharedMemoryPerMultiprocessor": 164 * 2**10, "WarpSize": 32,
    "MaxThreadsPerBlock": 1024,
}


class FakeCudaRuntimeError(RuntimeError):
    """Stands in for ``cupy.cuda.runtime.CUDARuntimeError`` (also a RuntimeError)."""


def fake_cupy(
    *,
    props: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    device_count: int = 1,
    runtime_error: str | None = None,
    smoke_result: list[float] | None = None,
) -> SimpleNamespace:
    """A module-like object with the CuPy API the backend and detection use.

    ``runtime_error`` makes every runtime call raise like a machine without a driver;
    ``smoke_result`` overrides what the smoke kernel returns; ``props`` and ``attributes`` are what
    ``getDeviceProperties`` and ``Device.attributes`` return (an A100-SXM4-40GB's by default).
    """
    props = dict(A100_PROPS if props is None else props)
    attributes = dict(A100_DEVICE_ATTRIBUTES if attributes is None else attributes)
    calls: list[str] = []

    def runtime_call(name: str, value: Any):
        def call(*args: Any) -> Any:
            calls.append(name)
            if runtime_error is not None:
                raise FakeCudaRuntimeError(runtime_error)
            return value(*args) if callable(value) else value

        return call

    class Device:
        def __init__(self, index: int = 0) -> None:
            self.id = index

        def use(self) -> None:
            calls.append("use")

        @property
        def attributes(self) -> dict[str, Any]:
            calls.append("attributes")
            return dict(attributes)

        def synchronize(self) -> None:
            calls.append("device_sync")

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    def elementwise_kernel(in_params: str, out_params: str, operation: str, name: str):
        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(smoke_result, dtype=np.float32) if smoke_result is not None else 2 * x + 1

        return run

    runtime = SimpleNamespace(
        getDeviceCount=runtime_call("getDeviceCount", device_count),
        getDeviceProperties=runtime_call("getDeviceProperties", lambda index: props),
        deviceGetPCIBusId=runtime_call("deviceGetPCIBusId", "0000:07:00.0"),
        driverGetVersion=runtime_call("driverGetVersion", 13000),
        runtimeGetVersion=runtime_call("runtimeGetVersion", 13000),
    )
    return SimpleNamespace(
        __version__="14.2.0",
        cuda=SimpleNamespace(runtime=runtime, Device=Device),
        ElementwiseKernel=elementwise_kernel,
        arange=np.arange,
        asnumpy=np.asarray,
        float32=np.float32,
        uint8=np.uint8,
        empty=np.empty,
        calls=calls,
    )


def fake_nvml(*, clocks: list[int], temperatures: list[int], reasons: list[int], init_error: bool = False):
    """An NVML module whose successive readings come from the lists (bit values as in nvidia-ml-py)."""
    readings = {"clock": iter(clocks), "temp": iter(temperatures), "reasons": iter(reasons)}

    class NVMLError(Exception):
        pass

    def init() -> None:
        if init_error:
            raise NVMLError("Driver Not Loaded")

    return SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=init,
        nvmlDeviceGetHandleByPciBusId=lambda bus: f"handle:{bus}",
        NVML_CLOCK_SM=1,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetClockInfo=lambda handle, kind: next(readings["clock"]),
        nvmlDeviceGetTemperature=lambda handle, kind: next(readings["temp"]),
        nvmlDeviceGetCurrentClocksEventReasons=lambda handle: next(readings["reasons"]),
        nvmlClocksEventReasonGpuIdle=0x1,
        nvmlClocksEventReasonApplicationsClocksSetting=0x2,
        nvmlClocksEventReasonSwPowerCap=0x4,
        nvmlClocksEventReasonHwSlowdown=0x8,
        nvmlClocksEventReasonSyncBoost=0x10,
        nvmlClocksEventReasonSwThermalSlowdown=0x20,
        nvmlClocksEventReasonHwThermalSlowdown=0x40,
        nvmlClocksEventReasonHwPowerBrakeSlowdown=0x80,
    )


class FakeGpu:
    """A device timeline: operations advance a device clock; events capture it when 'executed'."""

    def __init__(self, kernel_ms: list[float]) -> None:
        self.kernel_ms = list(kernel_ms)
        self.device_ms = 0.0
        self.log: list[str] = []
        self.current_stream: object | None = None
        self.stream = FakeStream(self)

    def new_event(self) -> FakeEvent:
        return FakeEvent(self)

    def elapsed_ms(self, start: FakeEvent, end: FakeEvent) -> float:
        assert start.time_ms is not None and end.synchronized, "elapsed time of an incomplete event"
        return end.time_ms - start.time_ms

    def api(self) -> EventApi:
        return EventApi(new_event=self.new_event, elapsed_ms=self.elapsed_ms, stream=self.stream)

    def launch(self, what: str, ms: float) -> None:
        assert self.current_stream is self.stream, f"{what} ran outside the timing stream"
        self.log.append(what)
        self.device_ms += ms


class FakeStream:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu

    def __enter__(self) -> None:
        self.gpu.current_stream = self

    def __exit__(self, *exc: object) -> None:
        self.gpu.current_stream = None


class FakeEvent:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.time_ms: float | None = None
        self.synchronized = False

    def record(self, stream: object = None) -> None:
        assert stream is self.gpu.stream, "event recorded on another stream"
        self.gpu.log.append("record")
        self.time_ms = self.gpu.device_ms
        self.synchronized = False

    def synchronize(self) -> None:
        self.gpu.log.append("sync")
        self.synchronized = True
