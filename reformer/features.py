"""Problem -> tokens: which fields become tokens, derived fields, normalisation, encoding.

Every problem becomes the same sequence of tokens, one per field:

* categorical tokens (``direction``, ``dtype``, ``layout``) carry an integer id
  into the field's vocabulary; id 0 means "a value not seen in training";
* numeric tokens carry ``(log2(1 + x) - mean) / std`` with ``mean``/``std``
  from the training split only (``std`` of a constant field, up to round-off, is taken as 1).

Derived tokens (see :data:`DERIVED_TOKENS`) are computed from the fields with
plain arithmetic so the same code serves whole columns (numpy arrays) and a
single problem (Python scalars).

Device tokens (:mod:`reformer.device_features`) follow the problem's: categorical
ones after the problem's categorical tokens, numeric ones after its numeric tokens.
An encoder has them only when its training problems span more than one device;
it then needs each problem's ``device`` label and saves the descriptors of its
training devices, so it can encode them, and any device the descriptor table (or
``--device-spec``) describes, later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kernelbench.devices import DeviceDescriptor
from kernelbench.errors import InputError
from kernelbench.problem import CATEGORICAL_FIELDS, DERIVED_FIELDS, INT_FIELDS
from reformer.device_features import (
    DEVICE_CATEGORICAL_TOKENS,
    DEVICE_NUMERIC_TOKENS,
    DEVICE_PAIR_TOKENS,
    DEVICE_TOKENS,
    descriptors_from_json,
    descriptors_json,
    find_descriptor,
    pair_values,
    spec_columns,
)

#: Numeric tokens taken as they are from the problem record.
FIELD_TOKENS = (*INT_FIELDS, *DERIVED_FIELDS)
#: Tokens computed from the fields: the implicit-GEMM view per group, work and traffic, and
#: alignment (log2 of the largest power of two dividing a size: GPU kernels tile by powers of two).
DERIVED_TOKENS = (
    "gemm_m",
    "gemm_n",
    "gemm_k",
    "flops",
    "bytes",
    "intensity",
    "pow2_cin",
    "pow2_cout",
    "pow2_gemm_m",
    "pow2_gemm_n",
    "pow2_gemm_k",
)
#: Relative spread of log2(1 + x) below which a numeric token counts as constant.
CONSTANT_TOLERANCE = 1e-9
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def derived_values(f: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DERIVED_TOKENS` of problems given by field values (arrays or scalars).

    Implicit GEMM per group (``C' = in_channels / groups``, ``K' = out_channels / groups``,
    ``R = filter volume``): fwd ``M = N * out volume, N = K', K = C' * R``;
    bwd_data ``M = N * in volume, N = C', K = K' * R``; bwd_weights
    ``M = K', N = C' * R, K = N * out volume``.  ``flops`` counts 2 per
    multiply-add of the whole convolution (same for all directions),
    ``bytes`` the elements of x, w and y once each times the element size,
    ``intensity = flops / bytes``.  ``pow2_x`` is ``log2`` of the largest power of two dividing
    ``x`` (``cin = C'``, ``cout = K'``).
    """
    out_vol = f["out_d"] * f["out_h"] * f["out_w"]
    in_vol = f["in_d"] * f["in_h"] * f["in_w"]
    filt = f["filter_d"] * f["filter_h"] * f["filter_w"]
    cg = f["in_channels"] // f["groups"]
    kg = f["out_channels"] // f["groups"]
    direction = f["direction"]
    # Masks times formulas (not np.where): the same code stays plain Python arithmetic for one
    # problem's scalars, which the single-problem inference path (reformer.inference) relies on.
    fwd, bwd_data, bwd_weights = direction == "fwd", direction == "bwd_data", direction == "bwd_weights"
    gemm_m = fwd * (f["batch"] * out_vol) + bwd_data * (f["batch"] * in_vol) + bwd_weights * kg
    gemm_n = fwd * kg + bwd_data * cg + bwd_weights * (cg * filt)
    gemm_k = fwd * (cg * filt) + bwd_data * (kg * filt) + bwd_weights * (f["batch"] * out_vol)
    dtype = f["dtype"]
    if isinstance(dtype, str):
        element = float(BYTES_PER_ELEMENT.get(dtype, 4))
    else:
        element = np.array([BYTES_PER_ELEMENT.get(str(d), 4) for d in np.atleast_1d(dtype)], dtype=np.float64)
    flops = 2.0 * f["batch"] * f["out_channels"] * out_vol * cg * filt
    elements = 1.0 * f["batch"] * f["in_channels"] * in_vol + 1.0 * f["out_channels"] * cg * filt
    elements = elements + 1.0 * f["batch"] * f["out_channels"] * out_vol
    moved = elements * element

    def pow2(x: Any) -> Any:
        if isinstance(x, int):  # one problem's scalars stay plain Python (see above)
            return (x & -x).bit_length() - 1
        x = np.asarray(x, dtype=np.int64)
        return np.log2(x & -x)

    return {
        "pow2_cin": pow2(cg),
        "pow2_cout": pow2(kg),
        "pow2_gemm_m": pow2(gemm_m),
        "pow2_gemm_n": pow2(gemm_n),
        "pow2_gemm_k": pow2(gemm_k),
        "gemm_m": gemm_m,
        "gemm_n": gemm_n,
        "gemm_k": gemm_k,
        "flops": flops,
        "bytes": moved,
        "intensity": flops / moved,
    }


#: Integer-valued numeric tokens that may also get an embedding of their exact value.
EXACT_VALUE_TOKENS = FIELD_TOKENS + tuple(t for t in DERIVED_TOKENS if t.startswith("pow2_"))
#: A value needs this many training problems to get its own embedding.
MIN_VALUE_COUNT = 10


@dataclasses.dataclass(frozen=True, eq=False)
class EncodedProblems:
    """Model inputs: ``categorical`` int64 ``[n, n_categorical]``, ``numeric`` float32 ``[n, n_numeric]``,
    ``value_ids`` int64 ``[n, n_numeric]`` (exact-value ids of numeric tokens, 0 = no own embedding)."""

    categorical: np.ndarray
    numeric: np.ndarray
    value_ids: np.ndarray

    def __len__(self) -> int:
        return self.categorical.shape[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeatureEncoder:
    """The token design of one model, with the normalisation learnt from its training split.

    Attributes:
        categorical: categorical token names, in token order (they come first).
        vocabularies: per categorical token, the known values; a value's id is its index + 1.
        numeric: numeric token names, in token order after the categorical ones.
        mean, std: of ``log2(1 + value)`` per numeric token on the training split.
        value_vocabularies: per numeric token, the exact values (sorted) that have their own
            embedding; a value's id is its index + 1, others get 0.
        devices: ``(label, descriptor)`` of the training devices, sorted by label, when the
            encoder has device tokens (else empty).
    """

    categorical: tuple[str, ...]
    vocabularies: tuple[tuple[str, ...], ...]
    numeric: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    value_vocabularies: tuple[tuple[float, ...], ...]
    devices: tuple[tuple[str, DeviceDescriptor], ...] = ()

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.categorical + self.numeric

    @property
    def device_tokens(self) -> tuple[str, ...]:
        """The encoder's device tokens (:mod:`reformer.device_features`), in token order; empty: it ignores the device."""
        return tuple(t for t in self.tokens if t in DEVICE_TOKENS)

    def descriptor(self, label: str, given: Mapping[str, DeviceDescriptor] | None = None) -> DeviceDescriptor:
        """The descriptor the encoder uses for device ``label`` (:func:`reformer.device_features.find_descriptor`).

        Raises:
            InputError: neither the training devices, ``given`` nor the package's table describe it.
        """
        return find_descriptor(label, trained=dict(self.devices), given=given)

    @property
    def n_categories(self) -> tuple[int, ...]:
        """Embedding table size per categorical token (vocabulary + the unknown id 0)."""
        return tuple(len(v) + 1 for v in self.vocabularies)

    @property
    def n_values(self) -> tuple[int, ...]:
        """Exact-value embedding table size per numeric token (values + the "other" id 0)."""
        return tuple(len(v) + 1 for v in self.value_vocabularies)

    @classmethod
    def fit(
        cls,
        columns: Mapping[str, np.ndarray],
        *,
        derived: Sequence[str] = DERIVED_TOKENS,
        drop_constant: bool = True,
        exact_values: int = 0,
        device_tokens: bool = True,
        descriptors: Mapping[str, DeviceDescriptor] | None = None,
    ) -> FeatureEncoder:
        """Learn vocabularies and normalisation from the training problems' ``columns``.

        ``drop_constant`` leaves out tokens with a single value in training
        (e.g. ``direction`` on a forward-only dataset): they carry no
        information and cost inference time.  ``exact_values > 0`` gives the
        most frequent values (at most that many per token, each seen in at
        least :data:`MIN_VALUE_COUNT` training problems) of integer-valued
        tokens an embedding of their own, so the model can single out e.g.
        a 1x1 filter or a channel count without carving it from a smooth input.

        ``device_tokens`` adds the device tokens (:mod:`reformer.device_features`) when the
        ``device`` column holds more than one label; each label's descriptor comes from
        ``descriptors`` (e.g. the dataset's metadata), else from the package's table.

        Raises:
            InputError: ``derived`` names an unknown token, or a training device has no descriptor.
        """
        unknown = [d for d in derived if d not in DERIVED_TOKENS]
        if unknown:
            raise InputError(f"unknown derived token(s) {', '.join(unknown)}; known: {', '.join(DERIVED_TOKENS)}")
        categorical_columns = {name: columns[name] for name in CATEGORICAL_FIELDS}
        numeric_names = FIELD_TOKENS + tuple(derived)
        raw = _numeric_columns(columns, numeric_names)
        labels = sorted({str(v) for v in columns["device"]}) if device_tokens and "device" in columns else []
        # One device: every device token is constant or a function of the problem alone, so none is added and a
        # single-device model stays exactly what it was before device tokens existed.
        devices = training_descriptors(labels, descriptors)
        if devices:
            device_columns = _device_columns(columns, dict(devices))
            categorical_columns.update({name: device_columns[name] for name in DEVICE_CATEGORICAL_TOKENS})
            raw.update({name: device_columns[name] for name in DEVICE_NUMERIC_TOKENS})
            numeric_names += DEVICE_NUMERIC_TOKENS
        categorical, vocabularies = [], []
        for name, column in categorical_columns.items():
            values = tuple(sorted({str(v) for v in column}))
            if drop_constant and len(values) < 2:
                continue
            categorical.append(name)
            vocabularies.append(values)
        numeric, mean, std, value_vocabularies = [], [], [], []
        for name in numeric_names:
            logged = np.log2(1.0 + raw[name].astype(np.float64))
            # Constant up to round-off (a derived ratio computed along different paths differs in the last
            # bits): its std would be ~1e-16 and standardising by it would blow the round-off up to O(1).
            constant = np.ptp(logged) <= CONSTANT_TOLERANCE * max(1.0, float(np.abs(logged).max()))
            if drop_constant and constant:
                continue
            numeric.append(name)
            mean.append(float(logged.mean()))
            std.append(1.0 if constant else float(logged.std()))
            vocabulary: tuple[float, ...] = ()
            if exact_values > 0 and name in EXACT_VALUE_TOKENS:  # never a device token: it stays a smooth input
                values, counts = np.unique(raw[name].astype(np.float64), return_counts=True)
                frequent = np.argsort(-counts, kind="stable")[:exact_values]
                frequent = frequent[counts[frequent] >= MIN_VALUE_COUNT]
                vocabulary = tuple(float(v) for v in np.sort(values[frequent]))
            value_vocabularies.append(vocabulary)
        return cls(
            categorical=tuple(categorical),
            vocabularies=tuple(vocabularies),
            numeric=tuple(numeric),
            mean=tuple(mean),
            std=tuple(std),
            value_vocabularies=tuple(value_vocabularies),
            devices=devices,
        )

    def encode(self, columns: Mapping[str, Any], *,
               descriptors: Mapping[str, DeviceDescriptor] | None = None) -> EncodedProblems:
        """Encode problems given as columns (arrays of equal length, or scalars for one problem).

        An encoder with device tokens reads the ``device`` column; ``descriptors`` describe devices
        it was not trained on (else the package's table does, see :meth:`descriptor`).

        Raises:
            InputError: the encoder has device tokens and ``device`` is missing or names a device
                without a descriptor.
        """
        columns = {k: np.atleast_1d(np.asarray(v)) for k, v in columns.items()}
        n = len(next(iter(columns.values())))
        if self.device_tokens:
            columns.update(self.device_columns(columns, descriptors=descriptors))
        categorical = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, (name, vocabulary) in enumerate(zip(self.categorical, self.vocabularies)):
            ids = {value: i + 1 for i, value in enumerate(vocabulary)}
            categorical[:, j] = [ids.get(str(v), 0) for v in columns[name]]
        raw = _numeric_columns(columns, self.numeric)
        numeric = np.empty((n, len(self.numeric)), dtype=np.float32)
        value_ids = np.zeros((n, len(self.numeric)), dtype=np.int64)
        for j, name in enumerate(self.numeric):
            values = raw[name].astype(np.float64)
            numeric[:, j] = (np.log2(1.0 + values) - self.mean[j]) / self.std[j]
            vocabulary = np.asarray(self.value_vocabularies[j], dtype=np.float64)
            if len(vocabulary):
                at = np.minimum(np.searchsorted(vocabulary, values), len(vocabulary) - 1)
                value_ids[:, j] = np.where(vocabulary[at] == values, at + 1, 0)
        return EncodedProblems(categorical=categorical, numeric=numeric, value_ids=value_ids)

    def device_columns(self, columns: Mapping[str, Any], *,
                       descriptors: Mapping[str, DeviceDescriptor] | None = None) -> dict[str, np.ndarray]:
        """Every device token's column (:data:`reformer.device_features.DEVICE_TOKENS`) for problems given as columns.

        Raises:
            InputError: no ``device`` column, or a device without a descriptor.
        """
        if "device" not in columns:
            raise self.missing_device()
        labels = np.atleast_1d(np.asarray(columns["device"])).astype(str)
        found = {label: self.descriptor(label, descriptors) for label in np.unique(labels)}
        return _device_columns(columns, found)

    def missing_device(self) -> InputError:
        """The error for a problem given without its device to an encoder with device tokens."""
        return InputError(f"the model reads the device a problem runs on (trained on {', '.join(dict(self.devices))}); "
                          "give each problem's device label (--device LABEL, a device column)")

    def to_json(self) -> dict[str, Any]:
        data = {
            "categorical": list(self.categorical),
            "vocabularies": [list(v) for v in self.vocabularies],
            "numeric": list(self.numeric),
            "mean": list(self.mean),
            "std": list(self.std),
            "value_vocabularies": [list(v) for v in self.value_vocabularies],
        }
        if self.devices:  # absent for encoders without device tokens: their config.json reads as before
            data["devices"] = descriptors_json(dict(self.devices))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        return cls(
            categorical=tuple(data["categorical"]),
            vocabularies=tuple(tuple(v) for v in data["vocabularies"]),
            numeric=tuple(data["numeric"]),
            mean=tuple(float(x) for x in data["mean"]),
            std=tuple(float(x) for x in data["std"]),
            value_vocabularies=tuple(tuple(float(x) for x in v) for v in data["value_vocabularies"]),
            devices=tuple(sorted(descriptors_from_json(data.get("devices") or {}).items())),
        )


def _training_descriptor(label: str, given: Mapping[str, DeviceDescriptor] | None, *,
                         without_tokens: str | None = "--no-device-tokens") -> DeviceDescriptor:
    """A training device's descriptor: ``given`` (the dataset's metadata), else the package's table.

    Raises:
        InputError: neither has one (the message says how to record one, or to train without device tokens with
            the option ``without_tokens`` where the command has one).
    """
    try:
        return find_descriptor(label, trained={}, given=given)
    except InputError:
        alternative = f" or train without device tokens ({without_tokens})" if without_tokens else ""
        raise InputError(f"no descriptor for device {label}, which device tokens need: record one when importing "
                         "(kernelbench import ... --device-spec FILE, format: docs/device-descriptors.md)"
                         f"{alternative}") from None


def training_descriptors(labels: Sequence[str], given: Mapping[str, DeviceDescriptor] | None, *,
                         without_tokens: str | None = "--no-device-tokens") -> tuple[tuple[str, DeviceDescriptor], ...]:
    """``(label, descriptor)`` of every training device when there are several (device tokens are added only
    then; ``()`` for one), as :meth:`FeatureEncoder.fit` uses them; a command calls it before any training to
    refuse early what the fit would.

    Raises:
        InputError: as :func:`_training_descriptor`.
    """
    if len(labels) < 2:
        return ()
    return tuple((label, _training_descriptor(label, given, without_tokens=without_tokens)) for label in labels)


def _derived_columns(columns: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`derived_values` of problems given as columns (integer fields as int64)."""
    fields = {k: np.asarray(v) for k, v in columns.items()}
    for k in (*INT_FIELDS, *DERIVED_FIELDS):
        fields[k] = fields[k].astype(np.int64)
    return {**fields, **derived_values(fields)}


def _numeric_columns(columns: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The requested numeric columns, computing derived ones only when asked for (device tokens are in ``columns``)."""
    out = {name: np.asarray(columns[name]) for name in names if name in FIELD_TOKENS or name in DEVICE_NUMERIC_TOKENS}
    if any(name in DERIVED_TOKENS for name in names):
        out.update({k: np.asarray(v) for k, v in _derived_columns(columns).items() if k in names and k in DERIVED_TOKENS})
    return out


def _device_columns(columns: Mapping[str, Any], descriptors: Mapping[str, DeviceDescriptor]) -> dict[str, np.ndarray]:
    """Every device token's column for problems given as columns, with ``descriptors`` by device label."""
    labels = np.atleast_1d(np.asarray(columns["device"])).astype(str)
    spec = spec_columns(labels, descriptors)
    pairs = pair_values(_derived_columns(columns), spec)
    return {**spec, **{k: np.asarray(v, dtype=np.float64) for k, v in pairs.items() if k in DEVICE_PAIR_TOKENS}}
