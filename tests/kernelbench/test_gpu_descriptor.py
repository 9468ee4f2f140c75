"""A CUDA run records its device's descriptor, and reformer finds it in the exported dataset (no GPU: fake CuPy)."""

from __future__ import annotations

import pytest

from kernelbench.devices import descriptor
from kernelbench.errors import InputError
from kernelbench.export import export
from kernelbench.gpu.backend import CudaBackend
from kernelbench.gpu.descriptor import cuda_descriptor, recorded_descriptor
from kernelbench.gpu.detect import Detection
from kernelbench.store import RunStore
from reformer.data import load_matrix
from reformer.device_features import dataset_descriptors, find_descriptor
from tests.kernelbench.cuda_harness.fakes import A100_DEVICE_ATTRIBUTES, A100_PROPS, FakeGpu, fake_cupy, fake_nvml
from tests.kernelbench.helpers import problems, rows

#: An A100 80GB: the package table lists only the 40GB board (other memory clock: 1593 MHz, not 1215 MHz).
A100_80GB_PROPS = {**A100_PROPS, "name": b"NVIDIA A100-SXM4-80GB", "totalGlobalMem": 85_089_730_560}
A100_80GB_ATTRIBUTES = {**A100_DEVICE_ATTRIBUTES, "MemoryClockRate": 1_593_000}
A100_80GB_LABEL = "cuda:NVIDIA A100-SXM4-80GB:sm80"
#: A compute capability without per-SM rates in kernelbench.gpu.descriptor.PER_SM_PER_CLOCK, absent from the table.
SM120_PROPS = {**A100_PROPS, "name": b"NVIDIA GeForce RTX 5090", "major": 12, "minor": 0}
SM120_LABEL = "cuda:NVIDIA GeForce RTX 5090:sm120"


def backend_of(props: dict, attributes: dict) -> CudaBackend:
    """The CUDA backend on a fake device with these ``getDeviceProperties`` and ``Device.attributes``."""
    return CudaBackend(detection=Detection(True, "fake"), cupy=fake_cupy(props=props, attributes=attributes),
                       nvml=fake_nvml(clocks=[], temperatures=[], reasons=[], init_error=True),
                       events=FakeGpu(kernel_ms=[]).api())


def exported_dataset(tmp_path, backend: CudaBackend):
    """A dataset as ``kernelbench sweep`` + ``kernelbench export`` write it for ``backend``'s device (two kernels,
    three problems), read back as reformer reads it."""
    label = backend.device_label
    identity = {"space": {"space": "test"}, "kernels": ["a", "b"], "rule": {"rse": 0.02}, "device_label": label,
                "seed": 0}
    with RunStore.open(tmp_path / "run", identity, {"device": backend.device_metadata()}) as store:
        times = {p: {"a": 1.0 + i, "b": 2.0} for i, p in enumerate(problems(3))}
        store.write_part(rows(times, device=label, run_id=store.manifest["run_id"]))
        store.finish_shard()
    export([tmp_path / "run"], tmp_path / "cuda.parquet")
    return load_matrix(tmp_path / "cuda.parquet", warn=None)


def test_a_cuda_run_records_the_descriptor_built_from_the_device():
    meta = backend_of(A100_80GB_PROPS, A100_80GB_ATTRIBUTES).device_metadata()
    got = meta["descriptor"]
    assert "descriptor_error" not in meta
    assert (got["id"], got["arch"], got["vendor"], got["name"]) == ("sm_80", "sm_80", "NVIDIA", "NVIDIA A100-SXM4-80GB")
    assert (got["compute_units"], got["clock_mhz"], got["wavefront"], got["matrix_cores"]) == (108, 1410, 32, True)
    # 108 SMs x 1410 MHz x (128 FP32, 2048 FP16/BF16, 4096 INT8 per SM per clock); 2 x 1593 MHz x 5120 bits / 8.
    assert (got["peak_fp32_tflops"], got["peak_fp16_tflops"], got["peak_bf16_tflops"], got["peak_int8_tops"]) == (
        19.5, 311.9, 311.9, 623.7)
    assert (got["mem_bandwidth_gbs"], got["l2_mib"], got["lds_kib_per_cu"]) == (2039.0, 40, 164)
    assert got["device_names"] == ["NVIDIA A100-SXM4-80GB"] and "at run time" in got["source"]


def test_a_device_the_table_lists_records_the_table_entry():
    meta = backend_of(A100_PROPS, A100_DEVICE_ATTRIBUTES).device_metadata()
    assert meta["descriptor"] == descriptor("sm_80").as_dict()  # data-sheet figures, as an import records them


def test_reformer_finds_the_descriptor_of_a_cuda_dataset_without_a_table_entry(tmp_path):
    with pytest.raises(InputError, match=f"no descriptor for device {A100_80GB_LABEL}"):
        descriptor(A100_80GB_LABEL)  # the table does not list it
    matrix = exported_dataset(tmp_path, backend_of(A100_80GB_PROPS, A100_80GB_ATTRIBUTES))
    assert matrix.devices == (A100_80GB_LABEL,)
    given = dataset_descriptors(matrix.metadata)
    found = find_descriptor(A100_80GB_LABEL, trained={}, given=given)
    assert (found.mem_bandwidth_gbs, found.peak_fp16_tflops, found.compute_units) == (2039.0, 311.9, 108)
    assert found.device_names == ("NVIDIA A100-SXM4-80GB",)


def test_a_device_without_a_descriptor_records_why_and_reformer_says_so(tmp_path):
    meta = backend_of(SM120_PROPS, A100_DEVICE_ATTRIBUTES).device_metadata()
    assert meta["descriptor"] is None
    assert "no per-SM throughput for CUDA device 'NVIDIA GeForce RTX 5090' (sm_120" in meta["descriptor_error"]
    assert "--device-spec FILE" in meta["descriptor_error"]
    matrix = exported_dataset(tmp_path, backend_of(SM120_PROPS, A100_DEVICE_ATTRIBUTES))
    given = dataset_descriptors(matrix.metadata)
    assert given == {}
    with pytest.raises(InputError, match=f"^no descriptor for device {SM120_LABEL}; pass --device-spec FILE"):
        find_descriptor(SM120_LABEL, trained={}, given=given)


def test_missing_attributes_are_recorded_as_the_reason():
    attributes = {k: v for k, v in A100_80GB_ATTRIBUTES.items() if k != "MemoryClockRate"}
    meta = backend_of(A100_80GB_PROPS, attributes).device_metadata()
    assert meta["descriptor"] is None
    assert meta["descriptor_error"].startswith("CUDA device 'NVIDIA A100-SXM4-80GB' does not report MemoryClockRate")


def test_the_compute_capability_comes_from_the_properties_when_the_attributes_lack_it():
    assert "ComputeCapabilityMajor" not in A100_80GB_ATTRIBUTES  # as CuPy's Device.attributes
    got = cuda_descriptor(0, cupy=fake_cupy(props=SM120_PROPS | {"major": 9, "minor": 0},
                                            attributes=A100_80GB_ATTRIBUTES))
    assert (got.arch, got.peak_fp16_tflops) == ("sm_90", 623.7)  # 108 x 1410 MHz x 4096 (sm_90's FP16 rate)
    # An attribute dict that has the compute capability keeps it.
    found, why = recorded_descriptor(A100_80GB_LABEL, A100_80GB_PROPS,
                                     {**A100_80GB_ATTRIBUTES, "ComputeCapabilityMajor": 8, "ComputeCapabilityMinor": 6})
    assert why is None and found.arch == "sm_86"


def test_the_attributes_read_are_names_cupy_exports():
    """Every attribute :func:`descriptor_from_attributes` reads is a ``cudaDevAttr*`` name of CuPy's runtime module
    (``Device.attributes`` collects exactly those, prefix trimmed), except the compute capability, which CuPy
    exports under another name and :func:`with_compute_capability` takes from the properties."""
    runtime = pytest.importorskip("cupy_backends.cuda.api.runtime", reason="CuPy not installed (optional extra 'cuda')")
    from kernelbench.gpu.descriptor import ATTRIBUTES

    exported = {name.removeprefix("cudaDevAttr") for name in vars(runtime) if name.startswith("cudaDevAttr")}
    assert set(ATTRIBUTES) - exported == {"ComputeCapabilityMajor", "ComputeCapabilityMinor"}
