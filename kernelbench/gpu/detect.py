"""Is there a usable CUDA device?  Answer with a reason, never an exception.

"Usable" means: CuPy imports, the runtime sees a device, and a tiny
elementwise kernel compiles (NVRTC), runs and returns the right values.
CuPy 14 imports fine on a machine without a driver; the first device call then
raises ``cupy.cuda.runtime.CUDARuntimeError`` (a ``RuntimeError``), e.g.
``cudaErrorInsufficientDriver`` or ``cudaErrorNoDevice``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType

_INSTALL_HINT = "install the extra: pip install -e '.[cuda]' (see docs/gpu.md)"


@dataclasses.dataclass(frozen=True)
class Detection:
    """Outcome of :func:`detect_cuda`.

    Attributes:
        usable: the smoke test passed on ``device_index``.
        reason: why not, or a one-line description of the device found.
        device_index: the CUDA device tested.
        device_name: GPU name, when the runtime could be queried.
        compute_capability: e.g. ``"8.0"``, when known.
        cupy_version: when CuPy imported.
    """

    usable: bool
    reason: str
    device_index: int = 0
    device_name: str | None = None
    compute_capability: str | None = None
    cupy_version: str | None = None


def _decode(name: object) -> str:
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _smoke_test(cupy: ModuleType) -> None:
    """Compile (NVRTC) and run an elementwise kernel; raise if the result is wrong."""
    kernel = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2.0f * x + 1.0f", "kernelbench_smoke")
    got = cupy.asnumpy(kernel(cupy.arange(4, dtype=cupy.float32))).tolist()
    if got != [1.0, 3.0, 5.0, 7.0]:
        raise RuntimeError(f"smoke kernel returned {got}, expected [1, 3, 5, 7]")


def detect_cuda(
    *,
    device_index: int = 0,
    import_module: Callable[[str], ModuleType] = importlib.import_module,
) -> Detection:
    """Probe CuPy and CUDA device ``device_index``.  Never raises.

    ``import_module`` is injectable so tests can simulate a missing or broken CuPy.
    """
    try:
        cupy = import_module("cupy")
    except ImportError as exc:
        return Detection(False, f"CuPy is not importable ({exc}); {_INSTALL_HINT}", device_index)
    except Exception as exc:  # noqa: BLE001 - a broken CuPy install can raise anything at import
        return Detection(False, f"CuPy failed to import ({type(exc).__name__}: {exc})", device_index)
    version = getattr(cupy, "__version__", None)
    name = capability = None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count <= device_index:
            return Detection(False, f"{count} CUDA device(s) visible, device {device_index} asked for",
                             device_index, cupy_version=version)
        props = cupy.cuda.runtime.getDeviceProperties(device_index)
        name = _decode(props["name"])
        capability = f"{props['major']}.{props['minor']}"
        with cupy.cuda.Device(device_index):
            _smoke_test(cupy)
    except Exception as exc:  # noqa: BLE001 - detection must not raise
        # RuntimeErrors: CUDARuntimeError (no driver / no device), NVRTCError, a missing libnvrtc
        # (cuda-pathfinder), a wrong smoke result; ImportError of a CUDA library; CuPy's CompileException.
        return Detection(False, f"{type(exc).__name__}: {exc}", device_index, name, capability, version)
    return Detection(True, f"{name} (sm_{capability.replace('.', '')}), CuPy {version}", device_index, name,
                     capability, version)


@cache
def cuda_unavailable() -> str | None:
    """None when a usable CUDA device was detected, else why not (cached for the process)."""
    found = detect_cuda()
    return None if found.usable else found.reason
