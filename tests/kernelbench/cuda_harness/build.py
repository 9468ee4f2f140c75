"""Build and drive the host harness (``harness.cu``) and find nvcc for the CUDA tests.

Shared by ``test_gpu_compile.py`` and ``test_gpu_harness.py``.  Without nvcc the
tests skip, except under CI (env ``CI`` set), where a missing toolkit is a
failure: ``.ci/run`` must provide nvcc.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kernelbench.gpu import instances
from kernelbench.gpu.launch import Launch, pack_params
from kernelbench.problem import ConvProblem

HARNESS_SOURCE = Path(__file__).with_name("harness.cu")


def require_nvcc() -> str:
    """Path of nvcc; fails the test under CI when it is missing, skips it otherwise."""
    from kernelbench.gpu.compile_check import nvcc_path

    path = nvcc_path()
    if path is None:
        message = "nvcc (CUDA toolkit 13) is not on the PATH"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it (.ci/run)")
        pytest.skip(f"{message}; install the CUDA toolkit to run the CUDA compile and host-harness checks")
    return path


def simulator_expression(inst: instances.Instance) -> str:
    """``conv_direct<...>`` -> ``simulate_direct<...>`` (the harness function of the same template arguments)."""
    return "simulate_" + inst.name_expression.removeprefix("conv_")


def dispatch_source() -> str:
    """``dispatch.inc``: one ``KB_ENTRY(name expression, simulator)`` per runtime instantiation."""
    return "".join(f'KB_ENTRY("{i.name_expression}", ({simulator_expression(i)}))\n' for i in instances.instances())


class Harness:
    """The compiled harness binary."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self._count = 0

    @classmethod
    def build(cls, workdir: Path) -> Harness:
        nvcc = require_nvcc()
        (workdir / "dispatch.inc").write_text(dispatch_source())
        binary = workdir / "harness"
        cmd = [nvcc, "-std=c++17", "-O1", f"-I{instances.source_dir()}", f"-I{workdir}", str(HARNESS_SOURCE),
               "-o", str(binary)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"harness build failed:\n{proc.stdout}{proc.stderr}"
        return cls(binary, workdir)

    def _call(self, *args: str, request: bytes) -> bytes:
        self._count += 1
        req = self.workdir / f"req{self._count}.bin"
        out = self.workdir / f"out{self._count}.bin"
        req.write_bytes(request)
        proc = subprocess.run([str(self.binary), *args, str(req), str(out)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, f"harness {' '.join(args)} failed: {proc.stderr}"
        data = out.read_bytes()
        req.unlink()
        out.unlink()
        return data

    def params(self, problem: ConvProblem) -> dict[str, int]:
        text = self._call("params", request=pack_params(problem).tobytes()).decode()
        return {k: int(v) for k, v in (line.split("=") for line in text.splitlines())}

    def to_half_bits(self, values: np.ndarray) -> np.ndarray:
        raw = self._call("to_half", request=np.ascontiguousarray(values, dtype=np.float32).tobytes())
        return np.frombuffer(raw, dtype=np.uint16)

    def to_float(self, bits: np.ndarray) -> np.ndarray:
        raw = self._call("to_float", request=np.ascontiguousarray(bits, dtype=np.uint16).tobytes())
        return np.frombuffer(raw, dtype=np.float32)

    def run(self, inst: instances.Instance, problem: ConvProblem, launch: Launch, x: np.ndarray,
            w: np.ndarray) -> np.ndarray:
        """Simulate the launch of ``inst`` on the host; returns y (N, K, OH, OW) in the kernel's dtype."""
        dtype = np.float16 if inst.dtype == "fp16" else np.float32
        head = np.array([*launch.grid, *launch.block], dtype=np.int32)
        request = b"".join([head.tobytes(), pack_params(problem).tobytes(),
                            np.ascontiguousarray(x, dtype=dtype).tobytes(),
                            np.ascontiguousarray(w, dtype=dtype).tobytes()])
        raw = self._call("run", inst.name_expression, request=request)
        shape = (problem.batch, problem.out_channels, problem.out_h, problem.out_w)
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
