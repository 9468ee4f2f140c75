"""Device descriptors: what a GPU can do, from public specifications (``descriptors.toml``).

A :class:`DeviceDescriptor` describes one device with the same fields whatever
its vendor (compute units, clock, peak throughputs, memory bandwidth, caches,
wavefront size, matrix cores).  The package's table holds the devices of
MIOpen's find-dbs and common NVIDIA data-centre GPUs, each with its source;
:func:`descriptor` finds one by the dataset's ``device`` label.  A device the
table lacks is described by a user file (:func:`load_device_spec`, the
``--device-spec FILE`` option); the CUDA backend builds one from the device
itself (:mod:`kernelbench.gpu.descriptor`).  File format: docs/device-descriptors.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from kernelbench.errors import InputError

#: The format documentation, named in error messages.
FORMAT_DOC = "docs/device-descriptors.md"
_TABLE = "descriptors.toml"


@dataclasses.dataclass(frozen=True)
class DeviceDescriptor:
    """Public specifications of one device.  Construction validates every field.

    Attributes:
        id: the table's name for it (``gfx908_120``, ``sm_80``) or a user file's.
        name: product name.
        vendor: ``AMD`` or ``NVIDIA``.
        arch: ``gfx908``, ``sm_80``...
        compute_units: CUs (AMD) or SMs (NVIDIA) on the device.
        clock_mhz: peak engine (boost) clock.
        peak_fp32_tflops: vector (non-matrix) FP32 peak.
        peak_fp16_tflops, peak_bf16_tflops, peak_int8_tops: dense peak, with
            matrix cores where present, no sparsity; ``None``: no native support.
        mem_bandwidth_gbs: peak memory bandwidth, GB/s (10^9 bytes).
        l2_mib: L2 (last level below the CUs; memory-side caches not counted), MiB.
        lds_kib_per_cu: LDS / shared memory per CU or SM, KiB.
        wavefront: wavefront (warp) size in lanes.
        matrix_cores: matrix (tensor) cores present.
        source: where the figures come from.
        device_names: CUDA device names this describes (NVIDIA table entries).

    Raises:
        InputError: a field is missing its type or range; the message names it.
    """

    id: str
    name: str
    vendor: str
    arch: str
    compute_units: int
    clock_mhz: float
    peak_fp32_tflops: float
    mem_bandwidth_gbs: float
    l2_mib: float
    lds_kib_per_cu: float
    wavefront: int
    matrix_cores: bool
    source: str
    peak_fp16_tflops: float | None = None
    peak_bf16_tflops: float | None = None
    peak_int8_tops: float | None = None
    device_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InputError:
            return InputError(f"device descriptor {self.id!r}: {field}={getattr(self, field)!r} {why}")

        for field in ("id", "name", "vendor", "arch", "source"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise bad(field, "must be a non-empty string")
        for field in ("compute_units", "wavefront"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(field, "must be a positive integer")
        for field in NUMBER_FIELDS:
            value = getattr(self, field)
            if value is None and field in OPTIONAL_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise bad(field, "must be a positive number" + (" or left out" if field in OPTIONAL_FIELDS else ""))
        if not isinstance(self.matrix_cores, bool):
            raise bad("matrix_cores", "must be true or false")
        if not isinstance(self.device_names, tuple) or not all(isinstance(n, str) for n in self.device_names):
            raise bad("device_names", "must be a list of strings")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (dataset metadata); ``None`` figures are kept as null."""
        return {**dataclasses.asdict(self), "device_names": list(self.device_names)}


#: Fields that are numbers (units in the name); the optional ones may be left out.
NUMBER_FIELDS = ("clock_mhz", "peak_fp32_tflops", "peak_fp16_tflops", "peak_bf16_tflops", "peak_int8_tops",
                 "mem_bandwidth_gbs", "l2_mib", "lds_kib_per_cu")
OPTIONAL_FIELDS = ("peak_fp16_tflops", "peak_bf16_tflops", "peak_int8_tops", "device_names")
FIELDS = tuple(f.name for f in dataclasses.fields(DeviceDescriptor))


def from_mapping(values: Mapping[str, Any], *, id: str, where: str) -> DeviceDescriptor:  # noqa: A002 - the field
    """A descriptor from a TOML table; ``where`` names it in errors (a file, a table).

    Raises:
        InputError: a required field is missing, a key is unknown, or a value is invalid.
    """
    values = dict(values)
    values.setdefault("id", id)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)} "
                         f"(format: {FORMAT_DOC})")
    missing = [f for f in FIELDS if f not in values and f not in OPTIONAL_FIELDS]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)} (format: {FORMAT_DOC})")
    names = values.get("device_names", ())
    values["device_names"] = tuple(names) if isinstance(names, list) else names
    try:
        return DeviceDescriptor(**values)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


@functools.cache
def table() -> dict[str, DeviceDescriptor]:
    """The package's descriptors by id (``descriptors.toml``)."""
    text = resources.files(__package__).joinpath(_TABLE).read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    return {key: from_mapping(values, id=key, where=f"{_TABLE} [{key}]") for key, values in raw.items()}


_MIOPEN_LABEL = re.compile(r"miopen:(?P<arch>gfx[0-9a-f]+):(?P<cu>[1-9][0-9]*)")
_CUDA_LABEL = re.compile(r"cuda:(?P<name>.+):sm(?P<cc>[0-9]+)")


def table_id(label: str) -> str | None:
    """The table id a device label names, or ``None`` when the label has no known form.

    ``miopen:gfx908:120`` -> ``gfx908_120``; a find-db file name (``gfx90878.HIP.fdb.txt``,
    ``gfx906_60``) -> its ``<arch>_<CUs>``; a table id is itself.  CUDA labels
    (``cuda:<name>:sm80``) resolve through the entries' ``device_names``.
    """
    if label in table():
        return label
    match = _MIOPEN_LABEL.fullmatch(label)
    if match:
        return f"{match['arch']}_{match['cu']}"
    match = _CUDA_LABEL.fullmatch(label)
    if match:
        for key, entry in table().items():
            if match["name"] in entry.device_names and entry.arch == f"sm_{match['cc']}":
                return key
        return None
    from kernelbench.importers.miopen_device import device_from_file_name

    device = device_from_file_name(label)
    return None if device is None else f"{device.arch}_{device.num_cu}"


def descriptor(label: str) -> DeviceDescriptor:
    """The package's descriptor of the device ``label`` (a dataset ``device`` value or a table id).

    Raises:
        InputError: the table has no descriptor for it (the message says how to give one).
    """
    key = table_id(label)
    found = table().get(key) if key is not None else None
    if found is None:
        raise InputError(f"no descriptor for device {label}; pass --device-spec FILE (format: {FORMAT_DOC}); "
                         f"known: {', '.join(table())}")
    return found


def load_device_spec(path: str | os.PathLike[str]) -> DeviceDescriptor:
    """A descriptor from a user's TOML file (the fields at the top level; ``id`` defaults to the file's stem).

    Raises:
        InputError: the file is missing, not TOML, or a field is missing, unknown or invalid.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such device spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the device spec ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not a TOML device spec ({exc}; format: {FORMAT_DOC})") from None
    return from_mapping(raw, id=path.stem, where=str(path))


def resolve_descriptor(label: str, *, device_spec: str | os.PathLike[str] | None = None) -> DeviceDescriptor:
    """What ``--device-spec`` means for a command: the file's descriptor if given, else the table's for ``label``.

    Raises:
        InputError: the file is invalid, or no file was given and the table lacks ``label``.
    """
    if device_spec is not None:
        return load_device_spec(device_spec)
    return descriptor(label)


#: The specifications :func:`distance` compares: every number on a log2 scale, ``matrix_cores`` as 0 / 1.
DISTANCE_FIELDS = ("compute_units", "clock_mhz", "peak_fp32_tflops", "peak_fp16_tflops", "peak_bf16_tflops",
                   "peak_int8_tops", "mem_bandwidth_gbs", "l2_mib", "lds_kib_per_cu", "wavefront", "matrix_cores")


def spec_vector(device: DeviceDescriptor) -> tuple[float, ...]:
    """``device``'s :data:`DISTANCE_FIELDS` as numbers: log2 of each figure, ``matrix_cores`` 1 or 0.

    A peak the device has no native support for (``None``) is taken as its FP32 peak: such work runs
    through the FP32 units (or is emulated, which the distance does not try to tell apart).
    """
    out = []
    for field in DISTANCE_FIELDS:
        value = getattr(device, field)
        if field == "matrix_cores":
            out.append(1.0 if value else 0.0)
            continue
        out.append(math.log2(device.peak_fp32_tflops if value is None else value))
    return tuple(out)


@functools.cache
def _spreads() -> tuple[float, ...]:
    """Per field of :func:`spec_vector`, its standard deviation over the package's table (1 where constant)."""
    vectors = [spec_vector(d) for d in table().values()]
    spreads = []
    for values in zip(*vectors):
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        spreads.append(std if std > 1e-12 else 1.0)
    return tuple(spreads)


def nearest_first(label: str, others: Iterable[str], *,
                  descriptors: Mapping[str, DeviceDescriptor] | None = None,
                  distance_of: Callable[[str, str], float] | None = None) -> list[str]:
    """``others`` (device labels, duplicates dropped) ordered by their distance from the device ``label``,
    nearest first, ties by label: the one definition of "the nearest device" (the lookup baseline, the
    candidate rule's back-off for a device it never saw).

    The distance is :func:`distance` between descriptors (``descriptors``: devices by label beyond the
    package's table, winning where both name one), or ``distance_of(label, other)`` when given.

    Raises:
        InputError: a label has no descriptor (without ``distance_of``).
    """
    if distance_of is None:
        known = dict(descriptors or {})

        def of(name: str) -> DeviceDescriptor:
            return known[name] if name in known else descriptor(name)

        target = of(label)
        return sorted(set(others), key=lambda other: (distance(target, of(other)), other))
    return sorted(set(others), key=lambda other: (distance_of(label, other), other))


def distance(a: DeviceDescriptor, b: DeviceDescriptor) -> float:
    """How different two devices are: the root mean square over :data:`DISTANCE_FIELDS` of the difference of
    their :func:`spec_vector`, each field divided by its spread over the package's table (so a field that
    varies little between GPUs counts as much as one that varies a lot, and user devices do not move the
    scale).  0 for identical specifications; symmetric."""
    terms = [((x - y) / s) ** 2 for x, y, s in zip(spec_vector(a), spec_vector(b), _spreads())]
    return math.sqrt(sum(terms) / len(terms))
