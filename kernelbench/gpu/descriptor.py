"""A :class:`~kernelbench.devices.DeviceDescriptor` of the CUDA device in use, built at run time.

The counts, clocks and sizes come from the device (``cupy.cuda.Device(i).attributes``:
CUDA's ``cudaDevAttr*`` values with the prefix trimmed).  Peak throughputs are
not device attributes: they are SMs x clock x the per-SM rate of the compute
capability, from NVIDIA's architecture whitepapers (:data:`PER_SM_PER_CLOCK`).
The mapping is a pure function (:func:`descriptor_from_attributes`), so it is
tested with a fake attribute dict.

A CUDA run records a descriptor in its device metadata (:func:`recorded_descriptor`, called by
:func:`kernelbench.gpu.backend.device_metadata`), so a dataset swept on a GPU carries it as
``device.descriptor`` like an imported one and needs no table entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernelbench.devices import FORMAT_DOC, DeviceDescriptor, descriptor, table, table_id
from kernelbench.errors import InputError

#: Dense operations per clock per SM: (FP32 on CUDA cores, FP16 tensor, BF16 tensor, INT8 tensor); None: no
#: native support.  An FMA counts 2.  From the V100/T4/A100/GA102/Ada/H100 architecture whitepapers.
PER_SM_PER_CLOCK: dict[tuple[int, int], tuple[int, int | None, int | None, int | None]] = {
    (7, 0): (128, 1024, None, None),
    (7, 5): (128, 1024, None, 2048),
    (8, 0): (128, 2048, 2048, 4096),
    (8, 6): (256, 1024, 1024, 2048),
    (8, 9): (256, 1024, 1024, 2048),
    (9, 0): (256, 4096, 4096, 8192),
}
#: Attributes read (CUDA's cudaDevAttr names without the prefix), with their unit.
ATTRIBUTES = {
    "MultiProcessorCount": "SMs",
    "ClockRate": "kHz",
    "MemoryClockRate": "kHz",
    "GlobalMemoryBusWidth": "bits",
    "L2CacheSize": "bytes",
    "MaxSharedMemoryPerMultiprocessor": "bytes",
    "WarpSize": "lanes",
    "ComputeCapabilityMajor": "",
    "ComputeCapabilityMinor": "",
}


def descriptor_from_attributes(attributes: Mapping[str, Any], *, name: str) -> DeviceDescriptor:
    """The descriptor of a CUDA device from its attribute dict (``cupy.cuda.Device(i).attributes``).

    Memory bandwidth is ``2 x memory clock x bus width / 8`` (double data rate),
    peak throughputs use the reported maximum SM clock; both are upper bounds
    that may differ from a data sheet by the clock it assumes.

    Raises:
        InputError: an attribute is missing or zero, or the compute capability is not in
            :data:`PER_SM_PER_CLOCK` (pass ``--device-spec FILE`` for such a device).
    """
    missing = [key for key in ATTRIBUTES if not attributes.get(key) and key != "ComputeCapabilityMinor"]
    if missing or "ComputeCapabilityMinor" not in attributes:
        missing = missing or ["ComputeCapabilityMinor"]
        raise InputError(f"CUDA device {name!r} does not report {', '.join(missing)}; describe it with "
                         f"--device-spec FILE (format: {FORMAT_DOC})")
    major, minor = int(attributes["ComputeCapabilityMajor"]), int(attributes["ComputeCapabilityMinor"])
    rates = PER_SM_PER_CLOCK.get((major, minor))
    if rates is None:
        known = ", ".join(f"sm_{a}{b}" for a, b in PER_SM_PER_CLOCK)
        raise InputError(f"no per-SM throughput for CUDA device {name!r} (sm_{major}{minor}; known: {known}); "
                         f"describe it with --device-spec FILE (format: {FORMAT_DOC})")
    sms = int(attributes["MultiProcessorCount"])
    clock_mhz = attributes["ClockRate"] / 1000

    def peak(per_sm: int | None) -> float | None:
        return None if per_sm is None else round(sms * per_sm * clock_mhz / 1e6, 1)  # ops/s -> T(FL)OPS

    fp32, fp16, bf16, int8 = (peak(r) for r in rates)
    return DeviceDescriptor(
        id=f"sm_{major}{minor}",
        name=name,
        vendor="NVIDIA",
        arch=f"sm_{major}{minor}",
        compute_units=sms,
        clock_mhz=clock_mhz,
        peak_fp32_tflops=fp32,
        peak_fp16_tflops=fp16,
        peak_bf16_tflops=bf16,
        peak_int8_tops=int8,
        mem_bandwidth_gbs=round(2 * attributes["MemoryClockRate"] * 1e3 * attributes["GlobalMemoryBusWidth"] / 8 / 1e9,
                                1),
        l2_mib=attributes["L2CacheSize"] / 2**20,
        lds_kib_per_cu=attributes["MaxSharedMemoryPerMultiprocessor"] / 2**10,
        wavefront=int(attributes["WarpSize"]),
        matrix_cores=major >= 7,
        source=(f"CUDA device attributes of {name} at run time (cupy.cuda.Device.attributes); peak throughputs = "
                f"SMs x max SM clock x the per-SM rate of sm_{major}{minor} (NVIDIA architecture whitepapers)"),
        device_names=(name,),
    )


def with_compute_capability(attributes: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with the compute capability taken from ``props`` where they lack it.

    ``props`` is ``cupy.cuda.runtime.getDeviceProperties(i)`` (its ``major`` and ``minor``).  CuPy builds
    ``Device.attributes`` from the ``cudaDevAttr*`` names its runtime module exports, and it exports the
    compute capability as ``deviceAttributeComputeCapabilityMajor``/``Minor`` instead
    (``cupy_backends/cuda/api/_runtime_enum.pxd``), so the attribute dict may have no
    ``ComputeCapabilityMajor``/``Minor``; values the attributes do have are kept.
    """
    from_props = {key: props[field] for key, field in (("ComputeCapabilityMajor", "major"),
                                                       ("ComputeCapabilityMinor", "minor")) if field in props}
    return {**from_props, **attributes}


def device_name(props: Mapping[str, Any]) -> str:
    """The device's name from ``getDeviceProperties`` (bytes, NUL-padded) as text."""
    name = props["name"]
    return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)


def recorded_descriptor(label: str, props: Mapping[str, Any],
                        attributes: Mapping[str, Any]) -> tuple[DeviceDescriptor | None, str | None]:
    """The descriptor a CUDA run records for its device ``label`` (``cuda:<name>:sm<XY>``), or why it has none.

    The package table's entry when the table names the device (data-sheet figures, as ``kernelbench import
    miopen`` records them), else the one :func:`descriptor_from_attributes` builds from ``attributes``
    (``cupy.cuda.Device(i).attributes``) and ``props`` (``getDeviceProperties(i)``).

    Returns:
        ``(descriptor, None)``, or ``(None, message)`` when neither describes the device: the message is the
        :class:`~kernelbench.errors.InputError` :func:`descriptor_from_attributes` raised.
    """
    if table_id(label) in table():
        return descriptor(label), None
    try:
        return descriptor_from_attributes(with_compute_capability(attributes, props), name=device_name(props)), None
    except InputError as exc:
        return None, str(exc)


def cuda_descriptor(device_index: int = 0, *, cupy: Any = None) -> DeviceDescriptor:
    """The descriptor of CUDA device ``device_index``, read from the device (not from the package's table).

    Raises:
        InputError: as :func:`descriptor_from_attributes`.
    """
    if cupy is None:
        import cupy
    props = cupy.cuda.runtime.getDeviceProperties(device_index)
    attributes = with_compute_capability(cupy.cuda.Device(device_index).attributes, props)
    return descriptor_from_attributes(attributes, name=device_name(props))
