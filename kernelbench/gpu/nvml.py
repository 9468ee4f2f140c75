"""SM clock, temperature and throttle reasons through NVML (``nvidia-ml-py``), when available.

Optional: without the package or the NVML library every query returns ``None``
and the dataset's ``throttled`` column stays null.  The NVML module is
injectable so the logic is tested with a fake.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: NVML clock-event reasons that mean the SM clock was lowered under load (by name, in pynvml).
#: Idle, application-clock settings, sync boost and display clocks are not throttling.
SLOWDOWN_REASONS = (
    "SwPowerCap",
    "HwSlowdown",
    "SwThermalSlowdown",
    "HwThermalSlowdown",
    "HwPowerBrakeSlowdown",
)


def _reason_bit(nvml: Any, name: str) -> int:
    # nvidia-ml-py >= 12.535 names them ClocksEventReason*, older versions ClocksThrottleReason*.
    for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
        value = getattr(nvml, prefix + name, None)
        if value is not None:
            return int(value)
    return 0


def slowdown_mask(nvml: Any) -> int:
    """Bit mask of :data:`SLOWDOWN_REASONS` in ``nvml``'s constants."""
    mask = 0
    for name in SLOWDOWN_REASONS:
        mask |= _reason_bit(nvml, name)
    return mask


@dataclasses.dataclass(frozen=True)
class ClockSample:
    """One NVML reading: SM clock (MHz), GPU temperature (°C), raw reason bits, and whether they mean throttling."""

    sm_clock_mhz: int
    temperature_c: int
    reasons: int
    throttled: bool


@dataclasses.dataclass(frozen=True)
class ClockWindow:
    """Readings since the last reset: SM clock range, hottest temperature, any throttled sample."""

    samples: int
    sm_clock_min_mhz: int | None
    sm_clock_max_mhz: int | None
    temperature_max_c: int | None
    throttled: bool


class NvmlMonitor:
    """Polls one GPU's clocks; accumulates a :class:`ClockWindow` between :meth:`reset_window` calls.

    Construction never raises: if NVML is missing or fails, :attr:`available` is False and
    :attr:`reason` says why.
    """

    def __init__(self, *, pci_bus_id: str, nvml: Any = None) -> None:
        self.available = False
        self.reason = ""
        self._window: list[ClockSample] = []
        try:
            if nvml is None:
                import pynvml as nvml  # nvidia-ml-py
            nvml.nvmlInit()
            self._handle = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
            return
        except Exception as exc:  # noqa: BLE001 - NVMLError subclasses, missing libnvidia-ml
            self.reason = f"NVML unavailable: {exc}"
            return
        self._nvml = nvml
        self._mask = slowdown_mask(nvml)
        # Renamed in nvidia-ml-py 12.535 (ClocksThrottleReasons -> ClocksEventReasons).
        self._reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if self._reasons is None:
            self._reasons = nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        self.available = True

    def sample(self) -> ClockSample | None:
        """One reading (also added to the window); None when NVML is unavailable or the query fails."""
        if not self.available:
            return None
        nvml = self._nvml
        try:
            reasons = int(self._reasons(self._handle))
            reading = ClockSample(
                sm_clock_mhz=int(nvml.nvmlDeviceGetClockInfo(self._handle, nvml.NVML_CLOCK_SM)),
                temperature_c=int(nvml.nvmlDeviceGetTemperature(self._handle, nvml.NVML_TEMPERATURE_GPU)),
                reasons=reasons,
                throttled=bool(reasons & self._mask),
            )
        except Exception:  # noqa: BLE001 - a failed poll must not fail the measurement
            return None
        self._window.append(reading)
        return reading

    def reset_window(self) -> ClockWindow:
        """The window since the last reset (then start a new one)."""
        window, self._window = self._window, []
        if not window:
            return ClockWindow(0, None, None, None, False)
        clocks = [s.sm_clock_mhz for s in window]
        return ClockWindow(
            samples=len(window),
            sm_clock_min_mhz=min(clocks),
            sm_clock_max_mhz=max(clocks),
            temperature_max_c=max(s.temperature_c for s in window),
            throttled=any(s.throttled for s in window),
        )
