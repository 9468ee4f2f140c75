"""Device -> tokens: what a model trained on several GPUs reads about the GPU a problem runs on.

A matrix row is a (problem, device) pair (:mod:`reformer.data`); its ``device``
label names a :class:`kernelbench.devices.DeviceDescriptor` (public
specifications).  This module turns a descriptor, and a problem on it, into
token values.  :class:`reformer.features.FeatureEncoder` adds them beside the
problem tokens when the training problems span more than one device (on one
device every one of them is a function of the problem alone or constant, so a
single-device model is exactly what it was before device tokens existed).

Tokens (names and units; numeric ones are log-scaled and standardised by the encoder like every other):

* categorical, from the descriptor:
  ``device_family`` -- the architecture's family, :func:`arch_family`
  (``gfx908`` -> ``gfx9``, ``gfx1030`` -> ``gfx10``, ``sm_80`` -> ``sm_8``), so an
  unseen architecture of a known family gets a known value; ``device_matrix_cores``
  (``true``/``false``).
* numeric, from the descriptor (:data:`DEVICE_SPEC_TOKENS`): ``device_<field>`` for the
  descriptor's figures, units in the name (``compute_units``, ``clock_mhz``, the four peaks,
  ``mem_bandwidth_gbs``, ``l2_mib``, ``lds_kib_per_cu``, ``wavefront``).  A peak the descriptor
  leaves out (no native support for the type) takes the FP32 peak: the library then computes in
  FP32 at best.
* numeric, problem x device (:data:`DEVICE_PAIR_TOKENS`), which carry over between devices
  because they put the problem on the device's scale:

  - ``device_peak_tflops``: the peak for the problem's dtype (tera-ops/s; int8 in TOPS);
  - ``device_compute_ns = flops / peak`` and ``device_memory_ns = bytes / mem_bandwidth`` (ns),
    ``device_roofline_ns`` the larger of the two (``flops`` and ``bytes`` as in
    :func:`reformer.features.derived_values`: 2 per multiply-add, x, w and y once each);
  - ``device_gemm_waves``: output tiles of :data:`GEMM_TILE` x :data:`GEMM_TILE` of the implicit
    GEMM (``ceil(M / tile) * ceil(N / tile) * groups``) per compute unit, i.e. how many waves of
    work-groups the device runs (below 1: compute units idle);
  - ``device_l2_footprint``: ``bytes / L2 size`` (below 1: the tensors fit in L2).

Functions take scalars (one problem, the fast inference path) or numpy arrays (columns).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kernelbench.devices import DeviceDescriptor, descriptor, from_mapping
from kernelbench.errors import InputError

DEVICE_CATEGORICAL_TOKENS = ("device_family", "device_matrix_cores")
#: Descriptor fields that become numeric tokens ``device_<field>``.
SPEC_FIELDS = ("compute_units", "clock_mhz", "peak_fp32_tflops", "peak_fp16_tflops", "peak_bf16_tflops",
               "peak_int8_tops", "mem_bandwidth_gbs", "l2_mib", "lds_kib_per_cu", "wavefront")
DEVICE_SPEC_TOKENS = tuple(f"device_{f}" for f in SPEC_FIELDS)
DEVICE_PAIR_TOKENS = ("device_peak_tflops", "device_compute_ns", "device_memory_ns", "device_roofline_ns",
                      "device_gemm_waves", "device_l2_footprint")
DEVICE_NUMERIC_TOKENS = DEVICE_SPEC_TOKENS + DEVICE_PAIR_TOKENS
DEVICE_TOKENS = DEVICE_CATEGORICAL_TOKENS + DEVICE_NUMERIC_TOKENS
#: Problem fields (and :func:`reformer.features.derived_values` outputs) the pair tokens read.
PAIR_INPUTS = ("dtype", "groups", "flops", "bytes", "gemm_m", "gemm_n")
#: The token holding each dtype's peak (a dtype not listed uses FP32's).
PEAK_TOKEN = {"fp32": "device_peak_fp32_tflops", "fp16": "device_peak_fp16_tflops",
              "bf16": "device_peak_bf16_tflops", "int8": "device_peak_int8_tops"}
#: Side of the nominal output tile of an implicit-GEMM work-group (``device_gemm_waves``).
GEMM_TILE = 64
_MIB = 2**20


def arch_family(arch: str) -> str:
    """The family of an architecture name: its major version with the prefix.

    AMD names are ``gfx`` + major + two characters (minor, stepping), the major having one digit
    up to gfx9 and two from gfx10 (``gfx803`` -> ``gfx8``, ``gfx90a`` -> ``gfx9``, ``gfx1030`` ->
    ``gfx10``); NVIDIA's ``sm_<major><minor>`` gives ``sm_<major>`` (``sm_80`` -> ``sm_8``).
    Other names are their own family.
    """
    if arch.startswith("gfx") and len(arch) > 5:
        return arch[:-2]
    if arch.startswith("sm_") and len(arch) > 4:
        return arch[:-1]
    return arch


def spec_values(found: DeviceDescriptor) -> dict[str, Any]:
    """The descriptor's tokens (:data:`DEVICE_CATEGORICAL_TOKENS` as strings, :data:`DEVICE_SPEC_TOKENS` as floats)."""
    fp32 = float(found.peak_fp32_tflops)
    values: dict[str, Any] = {
        "device_family": arch_family(found.arch),
        "device_matrix_cores": "true" if found.matrix_cores else "false",
    }
    for field in SPEC_FIELDS:
        value = getattr(found, field)
        values[f"device_{field}"] = fp32 if value is None else float(value)
    return values


def pair_values(f: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DEVICE_PAIR_TOKENS` of problems ``f`` (:data:`PAIR_INPUTS`) on devices ``spec`` (:func:`spec_values`).

    Scalars give plain Python floats (one problem); arrays give arrays, ``spec``'s then one value per row.
    """
    dtype = f["dtype"]
    if isinstance(dtype, str):
        peak = spec[PEAK_TOKEN.get(dtype, "device_peak_fp32_tflops")]
        maximum: Any = max
        ceil: Any = math.ceil
    else:
        dtype = np.asarray(dtype).astype(str)
        peak = np.asarray(spec["device_peak_fp32_tflops"], dtype=np.float64)
        for name, token in PEAK_TOKEN.items():
            peak = np.where(dtype == name, spec[token], peak)
        maximum, ceil = np.maximum, np.ceil
    compute_ns = f["flops"] / (peak * 1e3)  # flops / (TFLOP/s * 1e12) s = flops / (peak * 1e3) ns
    memory_ns = f["bytes"] / spec["device_mem_bandwidth_gbs"]  # bytes / (GB/s * 1e9) s = bytes / bw ns
    tiles = ceil(f["gemm_m"] / GEMM_TILE) * ceil(f["gemm_n"] / GEMM_TILE) * f["groups"]
    return {
        "device_peak_tflops": peak,
        "device_compute_ns": compute_ns,
        "device_memory_ns": memory_ns,
        "device_roofline_ns": maximum(compute_ns, memory_ns),
        "device_gemm_waves": tiles / spec["device_compute_units"],
        "device_l2_footprint": f["bytes"] / (spec["device_l2_mib"] * _MIB),
    }


def spec_columns(labels: np.ndarray, descriptors: Mapping[str, DeviceDescriptor]) -> dict[str, np.ndarray]:
    """:func:`spec_values` per row of ``labels`` (strings, one per problem), from ``descriptors`` by label."""
    unique, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    per_label = [spec_values(descriptors[label]) for label in unique]
    return {name: np.asarray([values[name] for values in per_label])[inverse]
            for name in DEVICE_CATEGORICAL_TOKENS + DEVICE_SPEC_TOKENS}


def find_descriptor(label: str, *, trained: Mapping[str, DeviceDescriptor],
                    given: Mapping[str, DeviceDescriptor] | None = None) -> DeviceDescriptor:
    """The descriptor of device ``label`` for a model: the one it was trained with (``trained``), else
    ``given`` (``--device-spec``, a dataset's metadata), else the package's table.

    A training device always keeps the descriptor it was trained with, so a model scores its own
    devices the same way whatever the table says later.

    Raises:
        InputError: none has it (the message names the label and says to pass --device-spec FILE).
    """
    if label in trained:
        return trained[label]
    if given is not None and label in given:
        return given[label]
    return descriptor(label)


def dataset_descriptors(metadata: Mapping[str, Any]) -> dict[str, DeviceDescriptor]:
    """The descriptors a dataset's metadata records by device label (``kernelbench import miopen`` records
    one, from the table or ``--device-spec``; ``kernelbench merge`` keeps each source's).  Labels recorded
    without a descriptor, or with several different ones, are left out (the table or --device-spec decide).
    """
    found: dict[str, list[Mapping[str, Any]]] = {}

    def add(label: Any, description: Any) -> None:
        if isinstance(label, str) and isinstance(description, Mapping) and isinstance(description.get("descriptor"), Mapping):
            found.setdefault(label, []).append(description["descriptor"])

    device = metadata.get("device")
    if isinstance(device, Mapping):
        add(device.get("label"), device)
    devices = metadata.get("devices")
    if isinstance(devices, Mapping):
        for label, descriptions in devices.items():
            for description in descriptions if isinstance(descriptions, list) else [descriptions]:
                add(label, description)
    out = {}
    for label, values in found.items():
        if all(v == values[0] for v in values):
            raw = {k: v for k, v in values[0].items() if v is not None}
            out[label] = from_mapping(raw, id=str(raw.get("id", label)), where=f"dataset metadata, device {label}")
    return out


def descriptors_json(descriptors: Mapping[str, DeviceDescriptor]) -> dict[str, dict[str, Any]]:
    """``{label: descriptor fields}`` for a model's config.json (read back by :func:`descriptors_from_json`)."""
    return {label: found.as_dict() for label, found in descriptors.items()}


def descriptors_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, DeviceDescriptor]:
    """The inverse of :func:`descriptors_json`.

    Raises:
        InputError: a saved descriptor is invalid (a hand-edited config.json).
    """
    out = {}
    for label, values in data.items():
        raw = {k: v for k, v in values.items() if v is not None}
        out[label] = from_mapping(raw, id=str(raw.get("id", label)), where=f"config.json, device {label}")
    return out


def spec_for_dataset(labels: Sequence[str], spec: DeviceDescriptor, *,
                     described: Callable[[str], bool]) -> dict[str, DeviceDescriptor]:
    """Which of a dataset's devices a ``--device-spec`` file describes: its only device, or else the only one
    ``described`` (the model's training devices, the dataset's metadata, the table) says nothing about.

    Raises:
        InputError: the dataset has several devices and not exactly one of them lacks a descriptor.
    """
    labels = sorted(set(labels))
    if len(labels) == 1:
        return {labels[0]: spec}
    missing = [label for label in labels if not described(label)]
    if len(missing) != 1:
        raise InputError(f"--device-spec describes one device, but the dataset has {len(labels)} "
                         f"({', '.join(labels)}) and {len(missing)} of them lack a descriptor; give a dataset of "
                         "one device")
    return {missing[0]: spec}
