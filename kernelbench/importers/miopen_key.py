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
``format_key(parse_key(key)) == key`` for every accepted key in the current
form.  Everything else is rejected with a ``reason`` (the module's reason
constants) and a message.

Two older forms of 3D keys (in MIOpen's gfx803/gfx906 find-dbs) are read as
the current form they stand for (:data:`OLD_KEY_FORMS`); ``format_key`` gives
that current form:

* ``NCHW`` as the layout of a 3D key: MIOpen used to write the input layout
  as ``NCHW`` for every default-layout tensor.  MIOpen's own key parsers read
  such a key positionally (``ParseProblemKey`` in ``test/gtest/db_sync.cpp``;
  ``src/conv/heur/parse_finddb.py`` ignores the layout), so it is ``NCDHW``.
* two pad values on a 3D key.  MIOpen's parsers cannot read it (they need three),
  but the key records the output size, which determines the missing pad: a key
  is accepted only when every reading of the two values (``HxW`` or ``DxH``),
  with the third pad solved from the sizes, gives the same single problem.

The padding mode (``same``/``valid``, see :mod:`kernelbench.problem`) is not in
a key either; a key whose output sizes are the ``same`` (or ``valid``) mode's and
not the default mode's is read as that mode (``pad_mode``), with the key's pads.

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
from kernelbench.problem import (
    DEFAULT_PAD_MODE,
    FIELDS,
    PAD_MODE_FIELD,
    ConvProblem,
    clamped_output_size,
    same_output_size,
    valid_output_size,
)

#: Rejection reasons.
MALFORMED_KEY = "malformed_key"
UNSUPPORTED_PRECISION = "unsupported_precision"
UNSUPPORTED_LAYOUT = "unsupported_layout"
UNSUPPORTED_FEATURE = "unsupported_key_feature"
INVALID_PROBLEM = "invalid_problem"

#: Old key forms that are read as the current form, with what they are (the import report counts them).
OLD_KEY_FORMS = {
    "3d_layout_nchw": "3D key with layout NCHW (MIOpen's old name for a default-layout 3D problem, NCDHW)",
    "3d_two_pads": "3D key with two pad values and layout NCHW (the third pad solved from the recorded sizes)",
}
#: Columns of :func:`parse_keys`' result besides ``key``, the problem fields, ``reason`` and ``detail``.
PROBLEM_COLUMNS = (*FIELDS, PAD_MODE_FIELD)

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
    # Old forms are rewritten to the current one before this pattern is applied (_modernise).
    return (
        f"^{one('kin_c')}-{sizes('kin', '-')}-{sizes('filter', 'x')}-{one('kout_c')}-{sizes('kout', '-')}-"
        f"{one('batch')}-{sizes('pad', 'x')}-{sizes('stride', 'x')}-{sizes('dilation', 'x')}-0-"
        f"(?P<layout>{layouts})-(?P<precision>{'|'.join(PRECISIONS)})-(?P<letter>[{''.join(DIRECTIONS)}])"
        f"(?:_g(?P<groups>[2-9]|[1-9][0-9]+))?$"
    )


_PATTERN_2D, _PATTERN_3D = _key_pattern(2), _key_pattern(3)
#: Keys that may be in an old 3D form: a 3D filter, then two pads or a layout NCHW (a cheap pre-filter).
_OLD_3D_CANDIDATE = r"^(?:[0-9]+-){4}[0-9]+x[0-9]+x[0-9]+-(?:[0-9]+-){5}(?:[0-9]+x[0-9]+-|(?:[0-9x]+-){3}[0-9]+-NCHW-)"
#: Whether ConvProblem's fields are PROBLEM_COLUMNS in order, which allows the faster positional construction.
_POSITIONAL = tuple(f.name for f in dataclasses.fields(ConvProblem)) == PROBLEM_COLUMNS


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
            of a valid convolution in any of MIOpen's padding modes.  An output
            size of 1 where the filter is larger than the padded input is valid:
            MIOpen's default mode clamps it, and so does :class:`ConvProblem`
            (see ``clamped_axes``).
    """
    row = parse_keys([key]).row(0, named=True)
    if row["reason"] is not None:
        raise MiopenKeyError(row["reason"], row["detail"])
    return ConvProblem(**{f: row[f] for f in PROBLEM_COLUMNS})


def parse_keys(keys: Iterable[str] | pl.Series, *, valid_shapes: set[tuple[Any, ...]] | None = None) -> pl.DataFrame:
    """Parse many keys at once.

    Returns one row per key, in order: ``key``, the :data:`PROBLEM_COLUMNS`
    (the problem fields in forward terms and ``pad_mode``; meaningless where the
    key is rejected), ``key_form`` (null for the current form, else one of
    :data:`OLD_KEY_FORMS`), ``reason`` (null when accepted, else a reason
    constant) and ``detail`` (the message).  Every accepted row is a valid
    :class:`ConvProblem`.

    ``valid_shapes`` is a cache for callers that parse a file in batches: the
    :data:`PROBLEM_COLUMNS` tuples (direction ``fwd``) already known to be valid;
    new valid ones are added to it.
    """
    keys = keys if isinstance(keys, pl.Series) else pl.Series(list(keys), dtype=pl.String)
    frame = _modernise_keys(pl.DataFrame({"key": keys.cast(pl.String)}).with_row_index("_i"))
    frame = frame.with_columns(
        pl.col("_key").str.extract_groups(_PATTERN_2D).alias("_m2"),
        pl.col("_key").str.extract_groups(_PATTERN_3D).alias("_m3"),
    )
    is_2d = pl.col("_m2").struct.field("letter").is_not_null()

    def group(name: str) -> pl.Expr:
        kind, _, axis = name.rpartition("_")
        from_2d = pl.lit(str(_DEPTH_OF_2D[kind])) if axis == "d" else pl.col("_m2").struct.field(name)
        text = pl.when(is_2d).then(from_2d).otherwise(pl.col("_m3").struct.field(name))
        return text.fill_null("1") if name == "groups" else text  # no _g suffix: one group

    frame = frame.select(
        "_i", "key", "_key", "key_form",
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
    ).with_columns(
        expr.alias(f"_{mode}_{a}") for a in "dhw" for mode, expr in _mode_sizes(a).items()
    )
    numbers = [pl.col(name) for name in _NUMBERS]

    def sizes_are(mode: str) -> pl.Expr:
        return pl.all_horizontal(pl.col(f"_{mode}_{a}") == pl.col(f"_y_{a}") for a in "dhw")

    # Same and valid apply only where every dilation is 1 (GetForwardOutputTensor); the default mode wins a tie.
    undilated = pl.all_horizontal(pl.col(f"dilation_{a}") == 1 for a in "dhw")
    pad_mode = (
        pl.when(sizes_are("default")).then(pl.lit(DEFAULT_PAD_MODE))
        .when(undilated & sizes_are("same")).then(pl.lit("same"))
        .when(undilated & sizes_are("valid")).then(pl.lit("valid"))
    )
    flag = (
        pl.when(~pl.col("_matched")).then(pl.lit("diagnose"))
        .when(pl.any_horizontal(n.is_null() | (n > _INT32_MAX) for n in numbers)).then(pl.lit("too_big"))
        .when(pl.any_horizontal(pl.col(f"stride_{a}") == 0 for a in "dhw")).then(pl.lit("stride_zero"))
        .when(pl.col(PAD_MODE_FIELD).is_null()).then(pl.lit("sizes"))
    )
    frame = frame.with_columns(pad_mode.alias(PAD_MODE_FIELD)).with_columns(flag.alias("_flag"))
    reasons = [_explain(row) for row in frame.filter(pl.col("_flag").is_not_null()).iter_rows(named=True)]
    reasons += _invalid_shapes(frame.filter(pl.col("_flag").is_null()),
                               set() if valid_shapes is None else valid_shapes)
    explained = pl.DataFrame(reasons, schema={"_i": pl.UInt32, "reason": pl.String, "detail": pl.String},
                             orient="row")
    return frame.join(explained, on="_i", how="left", maintain_order="left").select(
        "key", *PROBLEM_COLUMNS, "key_form", "reason", "detail")


def _mode_sizes(axis: str) -> dict[str, pl.Expr]:
    """The output size of ``axis`` (forward terms) in each padding mode, from the parsed columns."""
    size, filter_size, pad, stride, dilation = (pl.col(f"{kind}_{axis}")
                                                for kind in ("in", "filter", "pad", "stride", "dilation"))
    return {
        "default": clamped_output_size(size, filter_size, pad, stride, dilation),
        "same": same_output_size(size, stride),
        "valid": valid_output_size(size, filter_size, stride),
    }


def _explain(row: dict[str, Any]) -> tuple[int, str, str]:
    """``(_i, reason, detail)`` of a row that failed a vectorised check."""
    flag, dims = row["_flag"], row["spatial_dims"]
    if flag == "diagnose":
        error = _diagnose(row["_key"])
    elif flag == "too_big":
        error = MiopenKeyError(MALFORMED_KEY, f"a size is larger than {_INT32_MAX}")
    elif flag == "stride_zero":
        error = MiopenKeyError(INVALID_PROBLEM, "a stride is 0")
    else:
        axes = "hw" if dims == 2 else "dhw"
        error = _size_error(*([row[f"{kind}_{a}"] for a in axes] for kind in ("_y", "_default", "_same")))
    return row["_i"], error.reason, str(error)


def _invalid_shapes(frame: pl.DataFrame, valid: set[tuple[Any, ...]]) -> list[tuple[int, str, str]]:
    """``(_i, reason, detail)`` of rows that :class:`ConvProblem` rejects, validating each distinct problem once.

    Validity does not depend on the direction, and a find-db usually holds the
    F, B and W variant of a problem, so this saves most of the (slow) constructions.
    """
    shapes = frame.with_columns(pl.lit("fwd").alias("direction")).select(PROBLEM_COLUMNS)
    failures = []
    for shape in shapes.unique().iter_rows():
        if shape in valid:
            continue
        try:
            ConvProblem(*shape) if _POSITIONAL else ConvProblem(**dict(zip(PROBLEM_COLUMNS, shape, strict=True)))
        except InputError as exc:
            failures.append((*shape, str(exc)))
        else:
            valid.add(shape)
    if not failures:
        return []
    bad = pl.DataFrame(failures, schema={**shapes.schema, "detail": pl.String}, orient="row")
    hits = shapes.with_columns(frame["_i"]).join(bad, on=list(PROBLEM_COLUMNS), how="inner")
    return [(i, INVALID_PROBLEM, detail) for i, detail in hits.select("_i", "detail").iter_rows()]


def format_key(problem: ConvProblem) -> str:
    """MIOpen's key for ``problem`` in the current form (the inverse of :func:`parse_key`).

    The padding mode is not part of a key (MIOpen does not write it): a
    ``same``/``valid`` problem's key is the default-mode key with the same
    fields and that mode's output sizes.

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


def _size_error(key_sizes: list[int], derived: list[int], same: list[int]) -> MiopenKeyError:
    """Why the key's output sizes are none of MIOpen's padding modes' (``GetForwardOutputTensor``,
    src/convolution.cpp)."""
    shown = (f"output size {'x'.join(map(str, key_sizes))} in the key, {'x'.join(map(str, derived))} from input, "
             "filter, pad, stride and dilation")
    if key_sizes == same:
        return MiopenKeyError(INVALID_PROBLEM, f"{shown}: the 'same' padding mode's ceil(input / stride), but MIOpen "
                                               "uses that mode only when every dilation is 1")
    return MiopenKeyError(INVALID_PROBLEM, f"{shown} (nor the 'same' or 'valid' padding mode's)")


# -- old 3D key forms ----------------------------------------------------------


def _modernise_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_key`` (the key in the current form) and ``key_form`` (the old form it was in, else null).

    Only the few keys the cheap pattern flags are looked at one by one.
    """
    candidate = frame["key"].str.contains(_OLD_3D_CANDIDATE).fill_null(False)
    modern, forms = frame["key"].to_list(), [None] * frame.height
    for index in candidate.arg_true().to_list():
        modern[index], forms[index] = _modernise(modern[index])
    return frame.with_columns(pl.Series("_key", modern, dtype=pl.String), pl.Series("key_form", forms, dtype=pl.String))


def _modernise(key: str) -> tuple[str, str | None]:
    """``(current-form key, old form)`` of a 3D key in an old form; ``(key, None)`` when it is not one or is
    undecidable (then the grammar check names the reason)."""
    body, sep, suffix = key.partition("_")
    tokens = body.split("-")
    if len(tokens) != 17 or tokens[14] != SINGLE_TOKEN_LAYOUT[2]:
        return key, None  # only seen with layout NCHW; anything else is left to the grammar check
    tokens[14] = SINGLE_TOKEN_LAYOUT[3]
    form = "3d_layout_nchw"
    if tokens[10].count("x") == 1:
        pads = _solve_two_pads(tokens)
        if pads is None:
            return key, None
        tokens[10] = "x".join(map(str, pads))
        form = "3d_two_pads"
    return "-".join(tokens) + sep + suffix, form


def _solve_two_pads(tokens: list[str]) -> tuple[int, int, int] | None:
    """The ``(d, h, w)`` pads of a 3D key with two pad values, or ``None`` unless exactly one triple fits.

    The two values may be ``HxW`` or ``DxH``; the missing pad of each reading is
    solved from the key's sizes (default mode).  Keys that fail other checks give None.
    """
    try:
        kin = [int(t) for t in tokens[1:4]]
        kout = [int(t) for t in tokens[6:9]]
        filt, stride, dilation = ([int(v) for v in tokens[i].split("x")] for i in (4, 11, 12))
        known = [int(v) for v in tokens[10].split("x")]
    except ValueError:
        return None
    if len(filt) != 3 or len(stride) != 3 or len(dilation) != 3 or 0 in stride:
        return None
    x, y = (kin, kout) if tokens[16] == "F" else (kout, kin)  # backward keys start with dy

    def fits(axis: int, pad: int) -> bool:
        return clamped_output_size(x[axis], filt[axis], pad, stride[axis], dilation[axis]) == y[axis]

    found = set()
    for missing in (0, 2):  # HxW recorded (depth missing), or DxH recorded (width missing)
        given = dict(zip([a for a in range(3) if a != missing], known, strict=True))
        if not all(fits(a, p) for a, p in given.items()):
            continue
        # The output grows by one every stride/2 pad steps; past this bound it only grows.
        limit = stride[missing] * (y[missing] + 1) + dilation[missing] * filt[missing]
        for pad in range(limit + 1):
            if fits(missing, pad):
                found.add(tuple(given.get(a, pad) for a in range(3)))
    return found.pop() if len(found) == 1 else None


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
            # Old find-db files (gfx803/gfx906) hold 3D keys with two pads and layout NCHW; those whose sizes
            # determine the third pad were rewritten before (_modernise), so this one's do not.
            raise MiopenKeyError(UNSUPPORTED_FEATURE, "3D key with two pad values (an old MIOpen key form) whose "
                                                      "sizes do not determine the third pad")
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
