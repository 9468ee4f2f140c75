"""MIOpen convolution problem keys <-> :class:`ConvProblem`.

A find-db line starts with the key MIOpen's ``conv::ProblemDescription::Serialize``
writes (``src/conv/problem_description.cpp``), ``-``-separated::

    C - [D-]H-W - [fd x]fh x fw - K - [D-]H-W - N - pad - stride - dilation - bias
      - layout(s) - precision - direction [_g<groups>] [_ci<T>] [_cw<T>] [_co<T>]

* The first sizes are MIOpen's ``in`` tensor, the second its ``out`` tensor.
  For ``F`` (forward) ``in`` is x and ``out`` is y; for ``B`` (backward data)
  *and* ``W`` (backward weights) MIOpen builds the description from
  ``(dy, w, dx)`` / ``(dy, dw, x)`` (``src/ocl/convolutionocl.cpp``), so ``in``
  is y and ``out`` is x.  Our problem model is always in forward terms, so
  backward keys are swapped.
* The layout is one token when all three tensors are NCHW (2D) or NCDHW (3D);
  otherwise three tokens, input-weights-output (``NHWC-NHWC-NHWC``).
* The precision is one name when all tensors share it, else the three names
  concatenated (``INT8INT8INT32``).
* ``_g<N>`` is written only for ``N != 1``; ``_ci/_cw/_co`` name cast types.

Only keys the problem model can hold exactly are accepted, so
``format_key(parse_key(key)) == key`` for every accepted key.  Everything else
is rejected with a ``reason`` (the module's reason constants) and a message.

:func:`parse_keys` parses many keys at once with polars (the importer's path,
and the only implementation of the grammar); :func:`parse_key` is the
one-key convenience on top of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import polars as pl

from kernelbench.errors import InputError
from kernelbench.problem import FIELDS, ConvProblem
from kernelbench.validate import output_size_columns

#: Rejection reasons.
MALFORMED_KEY = "malformed_key"
UNSUPPORTED_PRECISION = "unsupported_precision"
UNSUPPORTED_LAYOUT = "unsupported_layout"
UNSUPPORTED_FEATURE = "unsupported_key_feature"
INVALID_PROBLEM = "invalid_problem"
SAME_PADDING = "same_padding_mode"

DIRECTIONS = {"F": "fwd", "B": "bwd_data", "W": "bwd_weights"}
PRECISIONS = {"FP32": "fp32", "FP16": "fp16", "BF16": "bf16", "INT8": "int8"}
#: Layouts MIOpen writes as one token, by spatial dims.
SINGLE_TOKEN_LAYOUT = {2: "NCHW", 3: "NCDHW"}
#: The other layout our model holds, written as three equal tokens.
TRIPLE_TOKEN_LAYOUT = {2: "NHWC", 3: "NDHWC"}

_DIRECTION_LETTER = {v: k for k, v in DIRECTIONS.items()}
_PRECISION_NAME = {v: k for k, v in PRECISIONS.items()}
_INT32_MAX = 2**31 - 1  # the dataset stores sizes as int32
#: Sized fields of a key, per axis: MIOpen's in and out tensor ("kin", "kout"), filter, pad, stride, dilation.
_KINDS = ("kin", "kout", "filter", "pad", "stride", "dilation")
#: Their depth values in a 2D key (which has none).
_DEPTH_OF_2D = {"kin": 1, "kout": 1, "filter": 1, "pad": 0, "stride": 1, "dilation": 1}
_NUMBERS = ("kin_c", "kout_c", "batch", "groups", *(f"{kind}_{axis}" for kind in _KINDS for axis in "dhw"))


def _key_pattern(dims: int) -> str:
    """The grammar of accepted keys as a regex with one named group per value (canonical decimals only)."""
    axes = "hw" if dims == 2 else "dhw"

    def one(name: str) -> str:
        return f"(?P<{name}>0|[1-9][0-9]*)"

    def sizes(kind: str, sep: str) -> str:
        return sep.join(one(f"{kind}_{axis}") for axis in axes)

    layouts = f"{SINGLE_TOKEN_LAYOUT[dims]}|{'-'.join([TRIPLE_TOKEN_LAYOUT[dims]] * 3)}"
    return (
        f"^{one('kin_c')}-{sizes('kin', '-')}-{sizes('filter', 'x')}-{one('kout_c')}-{sizes('kout', '-')}-"
        f"{one('batch')}-{sizes('pad', 'x')}-{sizes('stride', 'x')}-{sizes('dilation', 'x')}-0-"
        f"(?P<layout>{layouts})-(?P<precision>{'|'.join(PRECISIONS)})-(?P<letter>[{''.join(DIRECTIONS)}])"
        f"(?:_g(?P<groups>[2-9]|[1-9][0-9]+))?$"
    )


_PATTERN_2D, _PATTERN_3D = _key_pattern(2), _key_pattern(3)
#: Whether ConvProblem's fields are FIELDS in order, which allows the faster positional construction.
_POSITIONAL = tuple(f.name for f in dataclasses.fields(ConvProblem)) == FIELDS


class MiopenKeyError(InputError):
    """A key that is malformed or describes something the problem model cannot hold.

    ``reason`` is one of the module's reason constants (used to count skips).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_key(key: str) -> ConvProblem:
    """The problem (forward terms) that MIOpen's key ``key`` describes.

    Raises:
        MiopenKeyError: the key is malformed, uses a precision, layout, bias or
            cast type the problem model cannot hold, or its sizes are not those
            of a valid convolution.  An output size of 1 where the filter is
            larger than the padded input is valid: MIOpen's default mode clamps
            it, and so does :class:`ConvProblem` (see ``clamped_axes``).
    """
    row = parse_keys([key]).row(0, named=True)
    if row["reason"] is not None:
        raise MiopenKeyError(row["reason"], row["detail"])
    return ConvProblem(**{f: row[f] for f in FIELDS})


def parse_keys(keys: Iterable[str] | pl.Series, *, valid_shapes: set[tuple[Any, ...]] | None = None) -> pl.DataFrame:
    """Parse many keys at once.

    Returns one row per key, in order: ``key``, the problem :data:`FIELDS`
    (forward terms; meaningless where the key is rejected), ``reason`` (null
    when accepted, else a reason constant) and ``detail`` (the message).
    Every accepted row is a valid :class:`ConvProblem`.

    ``valid_shapes`` is a cache for callers that parse a file in batches: the
    :data:`FIELDS` tuples (direction ``fwd``) already known to be valid; new
    valid ones are added to it.
    """
    keys = keys if isinstance(keys, pl.Series) else pl.Series(list(keys), dtype=pl.String)
    frame = pl.DataFrame({"key": keys.cast(pl.String)}).with_row_index("_i").with_columns(
        pl.col("key").str.extract_groups(_PATTERN_2D).alias("_m2"),
        pl.col("key").str.extract_groups(_PATTERN_3D).alias("_m3"),
    )
    is_2d = pl.col("_m2").struct.field("letter").is_not_null()

    def group(name: str) -> pl.Expr:
        kind, _, axis = name.rpartition("_")
        from_2d = pl.lit(str(_DEPTH_OF_2D[kind])) if axis == "d" else pl.col("_m2").struct.field(name)
        text = pl.when(is_2d).then(from_2d).otherwise(pl.col("_m3").struct.field(name))
        return text.fill_null("1") if name == "groups" else text  # no _g suffix: one group

    frame = frame.select(
        "_i", "key",
        (is_2d | pl.col("_m3").struct.field("letter").is_not_null()).alias("_matched"),
        pl.when(is_2d).then(2).otherwise(3).alias("spatial_dims"),
        *(group(name).cast(pl.Int64, strict=False).alias(name) for name in _NUMBERS),
        *(group(name).alias(name) for name in ("layout", "precision", "letter")),
    )
    forward = pl.col("letter") == "F"

    def swap(name_if_forward: str, name_otherwise: str) -> pl.Expr:
        # MIOpen's "in" tensor is dy for both backward directions.
        return pl.when(forward).then(pl.col(name_if_forward)).otherwise(pl.col(name_otherwise))

    frame = frame.with_columns(
        pl.col("letter").replace_strict(DIRECTIONS, default=None).alias("direction"),
        pl.col("precision").replace_strict(PRECISIONS, default=None).alias("dtype"),
        pl.col("layout").str.split("-").list.first().alias("layout"),
        swap("kin_c", "kout_c").alias("in_channels"),
        swap("kout_c", "kin_c").alias("out_channels"),
        *(swap(f"kin_{a}", f"kout_{a}").alias(f"in_{a}") for a in "dhw"),
        *(swap(f"kout_{a}", f"kin_{a}").alias(f"_y_{a}") for a in "dhw"),
    ).with_columns(expr.alias(f"_derived_{name[-1]}") for name, expr in output_size_columns().items())
    numbers = [pl.col(name) for name in _NUMBERS]
    flag = (
        pl.when(~pl.col("_matched")).then(pl.lit("diagnose"))
        .when(pl.any_horizontal(n.is_null() | (n > _INT32_MAX) for n in numbers)).then(pl.lit("too_big"))
        .when(pl.any_horizontal(pl.col(f"stride_{a}") == 0 for a in "dhw")).then(pl.lit("stride_zero"))
        .when(pl.any_horizontal(pl.col(f"_derived_{a}") != pl.col(f"_y_{a}") for a in "dhw")).then(pl.lit("sizes"))
    )
    frame = frame.with_columns(flag.alias("_flag"))
    reasons = [_explain(row) for row in frame.filter(pl.col("_flag").is_not_null()).iter_rows(named=True)]
    reasons += _invalid_shapes(frame.filter(pl.col("_flag").is_null()),
                               set() if valid_shapes is None else valid_shapes)
    explained = pl.DataFrame(reasons, schema={"_i": pl.UInt32, "reason": pl.String, "detail": pl.String},
                             orient="row")
    return frame.join(explained, on="_i", how="left", maintain_order="left").select("key", *FIELDS, "reason", "detail")


def _explain(row: dict[str, Any]) -> tuple[int, str, str]:
    """``(_i, reason, detail)`` of a row that failed a vectorised check."""
    flag, dims = row["_flag"], row["spatial_dims"]
    if flag == "diagnose":
        error = _diagnose(row["key"])
    elif flag == "too_big":
        error = MiopenKeyError(MALFORMED_KEY, f"a size is larger than {_INT32_MAX}")
    elif flag == "stride_zero":
        error = MiopenKeyError(INVALID_PROBLEM, "a stride is 0")
    else:
        axes = "hw" if dims == 2 else "dhw"
        error = _size_error(*([row[f"{kind}_{a}"] for a in axes] for kind in ("_y", "_derived", "in", "stride")))
    return row["_i"], error.reason, str(error)


def _invalid_shapes(frame: pl.DataFrame, valid: set[tuple[Any, ...]]) -> list[tuple[int, str, str]]:
    """``(_i, reason, detail)`` of rows that :class:`ConvProblem` rejects, validating each distinct problem once.

    Validity does not depend on the direction, and a find-db usually holds the
    F, B and W variant of a problem, so this saves most of the (slow) constructions.
    """
    shapes = frame.with_columns(pl.lit("fwd").alias("direction")).select(FIELDS)
    failures = []
    for shape in shapes.unique().iter_rows():
        if shape in valid:
            continue
        try:
            ConvProblem(*shape) if _POSITIONAL else ConvProblem(**dict(zip(FIELDS, shape, strict=True)))
        except InputError as exc:
            failures.append((*shape, str(exc)))
        else:
            valid.add(shape)
    if not failures:
        return []
    bad = pl.DataFrame(failures, schema={**shapes.schema, "detail": pl.String}, orient="row")
    hits = shapes.with_columns(frame["_i"]).join(bad, on=list(FIELDS), how="inner")
    return [(i, INVALID_PROBLEM, detail) for i, detail in hits.select("_i", "detail").iter_rows()]


def format_key(problem: ConvProblem) -> str:
    """MIOpen's key for ``problem`` (the inverse of :func:`parse_key`).

    Raises:
        InputError: the problem's layout has no MIOpen key form (e.g. NHWC for 3D).
    """
    dims = problem.spatial_dims
    axes = "hw" if dims == 2 else "dhw"

    def sizes(kind: str, sep: str) -> str:
        return sep.join(str(getattr(problem, f"{kind}_{a}")) for a in axes)

    x = f"{problem.in_channels}-{sizes('in', '-')}"
    y = f"{problem.out_channels}-{sizes('out', '-')}"
    key_in, key_out = (x, y) if problem.direction == "fwd" else (y, x)
    if problem.layout == SINGLE_TOKEN_LAYOUT[dims]:
        layout = problem.layout
    elif problem.layout == TRIPLE_TOKEN_LAYOUT[dims]:
        layout = "-".join([problem.layout] * 3)
    else:
        raise InputError(f"layout {problem.layout} has no MIOpen key form for a {dims}D problem")
    key = (
        f"{key_in}-{sizes('filter', 'x')}-{key_out}-{problem.batch}-{sizes('pad', 'x')}-{sizes('stride', 'x')}-"
        f"{sizes('dilation', 'x')}-0-{layout}-{_PRECISION_NAME[problem.dtype]}-{_DIRECTION_LETTER[problem.direction]}"
    )
    if problem.groups != 1:
        key += f"_g{problem.groups}"
    return key


# -- diagnostics: why a key does not match the grammar ------------------


def _size_error(key_sizes: list[int], derived: list[int], inputs: list[int], strides: list[int]) -> MiopenKeyError:
    """Why the key's output sizes are not the default-mode ones, max(1, floor formula) (``GetForwardOutputTensor``, src/convolution.cpp)."""
    shown = (f"output size {'x'.join(map(str, key_sizes))} in the key, {'x'.join(map(str, derived))} from input, "
             "filter, pad, stride and dilation")
    if key_sizes == [-(-x // s) for x, s in zip(inputs, strides, strict=True)]:
        return MiopenKeyError(SAME_PADDING, f"{shown}: output = ceil(input / stride) is MIOpen's 'same' padding mode, "
                                            "whose (possibly asymmetric) padding the key does not record")
    return MiopenKeyError(INVALID_PROBLEM, shown)


def _diagnose(key: str) -> MiopenKeyError:
    """The most specific reason why ``key`` does not match the key grammar."""
    try:
        body, _, suffix = key.partition("_")
        _check_suffix(suffix)
        tokens = body.split("-")
        dims = _spatial_dims(tokens)
        n_numeric = 2 * dims + 8
        tail = tokens[n_numeric:]
        if len(tail) not in (3, 5):
            raise MiopenKeyError(MALFORMED_KEY, f"{len(tokens)} '-'-separated fields, expected {n_numeric + 3} or "
                                                f"{n_numeric + 5} for a {dims}D key")
        names = ["input channels", *["input size"] * dims, "filter", "output channels", *["output size"] * dims,
                 "batch", "pad", "stride", "dilation"]
        for token, name in zip(tokens, names, strict=False):  # the tokens after the dilation come next
            if name in ("filter", "pad", "stride", "dilation"):
                _check_ints(token, dims, name)
            else:
                _check_int(token, name)
        if tokens[n_numeric - 1] != "0":
            raise MiopenKeyError(UNSUPPORTED_FEATURE, f"bias {_show(tokens[n_numeric - 1])}: a fused bias is not "
                                                      "part of the problem model")
        _check_layout(tail[:-2], dims)
        if tail[-2] not in PRECISIONS:
            raise MiopenKeyError(UNSUPPORTED_PRECISION, f"precision {_show(tail[-2])} is not one of "
                                                        f"{', '.join(PRECISIONS)}")
        if tail[-1] not in DIRECTIONS:
            raise MiopenKeyError(MALFORMED_KEY, f"direction {_show(tail[-1])} is not F, B or W")
    except MiopenKeyError as exc:
        return exc
    return MiopenKeyError(MALFORMED_KEY, f"key {_show(key)} does not follow MIOpen's key format")


def _spatial_dims(tokens: list[str]) -> int:
    # The filter is the first 'x'-joined field: C-H-W-FHxFW (2D) or C-D-H-W-FDxFHxFW (3D).
    for index in (3, 4):
        if index < len(tokens) and "x" in tokens[index]:
            if tokens[index].count("x") == index - 2:
                return index - 1
            break
    raise MiopenKeyError(MALFORMED_KEY, "no filter field (FHxFW after C-H-W, or FDxFHxFW after C-D-H-W)")


def _check_int(text: str, what: str) -> None:
    # MIOpen prints plain decimals; anything else (sign, leading zero, '_') would not round-trip.
    if not (text.isascii() and text.isdigit()) or (text[0] == "0" and len(text) > 1):
        raise MiopenKeyError(MALFORMED_KEY, f"{what} {_show(text)} is not a decimal integer")


def _check_ints(text: str, dims: int, what: str) -> None:
    parts = text.split("x")
    if len(parts) != dims:
        if what == "pad" and dims == 3 and len(parts) == 2:
            # Some old find-db files (gfx803/gfx900/gfx906) hold 3D keys with two pads and layout NCHW.
            raise MiopenKeyError(UNSUPPORTED_FEATURE, "3D key with two pad values (an old MIOpen key form): "
                                                      "the depth padding is not recorded")
        raise MiopenKeyError(MALFORMED_KEY, f"{what} {_show(text)} does not have {dims} 'x'-separated values")
    for part in parts:
        _check_int(part, what)


def _check_layout(tokens: list[str], dims: int) -> None:
    if tokens in ([SINGLE_TOKEN_LAYOUT[dims]], [TRIPLE_TOKEN_LAYOUT[dims]] * 3):
        return
    shown = _show("-".join(tokens))
    if dims == 3 and tokens == [SINGLE_TOKEN_LAYOUT[2]]:
        raise MiopenKeyError(UNSUPPORTED_LAYOUT, f"layout {shown} on a 3D key (an old MIOpen key form; "
                                                 f"{SINGLE_TOKEN_LAYOUT[3]} expected)")
    if len(tokens) == 3 and tokens[0] == tokens[1] == tokens[2] == SINGLE_TOKEN_LAYOUT[dims]:
        raise MiopenKeyError(MALFORMED_KEY, f"layout {shown}: MIOpen writes a default layout once")
    supported = f"{SINGLE_TOKEN_LAYOUT[dims]}, {'-'.join([TRIPLE_TOKEN_LAYOUT[dims]] * 3)}"
    raise MiopenKeyError(UNSUPPORTED_LAYOUT, f"layout {shown} for a {dims}D key; supported: {supported}")


def _check_suffix(suffix: str) -> None:
    """Reject the optional part after the direction (``g32``, ``g2_ciFP8``...) unless it is a group count."""
    parts = suffix.split("_") if suffix else []
    if parts and parts[0].startswith("g"):
        _check_int(parts[0][1:], "group count")
        if parts[0] in ("g0", "g1"):
            # MIOpen writes _g only for a group count != 1.
            raise MiopenKeyError(MALFORMED_KEY, f"group count suffix {_show(parts[0])}")
        parts = parts[1:]
    if not parts:
        return
    if all(p[:2] in ("ci", "cw", "co") and len(p) > 2 for p in parts):
        raise MiopenKeyError(UNSUPPORTED_FEATURE, f"cast types {_show('_'.join(parts))}: tensor casts are not part "
                                                  "of the problem model")
    raise MiopenKeyError(MALFORMED_KEY, f"unknown suffix {_show('_'.join(parts))}")


def _show(text: str, limit: int = 40) -> str:
    """``repr`` of a piece of (possibly garbage) input, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
