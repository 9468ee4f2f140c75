"""CUDA detection and ``--device auto`` fallback, with simulated failures (no GPU needed)."""

from __future__ import annotations

import importlib

import pytest

from kernelbench import backends
from kernelbench.errors import InputError
from kernelbench.gpu import detect
from kernelbench.gpu.detect import Detection, detect_cuda
from tests.kernelbench.cuda_harness.fakes import fake_cupy


def _importer(module):
    def import_module(name: str):
        assert name == "cupy"
        if isinstance(module, BaseException):
            raise module
        return module

    return import_module


def test_missing_cupy_is_reported_with_the_install_hint():
    found = detect_cuda(import_module=_importer(ImportError("No module named 'cupy'")))
    assert not found.usable
    assert "No module named 'cupy'" in found.reason and ".[cuda]" in found.reason


def test_broken_cupy_import_is_reported_not_raised():
    found = detect_cuda(import_module=_importer(OSError("libcudart.so.13: cannot open shared object file")))
    assert not found.usable and "OSError" in found.reason and "libcudart" in found.reason


def test_cuda_runtime_error_is_reported_with_its_name():
    cupy = fake_cupy(runtime_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    found = detect_cuda(import_module=_importer(cupy))
    assert not found.usable
    assert "cudaErrorInsufficientDriver" in found.reason and found.cupy_version == "14.2.0"


def test_no_device_visible():
    found = detect_cuda(import_module=_importer(fake_cupy(device_count=0)))
    assert not found.usable and "0 CUDA device(s)" in found.reason


def test_wrong_smoke_result_makes_the_device_unusable():
    found = detect_cuda(import_module=_importer(fake_cupy(smoke_result=[0.0, 0.0, 0.0, 0.0])))
    assert not found.usable and "smoke kernel returned" in found.reason
    assert found.device_name == "NVIDIA A100-SXM4-40GB" and found.compute_capability == "8.0"


def test_a_working_device_is_usable_and_described():
    found = detect_cuda(import_module=_importer(fake_cupy()))
    assert found.usable
    assert found.reason == "NVIDIA A100-SXM4-40GB (sm_80), CuPy 14.2.0"


def test_real_cupy_without_a_gpu_is_not_usable():
    try:
        importlib.import_module("cupy")
    except ImportError:
        pytest.skip("CuPy not installed (optional extra 'cuda')")
    found = detect_cuda()
    if found.usable:
        pytest.skip("this machine has a usable GPU")
    assert found.reason and found.cupy_version is not None


def test_auto_falls_back_to_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(detect, "detect_cuda", lambda: Detection(False, "cudaErrorNoDevice: no CUDA-capable device"))
    said: list[str] = []
    backend = backends.resolve_backend("auto", threads=1, say=said.append)
    assert backend.name == "cpu"
    assert said == ["device: cpu (no usable CUDA device: cudaErrorNoDevice: no CUDA-capable device)"]


def test_explicit_cuda_without_a_device_is_an_input_error(monkeypatch):
    monkeypatch.setattr(detect, "detect_cuda", lambda: Detection(False, "CuPy is not importable"))
    with pytest.raises(InputError, match="--device cuda: no usable CUDA device .*--device cpu"):
        backends.resolve_backend("cuda", threads=1, say=lambda text: None)


def test_auto_picks_cuda_when_usable(monkeypatch):
    from kernelbench.gpu import backend as gpu_backend

    found = Detection(True, "NVIDIA H100 (sm_90), CuPy 14.2.0")
    monkeypatch.setattr(detect, "detect_cuda", lambda: found)
    monkeypatch.setattr(gpu_backend, "CudaBackend", lambda *, detection: ("cuda-backend", detection))
    said: list[str] = []
    assert backends.resolve_backend("auto", threads=1, say=said.append) == ("cuda-backend", found)
    assert said == ["device: cuda (NVIDIA H100 (sm_90), CuPy 14.2.0)"]
