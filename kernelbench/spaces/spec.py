"""Read and validate a space spec file (TOML or JSON) into a :class:`SpaceSpec`.

The format is documented in ``docs/spec-format.md``.  This module only parses
and checks; :mod:`kernelbench.spaces.generate` turns a spec into problems.
Every error is an :class:`InputError` of one line, ``FILE: KEY: what is wrong``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib  # type: ignore[no-redef]

from kernelbench.errors import InputError
from kernelbench.problem import DIRECTIONS, DTYPES, INT_FIELD_MAX, LAYOUTS_2D

Value = int | str  # an integer, or "same" for a pad

#: Spec fields -> the problem fields they set.  Short forms set both spatial axes (square).
FIELD_TARGETS: dict[str, tuple[str, ...]] = {
    "batch": ("batch",),
    "in_channels": ("in_channels",),
    "out_channels": ("out_channels",),
    "groups": ("groups",),
    "in_hw": ("in_h", "in_w"),
    "in_h": ("in_h",),
    "in_w": ("in_w",),
    "filter": ("filter_h", "filter_w"),
    "filter_h": ("filter_h",),
    "filter_w": ("filter_w",),
    "pad": ("pad_h", "pad_w"),
    "pad_h": ("pad_h",),
    "pad_w": ("pad_w",),
    "stride": ("stride_h", "stride_w"),
    "stride_h": ("stride_h",),
    "stride_w": ("stride_w",),
    "dilation": ("dilation_h", "dilation_w"),
    "dilation_h": ("dilation_h",),
    "dilation_w": ("dilation_w",),
}
#: Field order of a grid's Cartesian product (the last listed field varies fastest) and of random draws.
FIELD_ORDER = tuple(FIELD_TARGETS)
_SQUARE = {"in_hw": ("in_h", "in_w"), "filter": ("filter_h", "filter_w"), "pad": ("pad_h", "pad_w"),
           "stride": ("stride_h", "stride_w"), "dilation": ("dilation_h", "dilation_w")}
_PAD_FIELDS = ("pad", "pad_h", "pad_w")
#: Ranges of these fields are drawn log-uniformly by default (sizes and channels span orders of magnitude).
LOG_SCALE_FIELDS = ("batch", "in_channels", "out_channels", "in_hw", "in_h", "in_w")
SAME = "same"
#: Upper bound on the problems one spec may describe, so a typo cannot start a year-long sweep.
MAX_PROBLEMS = 1_000_000

_TOP_KEYS = ("name", "description", "dtype", "layout", "direction", "grid", "random")
_RANDOM_KEYS = ("count", "seed", "depthwise", "bounds")


@dataclasses.dataclass(frozen=True)
class GridPart:
    """A Cartesian product: ``axes`` maps each spec field to its values, in :data:`FIELD_ORDER`."""

    axes: tuple[tuple[str, tuple[Value, ...]], ...]
    depthwise: bool = False

    @property
    def size(self) -> int:
        """Number of combinations, valid or not."""
        return math.prod(len(values) for _, values in self.axes)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "grid", "depthwise": self.depthwise, "axes": {k: list(v) for k, v in self.axes}}


@dataclasses.dataclass(frozen=True)
class Bound:
    """How one field of a random part is drawn.

    ``kind`` is ``fixed`` (``values == (v,)``), ``range`` (``values == (lo, hi)``, inclusive,
    drawn with ``scale`` ``log`` or ``linear`` on multiples of ``step``) or ``choices``
    (uniform over ``values``).
    """

    kind: str
    values: tuple[Value, ...]
    scale: str = "linear"
    step: int = 1

    def as_dict(self) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "range":
            return {"range": list(self.values), "scale": self.scale, "step": self.step}
        return {"choices": list(self.values)}


@dataclasses.dataclass(frozen=True)
class RandomPart:
    """``count`` distinct valid problems drawn with ``random.Random(seed)`` within ``bounds``."""

    count: int
    seed: int
    bounds: tuple[tuple[str, Bound], ...]
    depthwise: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "random", "count": self.count, "seed": self.seed, "depthwise": self.depthwise,
                "bounds": {k: b.as_dict() for k, b in self.bounds}}


@dataclasses.dataclass(frozen=True)
class SpaceSpec:
    """A parsed spec file.  ``problems`` and ``skipped`` (reason, count) are filled in once it is generated.

    ``section`` names of the parts (``grid``, ``grid[1]``, ``random``) are used in
    messages and as layer labels.
    """

    name: str
    path: str
    sha256: str
    dtype: str
    layout: str
    direction: str
    parts: tuple[GridPart | RandomPart, ...]
    sections: tuple[str, ...]
    description: str = ""
    problems: int = 0
    skipped: tuple[tuple[str, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description for the run manifest (the file's sha256 pins its exact content)."""
        return {
            "name": self.name,
            "description": self.description,
            "file": self.path,
            "sha256": self.sha256,
            "dtype": self.dtype,
            "layout": self.layout,
            "direction": self.direction,
            "parts": [dict(p.as_dict(), section=s) for p, s in zip(self.parts, self.sections)],
            "problems": self.problems,
            "skipped": dict(self.skipped),
        }


class _Where:
    """Builds ``FILE: KEY: message`` errors."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, key: str, message: str) -> InputError:
        return InputError(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")


def read_spec_file(path: str | Path) -> SpaceSpec:
    """Read, parse and validate a spec file (``.toml`` or ``.json``).

    Raises:
        InputError: the file is unreadable, not valid TOML/JSON, or a key is unknown,
            missing or out of range; the message names the file and the key.
    """
    where = _Where(str(path))
    suffix = Path(path).suffix.lower()
    if suffix not in (".toml", ".json"):
        raise where.error("", "a spec file must end in .toml or .json")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise where.error("", f"cannot read the spec file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except UnicodeDecodeError:
        raise where.error("", "not a UTF-8 text file") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if suffix == ".json" else "TOML"
        raise where.error("", f"invalid {kind}: {exc}") from None
    return parse_spec(data, path=str(path), sha256=hashlib.sha256(raw).hexdigest())


def parse_spec(data: Any, *, path: str, sha256: str) -> SpaceSpec:
    """Validate the decoded document of a spec file; ``path`` names it in messages.

    Raises:
        InputError: see :func:`read_spec_file`.
    """
    where = _Where(path)
    if not isinstance(data, Mapping):
        raise where.error("", "the top level must be a table (TOML) or an object (JSON)")
    _check_keys(data, _TOP_KEYS, where, "")
    name = data.get("name")
    if name is None:
        raise where.error("name", "missing; give the space a name (it fills the dataset's network column)")
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise where.error("name", "expected a non-empty one-line string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise where.error("description", "expected a string")
    dtype = _categorical(data, "dtype", DTYPES, "fp32", where)
    layout = _categorical(data, "layout", LAYOUTS_2D, "NCHW", where)
    direction = _categorical(data, "direction", DIRECTIONS, "fwd", where)
    if "grid" not in data and "random" not in data:
        raise where.error("", "missing a [grid] or [random] section; see docs/spec-format.md")

    parts: list[GridPart | RandomPart] = []
    sections: list[str] = []
    for kind in ("grid", "random"):
        if kind not in data:
            continue
        tables = data[kind] if isinstance(data[kind], list) else [data[kind]]
        if not tables:
            raise where.error(kind, "expected a table or a non-empty list of tables")
        for i, table in enumerate(tables):
            section = kind if len(tables) == 1 and not isinstance(data[kind], list) else f"{kind}[{i}]"
            if not isinstance(table, Mapping):
                raise where.error(section, "expected a table")
            parts.append(_grid(table, where, section) if kind == "grid" else _random(table, where, section))
            sections.append(section)
    total = sum(p.size if isinstance(p, GridPart) else p.count for p in parts)
    if total > MAX_PROBLEMS:
        raise where.error("", f"describes {total:,} problems; the limit is {MAX_PROBLEMS:,} — split it into "
                              "several specs or shorten the lists")
    return SpaceSpec(name=name.strip(), path=where.path, sha256=sha256, dtype=dtype, layout=layout,
                     direction=direction, parts=tuple(parts), sections=tuple(sections), description=description)


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...], where: _Where, section: str) -> None:
    unknown = [k for k in table if k not in known]
    if unknown:
        raise where.error(section or "", f"unknown key {unknown[0]!r}; known keys: {', '.join(known)}")


def _categorical(data: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str, where: _Where) -> str:
    value = data.get(key, default)
    if value not in allowed:
        raise where.error(key, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_too_large(values: Any, where: _Where, key: str) -> None:
    """A spec error naming ``key`` for any integer above :data:`INT_FIELD_MAX` (the dataset's int32)."""
    for value in values if isinstance(values, list) else [values]:
        if _is_int(value) and value > INT_FIELD_MAX:
            raise where.error(key, f"{value} is above {INT_FIELD_MAX}, the largest value the dataset's int32 "
                                   "columns hold")


def _check_value(value: Any, field: str) -> bool:
    if field in _PAD_FIELDS:
        return value == SAME or (_is_int(value) and value >= 0)
    return _is_int(value) and value >= 1


def _expected(field: str) -> str:
    return 'non-negative integers or "same"' if field in _PAD_FIELDS else "positive integers"


def _depthwise(table: Mapping[str, Any], fields: Any, where: _Where, section: str) -> bool:
    depthwise = table.get("depthwise", False)
    if not isinstance(depthwise, bool):
        raise where.error(f"{section}.depthwise", "expected true or false")
    if depthwise and isinstance(fields, Mapping) and "groups" in fields:
        raise where.error(section, "depthwise = true sets groups = in_channels; remove groups")
    return depthwise


def _check_fields(fields: Mapping[str, Any], depthwise: bool, where: _Where, section: str,
                  flags: tuple[str, ...] = ()) -> None:
    """Known fields (and ``flags``) only; square short forms and per-axis forms not mixed; required fields present."""
    _check_keys(fields, FIELD_ORDER + flags, where, section)
    for short, (h, w) in _SQUARE.items():
        if short in fields and (h in fields or w in fields):
            raise where.error(section, f"give either {short} or {h} and {w}, not both")
        if (h in fields) != (w in fields):
            present, absent = (h, w) if h in fields else (w, h)
            raise where.error(section, f"{present} needs {absent} too (or use {short} for square)")
    required = [("batch",), ("in_channels",), ("in_hw", "in_h"), ("filter", "filter_h")]
    if not depthwise:
        required.append(("out_channels",))
    for options in required:
        if not any(o in fields for o in options):
            alternative = f" (or {_SQUARE[options[0]][0]} and {_SQUARE[options[0]][1]})" if len(options) > 1 else ""
            raise where.error(section, f"missing key {options[0]!r}{alternative}")


def _grid(table: Mapping[str, Any], where: _Where, section: str) -> GridPart:
    fields = {k: v for k, v in table.items() if k != "depthwise"}
    depthwise = _depthwise(table, fields, where, section)
    _check_fields(table, depthwise, where, section, flags=("depthwise",))
    axes = []
    for field in FIELD_ORDER:
        if field not in fields:
            continue
        value = fields[field]
        values = value if isinstance(value, list) else [value]
        _refuse_too_large(values, where, f"{section}.{field}")
        if not values or not all(_check_value(v, field) for v in values):
            raise where.error(f"{section}.{field}", f"expected a list of {_expected(field)}, got {value!r}")
        axes.append((field, tuple(values)))
    return GridPart(axes=tuple(axes), depthwise=depthwise)


def _random(table: Mapping[str, Any], where: _Where, section: str) -> RandomPart:
    _check_keys(table, _RANDOM_KEYS, where, section)
    count, seed = table.get("count"), table.get("seed", 0)
    if count is None:
        raise where.error(section, "missing key 'count' (how many distinct problems to draw)")
    if not _is_int(count) or count < 1:
        raise where.error(f"{section}.count", f"expected a positive integer, got {count!r}")
    if not _is_int(seed) or seed < 0:
        raise where.error(f"{section}.seed", f"expected a non-negative integer, got {seed!r}")
    bounds_table = table.get("bounds")
    depthwise = _depthwise(table, bounds_table, where, section)
    if not isinstance(bounds_table, Mapping):
        raise where.error(f"{section}.bounds", "missing table (one entry per field: value, [lo, hi] or choices)")
    _check_fields(bounds_table, depthwise, where, f"{section}.bounds")
    bounds = tuple((f, _bound(bounds_table[f], f, where, f"{section}.bounds.{f}"))
                   for f in FIELD_ORDER if f in bounds_table)
    return RandomPart(count=count, seed=seed, bounds=bounds, depthwise=depthwise)


def _bound(value: Any, field: str, where: _Where, key: str) -> Bound:
    """One of: a value; ``[lo, hi]``; ``{range = [lo, hi], scale = "log"|"linear"}``; ``{choices = [...]}``."""
    default_scale = "log" if field in LOG_SCALE_FIELDS else "linear"
    if isinstance(value, Mapping):
        if set(value) == {"choices"}:
            choices = value["choices"]
            _refuse_too_large(choices, where, f"{key}.choices")
            if not isinstance(choices, list) or not choices or not all(_check_value(v, field) for v in choices):
                raise where.error(f"{key}.choices", f"expected a non-empty list of {_expected(field)}")
            return Bound("choices", tuple(choices))
        if "range" in value and set(value) <= {"range", "scale", "step"}:
            scale = value.get("scale", default_scale)
            if scale not in ("log", "linear"):
                raise where.error(f"{key}.scale", f'expected "log" or "linear", got {scale!r}')
            step = value.get("step", 1)
            if not _is_int(step) or step < 1:
                raise where.error(f"{key}.step", f"expected a positive integer, got {step!r}")
            bound = _range(value["range"], field, scale, where, f"{key}.range")
            if any(v % step for v in bound.values):  # type: ignore[operator]
                raise where.error(f"{key}.range", f"lo and hi must be multiples of step = {step}")
            return dataclasses.replace(bound, step=step)
        raise where.error(key, 'expected {choices = [...]} or {range = [lo, hi], scale = "log"|"linear", step = 1}')
    if isinstance(value, list):
        return _range(value, field, default_scale, where, key)
    _refuse_too_large(value, where, key)
    if _check_value(value, field):
        return Bound("fixed", (value,))
    raise where.error(key, f"expected one of {_expected(field)}, [lo, hi], or {{choices = [...]}}, got {value!r}")


def _range(value: Any, field: str, scale: str, where: _Where, key: str) -> Bound:
    _refuse_too_large(value, where, key)
    ok = isinstance(value, list) and len(value) == 2 and all(_is_int(v) and _check_value(v, field) for v in value)
    if not ok:
        kind = "non-negative" if field in _PAD_FIELDS else "positive"
        raise where.error(key, f"expected [lo, hi] with {kind} integers lo <= hi, got {value!r}")
    lo, hi = value
    if lo > hi:
        raise where.error(key, f"lo {lo} is greater than hi {hi}")
    if scale == "log" and lo < 1:
        raise where.error(key, 'a log-scale range needs lo >= 1; use scale = "linear"')
    return Bound("range", (lo, hi), scale)
