"""Device descriptors: the package's table, user spec files, labels, and the CUDA run-time mapping."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from cli import kernelbench as kernelbench_cli
from kernelbench.devices import (
    NUMBER_FIELDS,
    DeviceDescriptor,
    descriptor,
    load_device_spec,
    resolve_descriptor,
    table,
    table_id,
)
from kernelbench.errors import InputError
from kernelbench.gpu.descriptor import PER_SM_PER_CLOCK, descriptor_from_attributes
from kernelbench.gpu.kernels import cuda_unavailable
from kernelbench.importers.miopen_device import device_from_file_name
from kernelbench.schema import read_dataset

# The find-dbs in ../shared/miopen (and the rest of MIOpen's source tree as of Oct 2024).
SHARED_FDB_NAMES = ["gfx803_36", "gfx803_64", "gfx900_56", "gfx906_64", "gfx90878", "gfx90a6e"]
OTHER_TREE_FDB_NAMES = ["gfx900_64", "gfx906_60", "gfx90a68", "gfx942130", "gfx1030_36"]

SPEC = """\
name = "AMD Instinct MI210 (my copy)"
vendor = "AMD"
arch = "gfx90a"
compute_units = 104
clock_mhz = 1700
peak_fp32_tflops = 22.6
peak_fp16_tflops = 181.0
mem_bandwidth_gbs = 1638.4
l2_mib = 8
lds_kib_per_cu = 64
wavefront = 64
matrix_cores = true
source = "AMD Instinct MI210 data sheet"
"""

# cudaDevAttr values an A100-SXM4-40GB reports (keys as cupy.cuda.Device.attributes names them).
A100_ATTRIBUTES = {
    "MultiProcessorCount": 108, "ClockRate": 1_410_000, "MemoryClockRate": 1_215_000, "GlobalMemoryBusWidth": 5120,
    "L2CacheSize": 40 * 2**20, "MaxSharedMemoryPerMultiprocessor": 164 * 2**10, "WarpSize": 32,
    "ComputeCapabilityMajor": 8, "ComputeCapabilityMinor": 0, "MaxThreadsPerBlock": 1024,
}


@pytest.mark.parametrize("name", SHARED_FDB_NAMES + OTHER_TREE_FDB_NAMES)
def test_every_miopen_find_db_device_has_a_descriptor(name):
    device = device_from_file_name(f"{name}.HIP.fdb.txt.bz2")
    found = descriptor(device.label)
    assert found is descriptor(f"{name}.HIP.fdb.txt") is descriptor(f"{device.arch}_{device.num_cu}")
    assert found.arch == device.arch and found.vendor == "AMD"


@pytest.mark.parametrize("key", sorted(table()))
def test_every_table_entry_is_positive_sourced_and_self_consistent(key):
    entry = table()[key]
    assert entry.id == key and entry.source.strip()
    assert all(getattr(entry, f) is None or getattr(entry, f) > 0 for f in NUMBER_FIELDS)
    assert entry.peak_fp32_tflops > 0 and entry.mem_bandwidth_gbs > 0 and entry.compute_units > 0
    # FP32 peak = units x clock x 128 or 256 FLOP per clock (64 lanes x FMA; dual issue / 128 cores): a typo check.
    per_clock = entry.peak_fp32_tflops * 1e6 / (entry.compute_units * entry.clock_mhz)
    assert min(abs(per_clock - 128), abs(per_clock - 256)) / per_clock < 0.015, per_clock
    assert entry.wavefront in (32, 64)
    for lower, higher in (("peak_fp32_tflops", "peak_fp16_tflops"), ("peak_fp16_tflops", "peak_int8_tops")):
        if getattr(entry, higher) is not None and getattr(entry, lower) is not None:
            assert getattr(entry, higher) >= getattr(entry, lower)


def test_cuda_labels_resolve_by_device_name_only():
    assert table_id("cuda:NVIDIA A100-SXM4-40GB:sm80") == "sm_80"
    assert descriptor("cuda:NVIDIA H100 80GB HBM3:sm90").compute_units == 132
    with pytest.raises(InputError, match="no descriptor for device cuda:NVIDIA A100-SXM4-80GB:sm80"):
        descriptor("cuda:NVIDIA A100-SXM4-80GB:sm80")  # another A100: other bandwidth, not silently the 40GB's


@pytest.mark.parametrize("label", ["miopen:gfx90a:100", "cpu:Intel Xeon", "gfx1201_32", "", "nonsense"])
def test_unknown_devices_get_one_clear_error(label):
    with pytest.raises(InputError) as info:
        descriptor(label)
    message = str(info.value)
    assert message.startswith(f"no descriptor for device {label};") and "--device-spec FILE" in message
    assert "docs/device-descriptors.md" in message and "\n" not in message


def test_a_spec_file_describes_a_device_the_table_lacks(tmp_path):
    path = tmp_path / "mi210.toml"
    path.write_text(SPEC)
    spec = load_device_spec(path)
    assert (spec.id, spec.compute_units, spec.peak_fp16_tflops, spec.peak_bf16_tflops) == ("mi210", 104, 181.0, None)
    assert resolve_descriptor("miopen:gfx90a:100", device_spec=path) == spec
    assert resolve_descriptor("miopen:gfx908:120") is descriptor("gfx908_120")
    assert DeviceDescriptor(**{**dataclasses.asdict(spec)}) == spec


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s.replace('clock_mhz = 1700\n', ''), "missing field(s) clock_mhz"),
        (lambda s: s + "colour = 3\n", "unknown field(s) colour"),
        (lambda s: s.replace("compute_units = 104", "compute_units = 0"), "compute_units=0 must be a positive"),
        (lambda s: s.replace("compute_units = 104", "compute_units = 10.5"), "compute_units=10.5"),
        (lambda s: s.replace("peak_fp32_tflops = 22.6", "peak_fp32_tflops = -1"), "peak_fp32_tflops=-1"),
        (lambda s: s.replace("peak_fp32_tflops = 22.6", 'peak_fp32_tflops = "fast"'), "peak_fp32_tflops='fast'"),
        (lambda s: s.replace("peak_fp16_tflops = 181.0", "peak_fp16_tflops = 0"), "or left out"),
        (lambda s: s.replace("matrix_cores = true", "matrix_cores = 1"), "matrix_cores=1 must be true or false"),
        (lambda s: s.replace('source = "AMD Instinct MI210 data sheet"', 'source = ""'), "source=''"),
        (lambda s: s + "[oops\n", "not a TOML device spec"),
    ],
)
def test_invalid_spec_files_are_one_clear_error(tmp_path, edit, words):
    path = tmp_path / "bad.toml"
    path.write_text(edit(SPEC))
    with pytest.raises(InputError) as info:
        load_device_spec(path)
    assert words in str(info.value) and str(path) in str(info.value)
    with pytest.raises(InputError, match="no such device spec file"):
        load_device_spec(tmp_path / "missing.toml")


def test_cuda_attributes_give_the_a100_data_sheet_figures():
    got = descriptor_from_attributes(A100_ATTRIBUTES, name="NVIDIA A100-SXM4-40GB")
    sheet = descriptor("sm_80")
    assert (got.id, got.arch, got.compute_units, got.wavefront, got.matrix_cores) == ("sm_80", "sm_80", 108, 32, True)
    assert (got.clock_mhz, got.l2_mib, got.lds_kib_per_cu) == (1410, 40, 164)
    for field in ("peak_fp32_tflops", "peak_fp16_tflops", "peak_bf16_tflops", "peak_int8_tops", "mem_bandwidth_gbs"):
        assert getattr(got, field) == pytest.approx(getattr(sheet, field), rel=0.005), field
    assert got.device_names == ("NVIDIA A100-SXM4-40GB",) and "cupy.cuda.Device.attributes" in got.source


def test_cuda_attributes_of_an_older_or_unknown_gpu():
    v100 = descriptor_from_attributes({**A100_ATTRIBUTES, "ComputeCapabilityMajor": 7, "MultiProcessorCount": 80,
                                       "ClockRate": 1_530_000}, name="Tesla V100")
    assert v100.peak_fp16_tflops == pytest.approx(125, rel=0.01) and v100.peak_bf16_tflops is None
    assert set(PER_SM_PER_CLOCK) >= {(8, 0), (9, 0)}
    with pytest.raises(InputError, match=r"no per-SM throughput .*sm_120.*--device-spec FILE"):
        descriptor_from_attributes({**A100_ATTRIBUTES, "ComputeCapabilityMajor": 12}, name="Some GPU")
    with pytest.raises(InputError, match="does not report ClockRate"):
        descriptor_from_attributes({**A100_ATTRIBUTES, "ClockRate": 0}, name="Some GPU")
    with pytest.raises(InputError, match="does not report L2CacheSize"):
        descriptor_from_attributes({k: v for k, v in A100_ATTRIBUTES.items() if k != "L2CacheSize"}, name="Some GPU")


@pytest.mark.gpu
@pytest.mark.skipif(cuda_unavailable() is not None, reason=f"no usable CUDA device: {cuda_unavailable()}")
def test_the_cuda_device_describes_itself():
    import cupy

    from kernelbench.gpu.descriptor import cuda_descriptor

    got = cuda_descriptor(0)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    assert got.compute_units == props["multiProcessorCount"] and got.wavefront == props["warpSize"]
    assert all(getattr(got, f) is None or getattr(got, f) > 0 for f in NUMBER_FIELDS)


def test_import_records_the_descriptor_or_says_it_has_none(tmp_path):
    from tests.kernelbench.test_import_miopen import small_v2_lines, write

    src = write(tmp_path / "gfx90878.HIP.fdb.txt", small_v2_lines())
    runner = CliRunner()
    result = runner.invoke(kernelbench_cli, ["import", "miopen", str(src), "-o", str(tmp_path / "a.parquet")])
    assert result.exit_code == 0 and "note:" not in result.output
    assert read_dataset(tmp_path / "a.parquet")[1]["device"]["descriptor"]["id"] == "gfx908_120"
    args = ["import", "miopen", str(src), "--arch", "gfx90a", "--num-cu", "100", "-o", str(tmp_path / "b.parquet")]
    result = runner.invoke(kernelbench_cli, args)
    assert result.exit_code == 0 and "no descriptor for miopen:gfx90a:100" in result.output
    assert read_dataset(tmp_path / "b.parquet")[1]["device"]["descriptor"] is None
    spec = tmp_path / "mi210.toml"
    spec.write_text(SPEC)
    result = runner.invoke(kernelbench_cli, [*args, "--device-spec", str(spec)])
    assert result.exit_code == 0 and "note:" not in result.output
    assert read_dataset(tmp_path / "b.parquet")[1]["device"]["descriptor"]["name"] == "AMD Instinct MI210 (my copy)"
    spec.write_text(SPEC.replace("wavefront = 64", "wavefront = -64"))
    result = runner.invoke(kernelbench_cli, [*args, "--device-spec", str(spec)])
    assert result.exit_code == 2 and "wavefront=-64" in result.output and len(result.output.strip().splitlines()) == 1
