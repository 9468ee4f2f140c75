"""CUDA backend glue without a GPU: metadata, labels, NVML throttling, launch geometry, applicability."""

from __future__ import annotations

import dataclasses

import pytest

from kernelbench.gpu import instances
from kernelbench.gpu.backend import CudaBackend, cuda_version_text, device_label, device_metadata
from kernelbench.gpu.detect import Detection
from kernelbench.gpu.instances import DirectConfig, IgemmConfig
from kernelbench.gpu.launch import DeviceLimits, direct_applies, direct_launch, igemm_applies, igemm_launch, pack_params
from kernelbench.gpu.nvml import NvmlMonitor, slowdown_mask
from kernelbench.kernels.base import Prepared
from kernelbench.problem import problem_2d
from tests.kernelbench.cuda_harness.fakes import A100_DEVICE_ATTRIBUTES, A100_PROPS, FakeGpu, fake_cupy, fake_nvml

USABLE = Detection(True, "NVIDIA A100-SXM4-40GB (sm_80), CuPy 14.2.0")


def test_cuda_version_text():
    assert cuda_version_text(12040) == "12.4"
    assert cuda_version_text(13000) == "13.0"


def test_device_metadata_and_label_from_fake_properties():
    meta = device_metadata(A100_PROPS, device_index=0, driver_version=13000, runtime_version=12090,
                           cupy_version="14.2.0", flush_bytes=2 * A100_PROPS["l2CacheSize"],
                           attributes=A100_DEVICE_ATTRIBUTES)
    assert meta["name"] == "NVIDIA A100-SXM4-40GB"
    assert (meta["compute_capability"], meta["sm_count"], meta["l2_cache_bytes"]) == ("8.0", 108, 41_943_040)
    assert meta["memory_bytes"] == 42_298_834_944
    assert (meta["driver_version"], meta["runtime_version"], meta["cupy_version"]) == ("13.0", "12.9", "14.2.0")
    assert meta["versions"]["cupy"] == "14.2.0" and "numpy" in meta["versions"]
    assert "sm_clock_max_khz" not in meta  # CUDA 13 dropped clockRate
    assert device_metadata({**A100_PROPS, "clockRate": 1_410_000}, device_index=0, driver_version=12040,
                           runtime_version=12040, cupy_version="14", flush_bytes=1,
                           attributes=A100_DEVICE_ATTRIBUTES)["sm_clock_max_khz"] == 1_410_000
    assert device_label(meta) == "cuda:NVIDIA A100-SXM4-40GB:sm80"


def test_backend_with_fake_cupy_nvml_and_events():
    cupy = fake_cupy()
    nvml = fake_nvml(clocks=[1410, 1410, 1200, 1410], temperatures=[40, 55, 83, 60],
                     reasons=[0x1, 0x0, 0x20, 0x1])  # idle, none, SW thermal slowdown, idle
    gpu = FakeGpu(kernel_ms=[])
    backend = CudaBackend(detection=USABLE, cupy=cupy, nvml=nvml, events=gpu.api())
    assert backend.name == "cuda" and backend.device_label == "cuda:NVIDIA A100-SXM4-40GB:sm80"
    meta = backend.device_metadata()
    assert meta["l2_flush_bytes"] == 2 * A100_PROPS["l2CacheSize"]
    assert meta["clocks_at_start"] == {"sm_clock_mhz": 1410, "temperature_c": 40}
    assert meta["nvml"] == "available"

    time_one = backend.timer(Prepared(run=lambda: gpu.launch("run", 2.0), result=lambda out: out))
    assert "device_sync" in cupy.calls  # the checked run is complete before sampling starts
    assert backend.throttled() is False  # window reset before the kernel's samples
    assert time_one() == pytest.approx(2.0)  # poll: no reasons
    assert backend.throttled() is False
    time_one()  # poll: SW thermal slowdown
    time_one()  # poll: idle only
    assert backend.throttled() is True
    window = backend.last_clock_window
    assert (window.samples, window.sm_clock_min_mhz, window.temperature_max_c) == (2, 1200, 83)


def test_backend_without_nvml_reports_unknown_throttling():
    gpu = FakeGpu(kernel_ms=[])
    backend = CudaBackend(detection=USABLE, cupy=fake_cupy(), nvml=fake_nvml(clocks=[], temperatures=[], reasons=[],
                                                                             init_error=True), events=gpu.api())
    assert backend.device_metadata()["nvml"].startswith("NVML unavailable: Driver Not Loaded")
    assert backend.throttled() is None
    assert backend.timer(Prepared(run=lambda: gpu.launch("run", 1.0), result=lambda out: out))() == 1.0


def test_backend_refuses_an_unusable_detection():
    with pytest.raises(ValueError, match="usable"):
        CudaBackend(detection=Detection(False, "no device"), cupy=fake_cupy())


def test_slowdown_mask_excludes_idle_and_application_clocks():
    nvml = fake_nvml(clocks=[], temperatures=[], reasons=[])
    assert slowdown_mask(nvml) == 0x4 | 0x8 | 0x20 | 0x40 | 0x80
    monitor = NvmlMonitor(pci_bus_id="0000:07:00.0", nvml=nvml)
    assert monitor.available and monitor.reset_window().samples == 0


def test_pack_params_order():
    p = problem_2d(batch=2, in_channels=6, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=2, pad_h=1,
                   stride_h=2, dilation_w=2, groups=2)
    assert pack_params(p).tolist() == [2, 6, 9, 7, 4, 3, 2, 1, 0, 2, 1, 1, 2, 2, p.out_h, p.out_w]
    assert pack_params(p).dtype.name == "int32"


def test_launch_geometry_covers_every_output_exactly():
    p = problem_2d(batch=3, in_channels=4, out_channels=10, in_h=17, in_w=33, filter_h=3, filter_w=3, pad_h=1, pad_w=1,
                   groups=2)
    d = direct_launch(p, DirectConfig(block_h=8, block_w=8, k_per_thread=2))
    assert d.block == (8, 8, 1) and d.grid == (3 * 5, 5, 3)
    g = igemm_launch(p, IgemmConfig(bm=64, bn=64, bk=8, tm=4, tn=4))
    assert g.block == (256, 1, 1) and g.grid == (-(-3 * 17 * 33 // 64), 1, 2)


def test_applicability_rules():
    p = problem_2d(batch=2, in_channels=8, out_channels=6, in_h=8, in_w=8, filter_h=3, filter_w=3)
    kpt4 = DirectConfig(block_h=8, block_w=8, k_per_thread=4)
    assert direct_applies(p, kpt4) == "output channels per group not a multiple of 4"
    assert direct_applies(dataclasses.replace(p, out_channels=8), kpt4) is None
    assert direct_applies(dataclasses.replace(p, direction="bwd_data"), kpt4) == "forward only"
    assert igemm_applies(dataclasses.replace(p, dtype="bf16"), instances.IGEMM_CONFIGS[0]) == "fp32 and fp16 only"
    assert igemm_applies(dataclasses.replace(p, layout="NHWC"), instances.IGEMM_CONFIGS[0]) == "2D NCHW only"
    big_tile = instances.IGEMM_CONFIGS[-1]
    assert igemm_applies(p, big_tile, DeviceLimits(shared_bytes_per_block=4096)).startswith("8192 B shared memory")
    assert igemm_applies(p, big_tile, DeviceLimits(max_threads_per_block=128)).startswith("256 threads per block")
    many_groups = problem_2d(batch=1, in_channels=70000, out_channels=70000, in_h=1, in_w=1, filter_h=1, filter_w=1,
                             groups=70000)
    assert igemm_applies(many_groups, instances.IGEMM_CONFIGS[0]) == "grid.z = 70000 > device limit 65535"
    huge = problem_2d(batch=64, in_channels=512, out_channels=64, in_h=256, in_w=256, filter_h=1, filter_w=1)
    assert "2^31-1" in igemm_applies(huge, instances.IGEMM_CONFIGS[0])


def test_device_limits_from_properties():
    limits = DeviceLimits.from_properties(A100_PROPS)
    assert limits == DeviceLimits(shared_bytes_per_block=49_152, max_threads_per_block=1024,
                                  max_grid=(2_147_483_647, 65_535, 65_535))


def test_igemm_config_validates_its_micro_tile():
    with pytest.raises(ValueError):
        IgemmConfig(bm=64, bn=64, bk=8, tm=3, tn=4)

