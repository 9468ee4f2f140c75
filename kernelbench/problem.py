"""The convolution problem: one frozen record, validated, with a stable id.

A problem is always described in *forward* terms: ``in_*`` are the sizes of
the activation ``x`` fed to the forward convolution, ``out_*`` the sizes of its
output ``y``, and ``direction`` says which pass is measured
(``fwd``: y = conv(x, w); ``bwd_data``: dx from dy; ``bwd_weights``: dw from
x and dy).  Importers whose native format swaps inputs and outputs for the
backward passes (MIOpen does) convert to this convention.

2D problems carry ``spatial_dims == 2`` and the depth fields at their neutral
values (``in_d = filter_d = stride_d = dilation_d = 1``, ``pad_d = 0``).

Output sizes follow MIOpen's default convolution mode: the floor formula of
:func:`output_size`, clamped to at least 1.  The clamp only matters where the
dilated filter is larger than the padded input (the formula gives <= 0); MIOpen
records such problems in its find-db, so the model can hold them, but no
kernel of this project computes them (:attr:`ConvProblem.clamped_axes` tells
them apart, and problem spaces never generate them).

MIOpen has two more padding modes (``miopenPaddingSame``, ``miopenPaddingValid``;
``GetForwardOutputTensor`` in MIOpen's ``src/convolution.cpp``), which change
the output size when every dilation is 1: ``same`` gives ``ceil(in / stride)``,
``valid`` gives ``ceil((in - filter + 1) / stride)``.  Find-db keys do not
record the mode, only its output size, so the importer recognises it from the
sizes.  :attr:`ConvProblem.pad_mode` holds it; it is ``"default"`` for every
problem this project generates and is left out of :data:`FIELDS`, so the
``problem_id`` of a default-mode problem is the same as before the field existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from kernelbench.errors import InputError

DIRECTIONS = ("fwd", "bwd_data", "bwd_weights")
DTYPES = ("fp32", "fp16", "bf16", "int8")
LAYOUTS_2D = ("NCHW", "NHWC")
LAYOUTS_3D = ("NCDHW", "NDHWC")
LAYOUTS = LAYOUTS_2D + LAYOUTS_3D
#: MIOpen's padding modes (``miopenPaddingDefault/Same/Valid``); the first is every generated problem's.
PAD_MODES = ("default", "same", "valid")
DEFAULT_PAD_MODE = PAD_MODES[0]

#: Integer fields a user (or importer) sets; ``out_*`` are derived from them.
INT_FIELDS = (
    "spatial_dims",
    "batch",
    "in_channels",
    "out_channels",
    "groups",
    "in_d",
    "in_h",
    "in_w",
    "filter_d",
    "filter_h",
    "filter_w",
    "pad_d",
    "pad_h",
    "pad_w",
    "stride_d",
    "stride_h",
    "stride_w",
    "dilation_d",
    "dilation_h",
    "dilation_w",
)
CATEGORICAL_FIELDS = ("direction", "dtype", "layout")
#: Every input field but ``pad_mode``, in the canonical order used for ``problem_id``.
FIELDS = CATEGORICAL_FIELDS + INT_FIELDS
#: The padding-mode field: a dataset column and a :class:`ConvProblem` field, outside :data:`FIELDS` so that
#: ids, features and everything else keyed on :data:`FIELDS` stay as they were for default-mode problems.
PAD_MODE_FIELD = "pad_mode"
DERIVED_FIELDS = ("out_d", "out_h", "out_w")

#: Defaults for fields a partial description may leave out (a 2D, ungrouped,
#: unpadded, unit-stride fp32 NCHW forward convolution).
DEFAULTS: dict[str, Any] = {
    "direction": "fwd",
    "dtype": "fp32",
    "layout": None,  # NCHW for 2D, NCDHW for 3D
    "spatial_dims": 2,
    "groups": 1,
    "in_d": 1,
    "filter_d": 1,
    "pad_d": 0,
    "pad_h": 0,
    "pad_w": 0,
    "stride_d": 1,
    "stride_h": 1,
    "stride_w": 1,
    "dilation_d": 1,
    "dilation_h": 1,
    "dilation_w": 1,
}
REQUIRED_FIELDS = tuple(f for f in FIELDS if f not in DEFAULTS)

#: Largest value of an integer field (and of a derived output size): the dataset stores them as
#: int32 (``kernelbench.schema``), so a larger value could be measured but never written.
INT_FIELD_MAX = 2**31 - 1
INT32_MAX = INT_FIELD_MAX


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """One validity rule of a problem's fields, written once for a single problem and for a whole dataset.

    ``holds(get)`` takes a getter of field values and returns whether the rule holds.
    With ``get = problem.__dict__.__getitem__`` it gives a bool (:class:`ConvProblem`
    checks itself); with ``get = polars.col`` a boolean column expression
    (:mod:`kernelbench.validate` checks every row of a dataset at once), so the
    checks use only ``== != >= <= % & |`` and :func:`_one_of`.  ``why`` completes
    the message ``invalid problem: FIELD=VALUE WHY``; it may name other fields
    as ``{field}``.
    """

    field: str
    why: str
    holds: Callable[[Callable[[str], Any]], Any]

    def message(self, values: Mapping[str, Any]) -> str:
        """The error message for a problem whose field values are ``values`` (the rule does not hold)."""
        return f"invalid problem: {self.field}={values[self.field]!r} {self.why.format(**values)}"


def _one_of(value: Any, options: tuple[Any, ...]) -> Any:
    """``value in options`` for a plain value, ``value.is_in(options)`` for a polars expression."""
    return value.is_in(options) if hasattr(value, "is_in") else value in options


def _int_ranges() -> dict[str, tuple[int, int]]:
    ranges = {name: (1, INT32_MAX) for name in ("batch", "in_channels", "out_channels", "groups")}
    for axis in "dhw":  # depth first, the order a reader checks an axis in
        ranges.update({f"{kind}_{axis}": (1, INT32_MAX) for kind in ("in", "filter", "stride", "dilation")})
        ranges[f"pad_{axis}"] = (0, INT32_MAX)
    return ranges


#: Inclusive ``(low, high)`` bounds of the integer fields (``spatial_dims`` is a rule of its own), checked in this
#: order before :data:`PROBLEM_RULES`.  Plain data so that a single problem is checked quickly (an import builds
#: hundreds of thousands) and a dataset with ``is_between``; the message is :func:`range_message`.
INT_RANGES = _int_ranges()


def range_message(name: str, value: Any) -> str:
    """The error message for an integer field outside :data:`INT_RANGES`."""
    low, high = INT_RANGES[name]
    why = (f"must be >= {low}" if value < low
           else f"is above {high}, the largest value the dataset's int32 columns hold")
    return f"invalid problem: {name}={value!r} {why}"


def _rules() -> tuple[FieldRule, ...]:
    rules = [
        FieldRule("direction", f"is not one of {', '.join(DIRECTIONS)}",
                  lambda get: _one_of(get("direction"), DIRECTIONS)),
        FieldRule("dtype", f"is not one of {', '.join(DTYPES)}", lambda get: _one_of(get("dtype"), DTYPES)),
        FieldRule("spatial_dims", "must be 2 or 3", lambda get: _one_of(get("spatial_dims"), (2, 3))),
        FieldRule(
            "layout", f"must be one of {', '.join(LAYOUTS_2D)} for 2D, {', '.join(LAYOUTS_3D)} for 3D",
            lambda get: ((get("spatial_dims") == 2) & _one_of(get("layout"), LAYOUTS_2D))
            | ((get("spatial_dims") == 3) & _one_of(get("layout"), LAYOUTS_3D)),
        ),
    ]
    rules += [FieldRule(name, f"must be {neutral} for a 2D problem",
                        lambda get, name=name, neutral=neutral: (get("spatial_dims") != 2) | (get(name) == neutral))
              for name, neutral in (("in_d", 1), ("filter_d", 1), ("pad_d", 0), ("stride_d", 1), ("dilation_d", 1))]
    rules += [FieldRule(name, "is not divisible by groups={groups}",
                        lambda get, name=name: get(name) % get("groups") == 0)
              for name in ("in_channels", "out_channels")]
    rules.append(FieldRule(PAD_MODE_FIELD, f"is not one of {', '.join(PAD_MODES)}",
                           lambda get: _one_of(get(PAD_MODE_FIELD), PAD_MODES)))
    # MIOpen applies same/valid only when every dilation is 1; otherwise it computes the default mode.
    rules += [FieldRule(PAD_MODE_FIELD, f"needs dilation 1 on every axis (MIOpen ignores the mode otherwise), "
                                        f"dilation_{axis}={{dilation_{axis}}}",
                        lambda get, axis=axis: (get(PAD_MODE_FIELD) == DEFAULT_PAD_MODE) | (get(f"dilation_{axis}") == 1))
              for axis in "dhw"]
    rules += [FieldRule(PAD_MODE_FIELD, f"'valid' needs filter_{axis} <= in_{axis}",
                        lambda get, axis=axis: (get(PAD_MODE_FIELD) != "valid") | (get(f"filter_{axis}") <= get(f"in_{axis}")))
              for axis in "dhw"]
    return tuple(rules)


#: The rules a problem's fields obey besides their types and :data:`INT_RANGES`, in the order they are
#: checked (the first that fails names the field).  A rule may assume the ranges and the rules before it
#: hold (``groups >= 1`` before divisibility by ``groups``).
PROBLEM_RULES = _rules()


#: Per axis, the field kinds ``output_size`` takes, in its argument order (``in_h``, ``filter_h``, ...).
OUTPUT_SIZE_INPUTS = ("in", "filter", "pad", "stride", "dilation")


def output_size(size: int, filter_size: int, pad: int, stride: int, dilation: int) -> int:
    """Output length of one spatial axis by the floor formula (symmetric padding), before any clamp.

    It is <= 0 when the dilated filter is larger than the padded input; a
    :class:`ConvProblem` clamps it to 1 (see the module docstring).  Works on
    ints and on column expressions that support ``+ - * //`` (numpy, polars).
    """
    return (size + 2 * pad - dilation * (filter_size - 1) - 1) // stride + 1


def same_output_size(size: Any, stride: Any) -> Any:
    """Output length of one axis in MIOpen's ``same`` mode: ``ceil(size / stride)`` (ints or column expressions)."""
    return -(-size // stride)


def valid_output_size(size: Any, filter_size: Any, stride: Any) -> Any:
    """Output length of one axis in MIOpen's ``valid`` mode: ``ceil((size - filter + 1) / stride)``; may be <= 0."""
    return -(-(size - filter_size + 1) // stride)


def clamped_output_size(size: Any, filter_size: Any, pad: Any, stride: Any, dilation: Any) -> Any:
    """Output length of one spatial axis in MIOpen's default mode: ``max(1, output_size(...))``.

    What :class:`ConvProblem` and the dataset's ``out_*`` columns hold.  Works on
    ints, numpy arrays and polars expressions.
    """
    floor = output_size(size, filter_size, pad, stride, dilation)
    return max(1, floor) if isinstance(floor, int) else floor.clip(1)  # ndarray.clip(min), Expr.clip(lower_bound)


@dataclasses.dataclass(frozen=True)
class ConvProblem:
    """One convolution problem.  Construction validates every field.

    Raises:
        InputError: a field is out of range or inconsistent; the message names it.
    """

    direction: str
    dtype: str
    layout: str
    spatial_dims: int
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_d: int
    in_h: int
    in_w: int
    filter_d: int
    filter_h: int
    filter_w: int
    pad_d: int
    pad_h: int
    pad_w: int
    stride_d: int
    stride_h: int
    stride_w: int
    dilation_d: int
    dilation_h: int
    dilation_w: int
    pad_mode: str = DEFAULT_PAD_MODE

    def __post_init__(self) -> None:
        for name in INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"invalid problem: {name}={value!r} is not an integer")
        values = self.__dict__  # the fields, without copying (frozen dataclass: set once by __init__)
        for name, (low, high) in INT_RANGES.items():
            if not low <= values[name] <= high:
                raise InputError(range_message(name, values[name]))
        for rule in PROBLEM_RULES:
            if not rule.holds(values.__getitem__):
                raise InputError(rule.message(values))
        for axis in "dhw":
            if self._out(axis) > INT_FIELD_MAX:
                raise InputError(f"invalid problem: pad_{axis}={values[f'pad_{axis}']!r} gives "
                                 f"out_{axis}={self._out(axis)}, above {INT_FIELD_MAX} (int32)")

    # -- derived sizes -------------------------------------------------
    def _axis_sizes(self, axis: str) -> tuple[int, int, int, int, int]:
        """``(size, filter, pad, stride, dilation)`` of one axis, the arguments of :func:`output_size`."""
        return tuple(getattr(self, f"{kind}_{axis}") for kind in OUTPUT_SIZE_INPUTS)  # type: ignore[return-value]

    def _out(self, axis: str) -> int:
        size, filter_size, _, stride, _ = sizes = self._axis_sizes(axis)
        if self.pad_mode == "same":
            return same_output_size(size, stride)
        if self.pad_mode == "valid":
            return valid_output_size(size, filter_size, stride)
        return clamped_output_size(*sizes)

    @property
    def clamped_axes(self) -> str:
        """The axes (of ``"dhw"``) whose output size is clamped to 1: the filter is larger than the padded input.

        Empty for every ordinary convolution; non-empty only for problems imported
        from MIOpen, whose default mode clamps.  No kernel here computes those.
        Always empty outside the default padding mode (the clamp is the default mode's).
        """
        if self.pad_mode != DEFAULT_PAD_MODE:
            return ""
        return "".join(axis for axis in "dhw" if output_size(*self._axis_sizes(axis)) <= 0)

    def padding(self, axis: str) -> tuple[int, int]:
        """``(before, after)``: input elements of ``axis`` the convolution reads beyond each end.

        ``before`` is ``pad_<axis>``; ``after`` is what the output size needs,
        ``(out - 1) * stride + dilation * (filter - 1) + 1 - in - before``.  In the
        default mode it is ``pad``, less where the floor formula drops a
        remainder, more where the output is clamped to 1; in ``same`` mode it is
        the part of MIOpen's (possibly odd) total padding that the key does not
        record.  Negative means input elements at the end are not read.
        """
        size, filter_size, pad, stride, dilation = self._axis_sizes(axis)
        out = self._out(axis)
        return pad, (out - 1) * stride + dilation * (filter_size - 1) + 1 - size - pad

    @property
    def out_d(self) -> int:
        return self._out("d")

    @property
    def out_h(self) -> int:
        return self._out("h")

    @property
    def out_w(self) -> int:
        return self._out("w")

    @property
    def problem_id(self) -> str:
        """A stable 16-hex-digit id derived from every input field (``pad_mode`` only when not ``default``)."""
        return problem_id_of(self.as_dict())

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the forward convolution (same count for each direction)."""
        macs = (
            self.batch
            * self.out_channels
            * self.out_d
            * self.out_h
            * self.out_w
            * (self.in_channels // self.groups)
            * self.filter_d
            * self.filter_h
            * self.filter_w
        )
        return 2 * macs

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.in_channels and self.groups > 1

    # -- conversion ----------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """Input fields only, in canonical order (:data:`FIELDS`), then ``pad_mode`` if it is not ``default``."""
        out = {f: getattr(self, f) for f in FIELDS}
        if self.pad_mode != DEFAULT_PAD_MODE:
            out[PAD_MODE_FIELD] = self.pad_mode
        return out

    def as_row(self) -> dict[str, Any]:
        """Input and derived fields, ``pad_mode`` and ``problem_id``: the dataset's problem columns."""
        row = self.as_dict()
        row[PAD_MODE_FIELD] = self.pad_mode
        row.update({f: getattr(self, f) for f in DERIVED_FIELDS})
        row["problem_id"] = self.problem_id
        return row

    def describe(self) -> str:
        """A short human-readable label, e.g. ``fwd fp32 NCHW n32 c64->k64 56x56 f3x3 p1 s1``."""
        spatial = "x".join(str(getattr(self, f"in_{a}")) for a in self._axes())
        filt = "x".join(str(getattr(self, f"filter_{a}")) for a in self._axes())
        text = (
            f"{self.direction} {self.dtype} {self.layout} n{self.batch} "
            f"c{self.in_channels}->k{self.out_channels} {spatial} f{filt} "
            f"p{self.pad_h} s{self.stride_h}"
        )
        if self.dilation_h > 1 or self.dilation_w > 1:
            text += f" d{self.dilation_h}"
        if self.groups > 1:
            text += f" g{self.groups}"
        if self.pad_mode != DEFAULT_PAD_MODE:
            text += f" {self.pad_mode}"
        return text

    def _axes(self) -> str:
        return "hw" if self.spatial_dims == 2 else "dhw"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ConvProblem:
        """Build a problem from a mapping with dataset column names.

        Missing optional fields take :data:`DEFAULTS` (``pad_mode``: ``default``);
        unknown keys other than derived columns and ``problem_id`` are rejected.  Integer-valued strings
        are accepted (for command-line input).

        Raises:
            InputError: a required field is missing, a key is unknown, or a value is invalid.
        """
        known = set(FIELDS) | {PAD_MODE_FIELD} | set(DERIVED_FIELDS) | {"problem_id"}
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            raise InputError(f"unknown problem field(s): {', '.join(unknown)}; known fields: "
                             f"{', '.join((*FIELDS, PAD_MODE_FIELD))}")
        missing = [f for f in REQUIRED_FIELDS if f not in values or values[f] is None]
        if missing:
            raise InputError(f"missing problem field(s): {', '.join(missing)}")
        merged: dict[str, Any] = {}
        for f in FIELDS:
            v = values.get(f)
            merged[f] = DEFAULTS.get(f) if v is None else v
        for f in INT_FIELDS:
            v = merged[f]
            if isinstance(v, str):
                try:
                    v = int(v)
                except ValueError:
                    raise InputError(f"invalid problem: {f}={v!r} is not an integer") from None
            elif isinstance(v, float) and v.is_integer():
                v = int(v)
            elif hasattr(v, "item"):  # numpy scalars
                v = v.item()
            merged[f] = v
        if merged["layout"] is None:
            merged["layout"] = "NCHW" if merged["spatial_dims"] == 2 else "NCDHW"
        pad_mode = values.get(PAD_MODE_FIELD)
        merged[PAD_MODE_FIELD] = DEFAULT_PAD_MODE if pad_mode is None else pad_mode
        return cls(**merged)


#: Bytes per element of the input arrays ``kernelbench.reference.make_inputs`` stores
#: (bf16 and int8 travel as float32 holding exactly representable values).
INPUT_ITEMSIZE = {"fp32": 4, "fp16": 2, "bf16": 4, "int8": 4}


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak host memory of measuring one problem, in bytes; see :func:`memory_estimate`.

    Attributes:
        inputs_bytes: x, w (and dy for backward directions) as ``make_inputs`` stores them.
        reference_bytes: the float64 reference result, kept while the problem's kernels run.
        reference_work_bytes: what computing the reference holds at its peak besides the result:
            float64 copies of the inputs and torch's float64 im2col (or col2im) columns.
        kernel_bytes: one kernel's own memory: float32 copies of the inputs and output in its
            layout, plus its workspace (the kernel's ``workspace_estimate``, or when it has none
            the largest workspace of the algorithms here: the im2col columns or the kn2row
            partial images, counted at 8 bytes per element).
    """

    inputs_bytes: int
    reference_bytes: int
    reference_work_bytes: int
    kernel_bytes: int

    @property
    def peak_bytes(self) -> int:
        """Inputs and reference result stay; the reference's work and a kernel never coexist."""
        return self.inputs_bytes + self.reference_bytes + max(self.reference_work_bytes, self.kernel_bytes)

    def describe(self) -> str:
        """E.g. ``57594.4 GB (inputs 1234.5 GB, reference 2.0 GB + 50000.0 GB work, kernel 6000.0 GB)``."""
        gb = 1e9
        return (f"{self.peak_bytes / gb:.1f} GB (inputs {self.inputs_bytes / gb:.1f} GB, "
                f"reference {self.reference_bytes / gb:.1f} GB + {self.reference_work_bytes / gb:.1f} GB work, "
                f"kernel {self.kernel_bytes / gb:.1f} GB)")


def tensor_elements(problem: ConvProblem) -> tuple[int, int, int]:
    """Element counts of x (N, C, D, H, W), w (K, C/G, FD, FH, FW) and y (N, K, OD, OH, OW), exact ints."""
    p = problem
    x = p.batch * p.in_channels * p.in_d * p.in_h * p.in_w
    w = p.out_channels * (p.in_channels // p.groups) * p.filter_d * p.filter_h * p.filter_w
    y = p.batch * p.out_channels * p.out_d * p.out_h * p.out_w
    return x, w, y


def im2col_elements(problem: ConvProblem) -> int:
    """Elements of the im2col columns of ``problem``: ``N * C * taps * output pixels`` (exact int)."""
    p = problem
    return p.batch * p.in_channels * p.filter_d * p.filter_h * p.filter_w * p.out_d * p.out_h * p.out_w


def kn2row_elements(problem: ConvProblem) -> int:
    """Elements of the kn2row partial images of ``problem``: ``N * K * taps * input pixels`` (exact int)."""
    p = problem
    return p.batch * p.out_channels * p.filter_d * p.filter_h * p.filter_w * p.in_d * p.in_h * p.in_w


def largest_workspace_bytes(problem: ConvProblem) -> int:
    """The largest workspace of the array-level algorithms here, in bytes: ``8 * max(im2col columns, kn2row
    partial images)``; it holds for any of them, so it is the bound of a kernel without its own estimate."""
    return 8 * max(im2col_elements(problem), kn2row_elements(problem))


def memory_estimate(problem: ConvProblem, *, kernel_workspace_bytes: int | None = None) -> MemoryEstimate:
    """Estimate the peak host memory of checking and timing ``problem``, without allocating anything.

    ``kernel_workspace_bytes``: the workspace of the one kernel to run (a kernel's
    ``workspace_estimate``); None counts :func:`largest_workspace_bytes`.

    Within about 2x of the measured peak (docs/architecture.md gives a measured example): the
    float64 reference dominates, because torch computes it through float64 im2col columns of
    ``N * C * taps * output pixels`` elements (8 bytes each), the same count as the im2col
    kernels' columns.  Device memory (CUDA) is not counted: a device out-of-memory is an
    ``error`` row.  Exact Python integers: absurd sizes give absurd numbers, never an overflow.
    """
    p = problem
    x, w, y = tensor_elements(p)
    dy = y if p.direction != "fwd" else 0
    result = {"fwd": y, "bwd_data": x, "bwd_weights": w}[p.direction]
    columns = im2col_elements(p)
    if kernel_workspace_bytes is None:
        kernel_workspace_bytes = largest_workspace_bytes(p)
    return MemoryEstimate(
        inputs_bytes=INPUT_ITEMSIZE[p.dtype] * (x + w + dy),
        reference_bytes=8 * result,
        reference_work_bytes=8 * (x + w + dy + columns),
        kernel_bytes=4 * (x + w + dy + result) + kernel_workspace_bytes,
    )


def problem_id_of(fields: Mapping[str, Any]) -> str:
    """Stable id of a problem from its input fields (see :data:`FIELDS`).

    ``pad_mode`` (optional in ``fields``; absent or null means ``default``) joins
    the hashed text only when it is not ``default``, so default-mode ids are the
    ones datasets written before the field existed hold.
    """
    canonical = "|".join(f"{f}={fields[f]}" for f in FIELDS)
    pad_mode = fields.get(PAD_MODE_FIELD)
    if pad_mode is not None and pad_mode != DEFAULT_PAD_MODE:
        canonical += f"|{PAD_MODE_FIELD}={pad_mode}"
    return hashlib.sha1(canonical.encode()).hexdigest()[:16]


def problem_2d(
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    in_h: int,
    in_w: int,
    filter_h: int,
    filter_w: int,
    pad_h: int = 0,
    pad_w: int = 0,
    stride_h: int = 1,
    stride_w: int = 1,
    dilation_h: int = 1,
    dilation_w: int = 1,
    groups: int = 1,
    dtype: str = "fp32",
    layout: str = "NCHW",
    direction: str = "fwd",
) -> ConvProblem:
    """Convenience constructor for a 2D problem."""
    return ConvProblem(
        direction=direction,
        dtype=dtype,
        layout=layout,
        spatial_dims=2,
        batch=batch,
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        in_d=1,
        in_h=in_h,
        in_w=in_w,
        filter_d=1,
        filter_h=filter_h,
        filter_w=filter_w,
        pad_d=0,
        pad_h=pad_h,
        pad_w=pad_w,
        stride_d=1,
        stride_h=stride_h,
        stride_w=stride_w,
        dilation_d=1,
        dilation_h=dilation_h,
        dilation_w=dilation_w,
    )
