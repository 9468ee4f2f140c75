"""MIOpen find-db import: keys, entries, devices, robustness, the CLI, and the real MI100 file.

Every find-db line here is synthetic (written by these tests).  The real MI100
file is read only through ``KERNELBENCH_MIOPEN_FDB``; without it those tests
skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import random
import threading
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cli import kernelbench as kernelbench_cli
from kernelbench.devices import descriptor
from kernelbench.errors import InputError
from kernelbench.importers import miopen as importer
from kernelbench.importers import textfile
from kernelbench.importers.miopen import COVERAGE, SOURCE, import_miopen_fdb
from kernelbench.validate import problem_ids
from kernelbench.importers.miopen_device import MiopenDevice, device_from_file_name, resolve_device
from kernelbench.importers.miopen_fdb import FdbFormat, describe_unrecognised, detect_format, parse_entries
from kernelbench.importers.miopen_key import MiopenKeyError, format_key, parse_key, parse_keys
from kernelbench.problem import FIELDS, ConvProblem, problem_2d, problem_id_of
from kernelbench.schema import read_dataset
from tests.conftest import in_ci

FDB_ENV = "KERNELBENCH_MIOPEN_FDB"
FWD_DIRECT = "miopenConvolutionFwdAlgoDirect"
FWD_IGEMM = "miopenConvolutionFwdAlgoImplicitGEMM"
BWD_WINO = "miopenConvolutionBwdDataAlgoWinograd"
WRW_GEMM = "miopenConvolutionBwdWeightsAlgoGEMM"

# Synthetic keys (written for these tests, in MIOpen's key format).
KEY_FWD = "64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F"
KEY_BWD = "128-28-28-3x3-64-56-56-16-1x1-2x2-1x1-0-NCHW-FP16-B"  # MIOpen's "in" is dy: 128 ch, 28x28
KEY_WRW = "128-28-28-3x3-64-56-56-16-1x1-2x2-1x1-0-NCHW-FP16-W"
KEY_3D = "16-8-32-32-3x3x3-32-4-16-16-4-1x1x1-2x2x2-1x1x1-0-NCDHW-BF16-F"
KEY_NHWC = "32-14-14-1x1-64-14-14-8-0x0-1x1-1x1-0-NHWC-NHWC-NHWC-FP16-F"
KEY_NDHWC = "8-4-8-8-1x3x3-8-4-8-8-2-0x1x1-1x1x1-1x1x1-0-NDHWC-NDHWC-NDHWC-FP32-W"
KEY_DEPTHWISE = "96-112-112-3x3-96-56-56-64-1x1-2x2-1x1-0-NCHW-FP32-F_g96"
KEY_INT8 = "3-224-224-7x7-64-112-112-1-3x3-2x2-1x1-0-NCHW-INT8-F"
KEY_DILATED = "32-20-20-3x3-32-16-16-2-0x0-1x1-2x2-0-NCHW-FP32-F"
GOOD_KEYS = [KEY_FWD, KEY_BWD, KEY_WRW, KEY_3D, KEY_NHWC, KEY_NDHWC, KEY_DEPTHWISE, KEY_INT8, KEY_DILATED]


def v2(solver: str, time_ms: object, workspace: object, algorithm: str) -> str:
    return f"{solver}:{time_ms},{workspace},{algorithm}"


def write(path: Path, lines: list[str] | bytes, *, compress: str | None = None) -> Path:
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    if compress == "bz2":
        data = bz2.compress(data)
    elif compress == "gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- keys


def test_forward_key_maps_sizes_in_order():
    p = parse_key(KEY_FWD)
    assert (p.direction, p.dtype, p.layout, p.spatial_dims) == ("fwd", "fp32", "NCHW", 2)
    assert (p.in_channels, p.in_h, p.in_w, p.out_channels, p.out_h, p.out_w, p.batch) == (64, 56, 56, 128, 56, 56, 32)
    assert (p.filter_h, p.filter_w, p.pad_h, p.stride_h, p.dilation_w, p.groups) == (3, 3, 1, 1, 1, 1)
    assert (p.in_d, p.filter_d, p.pad_d, p.stride_d, p.dilation_d) == (1, 1, 0, 1, 1)


@pytest.mark.parametrize("key, direction", [(KEY_BWD, "bwd_data"), (KEY_WRW, "bwd_weights")])
def test_backward_keys_are_converted_to_forward_terms(key, direction):
    # MIOpen serialises (dy, w, dx) for both backward directions: the first sizes are the forward output.
    p = parse_key(key)
    assert p.direction == direction and p.dtype == "fp16"
    assert (p.in_channels, p.in_h, p.in_w) == (64, 56, 56)
    assert (p.out_channels, p.out_h, p.out_w) == (128, 28, 28)
    assert (p.stride_h, p.stride_w, p.batch) == (2, 2, 16)


def test_3d_grouped_int8_dilated_and_channels_last_keys():
    p3 = parse_key(KEY_3D)
    assert (p3.spatial_dims, p3.layout, p3.dtype) == (3, "NCDHW", "bf16")
    assert (p3.in_d, p3.in_h, p3.out_d, p3.out_h, p3.stride_d, p3.filter_d) == (8, 32, 4, 16, 2, 3)
    assert parse_key(KEY_NHWC).layout == "NHWC"
    ndhwc = parse_key(KEY_NDHWC)
    assert (ndhwc.layout, ndhwc.direction, ndhwc.pad_d, ndhwc.pad_h) == ("NDHWC", "bwd_weights", 0, 1)
    dw = parse_key(KEY_DEPTHWISE)
    assert (dw.groups, dw.is_depthwise, dw.out_h) == (96, True, 56)
    assert parse_key(KEY_INT8).dtype == "int8"
    assert (parse_key(KEY_DILATED).dilation_h, parse_key(KEY_DILATED).out_h) == (2, 16)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_parse_then_format_gives_the_same_key(key):
    assert format_key(parse_key(key)) == key


@pytest.mark.parametrize(
    ("key", "clamped_axes"),
    [
        ("8-1-1-3x3-16-1-1-4-0x0-1x1-1x1-0-NCHW-FP32-F", "hw"),  # 3x3 filter on a 1x1 input: MIOpen writes 1x1
        ("16-1-1-4x4-8-1-1-4-0x0-1x1-1x1-0-NCHW-FP32-B", "hw"),  # backward: the input x is the second tensor
        ("8-1-2-3x3-16-1-4-4-0x0-1x1-1x1-0-NCHW-FP16-W", "h"),
    ],
)
def test_keys_whose_output_miopen_clamps_to_one_parse_and_round_trip(key, clamped_axes):
    p = parse_key(key)
    assert (p.out_h, p.clamped_axes) == (1, clamped_axes)
    assert format_key(p) == key


def test_format_then_parse_gives_the_same_problem():
    for direction in ("fwd", "bwd_data", "bwd_weights"):
        p = problem_2d(batch=4, in_channels=6, out_channels=9, in_h=17, in_w=11, filter_h=5, filter_w=3, pad_h=2,
                       stride_w=2, dilation_h=2, groups=3, dtype="bf16", layout="NHWC", direction=direction)
        assert parse_key(format_key(p)) == p


@pytest.mark.parametrize(
    "key, reason, words",
    [
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP64-F", "unsupported_precision", "FP64"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-INT8INT8INT32-F", "unsupported_precision", "INT8INT8INT32"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NHWC-NCHW-NCHW-FP32-F", "unsupported_layout", "NHWC-NCHW-NCHW"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-CHWN-CHWN-CHWN-FP32-F", "unsupported_layout", "CHWN"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NHWC-FP32-F", "unsupported_layout", "NHWC"),
        ("16-8-32-32-3x3x3-32-4-16-16-4-1x1x1-2x2x2-1x1x1-0-NHWC-NHWC-NHWC-FP32-F", "unsupported_layout", "3D"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-1-NCHW-FP32-F", "unsupported_key_feature", "bias"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F_ciFP8", "unsupported_key_feature", "cast"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F_g2_coBF8", "unsupported_key_feature", "cast"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-NCHW-NCHW-FP32-F", "malformed_key", "once"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-X", "malformed_key", "direction"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F_g1", "malformed_key", "g1"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F_zz", "malformed_key", "suffix"),
        ("064-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F", "malformed_key", "decimal"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32", "malformed_key", "fields"),
        ("64-5a-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F", "malformed_key", "decimal"),
        ("64-56-56-3x3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F", "malformed_key", "filter"),
        ("", "malformed_key", "filter"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F\x00\xff", "malformed_key", ""),
        ("64-99999999999-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F", "malformed_key", "larger"),
        ("64-56-56-3x3-128-56-56-32-1x1-0x1-1x1-0-NCHW-FP32-F", "invalid_problem", "stride"),
        ("64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F_g3", "invalid_problem", "divisible"),
        ("0-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP32-F", "invalid_problem", "in_channels"),
        ("64-56-56-3x3-128-55-56-32-1x1-1x1-1x1-0-NCHW-FP32-F", "invalid_problem", "55x56"),
        # A clamped axis must say 1, not 2.
        ("8-1-1-3x3-16-2-1-4-0x0-1x1-1x1-0-NCHW-FP32-F", "invalid_problem", "2x1 in the key, 1x1"),
        # Two pads on a 3D key whose sizes fit depth pad 0 and 1 (stride 5): the problem is not determined.
        ("16-8-14-14-1x1x1-32-2-14-14-4-0x0-5x1x1-1x1x1-0-NCHW-FP32-F", "unsupported_key_feature", "third pad"),
        # 'same' sizes (ceil(10 / 2) = 5) with dilation 2: MIOpen uses the default mode then, which gives 3.
        ("128-10-10-3x3-256-5-5-100-0x0-2x2-2x2-0-NCHW-FP32-F", "invalid_problem", "dilation is 1"),
        ("128-10-10-3x3-256-7-7-100-0x0-2x2-1x1-0-NCHW-FP32-F", "invalid_problem", "'valid'"),
    ],
)
def test_keys_the_model_cannot_hold_are_rejected_with_a_reason(key, reason, words):
    with pytest.raises(MiopenKeyError) as info:
        parse_key(key)
    assert info.value.reason == reason
    assert words in str(info.value)
    assert isinstance(info.value, InputError)


# ---------------------------------------------------------------- old key forms and padding modes
# Synthetic keys in the two old 3D forms of MIOpen's gfx803/gfx906 find-dbs, and in 'same'/'valid' mode.

OLD_NCHW_3D = "16-8-32-32-3x3x3-32-4-16-16-4-1x1x1-2x2x2-1x1x1-0-NCHW-FP32-F"
OLD_TWO_PADS = "16-4-14-14-1x1x1-32-4-14-14-4-0x0-1x1x1-1x1x1-0-NCHW-FP32-F"
# 3x3x3 filter, stride 1, sizes kept: both readings of "1x1" (HxW or DxH) solve the third pad to 1.
OLD_TWO_PADS_SOLVED = "8-8-16-16-3x3x3-8-8-16-16-2-1x1-1x1x1-1x1x1-0-NCHW-FP16-B"
KEY_SAME = "128-10-10-3x3-256-5-5-100-0x0-2x2-1x1-0-NCHW-FP32-F"  # ceil(10 / 2) = 5; pad 0 would give 4
KEY_SAME_BWD = "256-5-5-3x3-128-10-10-100-1x1-2x2-1x1-0-NCHW-FP32-W"  # 'in' is dy; x is 10x10, and pad 1 gives 5
KEY_VALID = "8-10-10-3x3-8-8-8-2-1x1-1x1-1x1-0-NCHW-FP32-F"  # valid ignores the pad: ceil((10-3+1)/1) = 8


def test_old_3d_key_with_layout_nchw_is_read_as_ncdhw():
    p = parse_key(OLD_NCHW_3D)
    assert (p.spatial_dims, p.layout, p.pad_mode) == (3, "NCDHW", "default")
    assert (p.in_d, p.in_h, p.in_w, p.out_d, p.out_h, p.out_w) == (8, 32, 32, 4, 16, 16)  # positional, as MIOpen
    modern = OLD_NCHW_3D.replace("-NCHW-", "-NCDHW-")
    assert format_key(p) == modern and parse_key(modern) == p
    assert parse_keys([OLD_NCHW_3D, modern])["key_form"].to_list() == ["3d_layout_nchw", None]


def test_old_3d_key_with_two_pads_takes_the_pad_its_sizes_determine():
    p = parse_key(OLD_TWO_PADS)
    assert (p.pad_d, p.pad_h, p.pad_w, p.layout) == (0, 0, 0, "NCDHW")
    assert format_key(p) == OLD_TWO_PADS.replace("-0x0-", "-0x0x0-").replace("-NCHW-", "-NCDHW-")
    solved = parse_key(OLD_TWO_PADS_SOLVED)
    assert (solved.direction, solved.pad_d, solved.pad_h, solved.pad_w) == ("bwd_data", 1, 1, 1)
    assert (solved.out_d, solved.out_h, solved.out_w) == (8, 16, 16)
    assert parse_keys([OLD_TWO_PADS])["key_form"].to_list() == ["3d_two_pads"]


def test_same_and_valid_padding_modes_are_read_from_the_sizes():
    same = parse_key(KEY_SAME)
    assert (same.pad_mode, same.out_h, same.out_w, same.pad_h) == ("same", 5, 5, 0)
    assert same.padding("h") == (0, 1)  # (5 - 1) * 2 + 3 - 10: one element after the end, none before
    assert format_key(same) == KEY_SAME and parse_key(format_key(same)) == same
    default = ConvProblem(**{**same.as_dict(), "pad_mode": "default"})
    assert default.out_h == 4 and default.problem_id != same.problem_id
    assert default.problem_id == problem_id_of(default.as_dict())
    valid = parse_key(KEY_VALID)
    assert (valid.pad_mode, valid.out_h, valid.pad_h) == ("valid", 8, 1)
    assert format_key(valid) == KEY_VALID
    assert "same" in same.describe() and not same.clamped_axes


def test_backward_key_in_same_mode_uses_the_forward_sizes():
    p = parse_key(KEY_SAME_BWD)
    assert (p.direction, p.in_h, p.out_h, p.pad_h) == ("bwd_weights", 10, 5, 1)
    # pad 1 with the floor formula also gives 5: the default mode wins the tie
    assert p.pad_mode == "default"
    odd = parse_key("256-6-6-3x3-128-11-11-100-0x0-2x2-1x1-0-NCHW-FP32-B")  # ceil(11 / 2) = 6; floor gives 5
    assert (odd.direction, odd.in_h, odd.out_h, odd.pad_mode) == ("bwd_data", 11, 6, "same")


def test_no_kernel_applies_to_a_problem_in_same_or_valid_mode():
    from kernelbench.kernels.base import PAD_MODE_REASON
    from kernelbench.kernels.registry import all_kernels

    same = problem_2d(batch=1, in_channels=2, out_channels=2, in_h=9, in_w=9, filter_h=3, filter_w=3, stride_h=2,
                      stride_w=2)
    same = ConvProblem(**{**same.as_dict(), "pad_mode": "same"})
    kernels = all_kernels("cpu")
    assert kernels and {k.reason_not_applicable(same) for k in kernels} == {PAD_MODE_REASON}


def test_import_reads_old_forms_and_padding_modes_and_reports_them(tmp_path):
    lines = [f"{key}={v2('ConvA', 0.5 + i, 0, FWD_DIRECT if key[-1] == 'F' else BWD_WINO)}"
             for i, key in enumerate([KEY_FWD, OLD_NCHW_3D, OLD_TWO_PADS, OLD_TWO_PADS_SOLVED, KEY_SAME, KEY_VALID])]
    # The same problem as OLD_NCHW_3D in the current form, later in the file: the current form wins.
    lines.append(f"{OLD_NCHW_3D.replace('-NCHW-', '-NCDHW-')}={v2('ConvB', 9.0, 0, FWD_DIRECT)}")
    result = import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", lines))
    report = result.report
    assert (report.lines, report.keys, report.rows) == (7, 6, 6)
    assert dict(report.old_key_forms) == {"3d_two_pads": 2}
    assert dict(report.pad_modes) == {"same": 1, "valid": 1}
    assert [(s.reason, s.count, s.first_lines) for s in report.skipped_lines] == [("duplicate_key", 1, (2,))]
    frame = result.frame
    assert frame.filter(pl.col("kernel") == "ConvB")["problem_id"].to_list() == [parse_key(OLD_NCHW_3D).problem_id]
    assert sorted(frame["pad_mode"].to_list()) == ["default"] * 4 + ["same", "valid"]
    out = tmp_path / "x.parquet"
    from kernelbench.schema import write_dataset
    write_dataset(frame, out, result.metadata)
    back, meta = read_dataset(out)
    assert back.filter(pl.col("pad_mode") == "same").select("out_h", "out_w").rows() == [(5, 5)]
    assert meta["import_report"]["pad_modes"] == {"same": 1, "valid": 1}
    for row in back.iter_rows(named=True):
        assert row["problem_id"] == parse_key(row["miopen_key"]).problem_id
    assert "old form: 3d_two_pads" in report.format() and "'same' padding mode" in report.format()


def test_parse_keys_agrees_with_parse_key_and_keeps_order():
    keys = [KEY_WRW, "junk", KEY_3D, "64-56-56-3x3-128-56-56-32-1x1-1x1-1x1-0-NCHW-FP64-F", KEY_FWD]
    frame = parse_keys(keys)
    assert frame["key"].to_list() == keys
    assert frame["reason"].to_list() == [None, "malformed_key", None, "unsupported_precision", None]
    for row in frame.filter(pl.col("reason").is_null()).iter_rows(named=True):
        assert ConvProblem(**{f: row[f] for f in FIELDS}) == parse_key(row["key"])


def test_parse_keys_reuses_and_fills_the_shape_cache():
    cache: set = set()
    parse_keys([KEY_BWD, KEY_WRW], valid_shapes=cache)
    assert len(cache) == 1  # B and W describe the same convolution
    assert parse_keys([KEY_BWD], valid_shapes=cache)["reason"].to_list() == [None]


def test_problem_ids_match_problem_id_of():
    frame = parse_keys(GOOD_KEYS).select(FIELDS)
    expected = [problem_id_of(row) for row in frame.iter_rows(named=True)]
    assert problem_ids(frame).to_list() == expected == [parse_key(k).problem_id for k in GOOD_KEYS]


# ---------------------------------------------------------------- entries


def test_detect_format_recognises_both_variants():
    assert detect_format(v2("ConvA", 0.1, 0, FWD_DIRECT)) is FdbFormat.V2
    assert detect_format(f"{FWD_DIRECT}:ConvA,0.1,0,{FWD_DIRECT},<unused>") is FdbFormat.V1
    assert detect_format("junk;x:y") is None
    assert "perf-db" in describe_unrecognised(["ConvAsm1x1U:1,16,1,64,2,2,1,4"])
    assert "unknown entry format" in describe_unrecognised(["a:b:c"])


def entries(values: list[tuple[str, str]], fmt: FdbFormat = FdbFormat.V2):
    lines = pl.DataFrame({"line": list(range(1, len(values) + 1)), "direction": [d for d, _ in values],
                          "value": [v for _, v in values]})
    return parse_entries(lines, fmt)


def test_v2_entries_become_rows_with_family_names():
    kept, skipped = entries([("fwd", ";".join([v2("ConvA", 0.5, 0, FWD_DIRECT), v2("ConvB<3-4>", "1e-3", 4096,
                                                                                        FWD_IGEMM)]) + ";"),
                             ("bwd_data", v2("ConvC", 2, 8, BWD_WINO))])
    assert skipped.is_empty()
    assert kept.rows() == [(1, "ConvA", 0.5, 0, "direct"), (1, "ConvB<3-4>", 0.001, 4096, "implicit_gemm"),
                           (2, "ConvC", 2.0, 8, "winograd")]


def test_v1_entries_take_solver_time_workspace_and_ignore_the_kernel_cache_fields():
    value = (f"{FWD_DIRECT}:ConvOclDirectFwd,0.25,0,{FWD_DIRECT},<unused>;"
             f"miopenConvolutionFwdAlgoGEMM:GemmFwdRest,3.5,1024,rocBlas,0_0_784_72")
    kept, skipped = entries([("fwd", value)], FdbFormat.V1)
    assert skipped.is_empty()
    assert kept.rows() == [(1, "ConvOclDirectFwd", 0.25, 0, "direct"), (1, "GemmFwdRest", 3.5, 1024, "gemm")]


@pytest.mark.parametrize(
    "item, reason",
    [
        (v2("ConvA", 0.0, 0, FWD_DIRECT), "nonpositive_time"),
        (v2("ConvA", -1, 0, FWD_DIRECT), "nonpositive_time"),
        (v2("ConvA", "nan", 0, FWD_DIRECT), "non_numeric_time"),
        (v2("ConvA", "inf", 0, FWD_DIRECT), "non_numeric_time"),
        (v2("ConvA", "fast", 0, FWD_DIRECT), "non_numeric_time"),
        (v2("ConvA", "", 0, FWD_DIRECT), "non_numeric_time"),
        (v2("ConvA", "1e308", 0, FWD_DIRECT), "implausible_time"),
        (v2("ConvA", "1e-320", 0, FWD_DIRECT), "implausible_time"),
        (v2("ConvA", "2e7", 0, FWD_DIRECT), "implausible_time"),
        (v2("ConvA", 1, -5, FWD_DIRECT), "bad_workspace"),
        (v2("ConvA", 1, 2.5, FWD_DIRECT), "bad_workspace"),
        (v2("ConvA", 1, 10**20, FWD_DIRECT), "bad_workspace"),
        (v2("ConvA", 1, 0, "miopenConvolutionFwdAlgoMagic"), "unknown_algorithm"),
        (v2("ConvA", 1, 0, WRW_GEMM), "algorithm_direction_mismatch"),
        ("ConvA-0.1,0," + FWD_DIRECT, "malformed_entry"),
        ("ConvA:0.1,0", "malformed_entry"),
        ("ConvA:0.1,0,x,y", "malformed_entry"),
        ("Conv A:0.1,0," + FWD_DIRECT, "malformed_entry"),
        (":0.1,0," + FWD_DIRECT, "malformed_entry"),
        ("", "malformed_entry"),
        (f"{FWD_DIRECT}:ConvA,0.1,0,{FWD_DIRECT},<unused>", "other_fdb_format"),
    ],
)
def test_bad_entries_are_skipped_with_a_reason(item, reason):
    good = v2("ConvGood", 0.3, 0, FWD_DIRECT)
    kept, skipped = entries([("fwd", f"{good};{item};{good.replace('Good', 'Fine')}")])
    assert kept["kernel"].to_list() == ["ConvGood", "ConvFine"]
    assert skipped.select("line", "entry", "reason").rows() == [(1, 2, reason)]


def test_a_repeated_solver_keeps_its_first_entry():
    kept, skipped = entries([("fwd", ";".join([v2("ConvA", 1, 0, FWD_DIRECT), v2("ConvA", 0.5, 0, FWD_DIRECT)]))])
    assert kept.rows() == [(1, "ConvA", 1.0, 0, "direct")]
    assert skipped["reason"].to_list() == ["duplicate_solver"]


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize(
    "name, arch, num_cu, backend",
    [
        ("gfx90878.HIP.fdb.txt.bz2", "gfx908", 120, "HIP"),
        ("gfx906_60.OpenCL.fdb.txt", "gfx906", 60, "OpenCL"),
        ("gfx1030_36.HIP.fdb.txt", "gfx1030", 36, "HIP"),
        ("gfx90a6e.HIP.fdb.txt", "gfx90a", 110, "HIP"),
        ("gfx942130.HIP.fdb.txt.bz2", "gfx942", 304, "HIP"),
        ("gfx803_64.fdb.txt", "gfx803", 64, None),
    ],
)
def test_device_from_miopen_file_names(name, arch, num_cu, backend):
    assert device_from_file_name(Path("/x") / name) == MiopenDevice(arch, num_cu, backend)


def test_device_label_name_and_overrides():
    mi100 = resolve_device("gfx90878.HIP.fdb.txt")
    assert (mi100.label, mi100.name) == ("miopen:gfx908:120", "AMD Instinct MI100")
    assert resolve_device("gfx90878.HIP.fdb.txt", num_cu=104).label == "miopen:gfx908:104"
    assert resolve_device("mine.txt", arch="gfx90a", num_cu=104) == MiopenDevice("gfx90a", 104, None)
    assert device_from_file_name("mine.fdb.txt") is None
    with pytest.raises(InputError, match="--arch and --num-cu"):
        resolve_device("mine.txt", arch="gfx90a")
    with pytest.raises(InputError, match="--arch"):
        resolve_device("gfx90878.HIP.fdb.txt", arch="MI100")
    with pytest.raises(InputError, match="--num-cu"):
        resolve_device("gfx90878.HIP.fdb.txt", num_cu=0)


# ---------------------------------------------------------------- whole files


def small_v2_lines() -> list[str]:
    return [
        f"{KEY_FWD}={v2('ConvA', 0.5, 0, FWD_DIRECT)};{v2('ConvB', 0.75, 4096, FWD_IGEMM)}",
        f"{KEY_BWD}={v2('ConvC', 1.25, 8, BWD_WINO)}",
        f"{KEY_WRW}={v2('GemmWrw', 2.0, 64, WRW_GEMM)}",
        f"{KEY_3D}={v2('ConvD', 0.125, 0, FWD_DIRECT)}",
    ]


@pytest.mark.parametrize("compress", [None, "bz2", "gz"])
def test_import_builds_the_dataset_rows_and_metadata(tmp_path, compress):
    path = write(tmp_path / "gfx90878.HIP.fdb.txt", small_v2_lines(), compress=compress)
    result = import_miopen_fdb(path)
    frame = result.frame
    assert frame.height == 5 and frame["problem_id"].n_unique() == 4
    assert frame.select("kernel", "time_ms", "workspace_bytes", "algorithm").rows() == [
        ("ConvA", 0.5, 0, "direct"), ("ConvB", 0.75, 4096, "implicit_gemm"), ("ConvC", 1.25, 8, "winograd"),
        ("GemmWrw", 2.0, 64, "gemm"), ("ConvD", 0.125, 0, "direct")]
    assert set(frame["status"]) == {"ok"} and set(frame["source"]) == {SOURCE}
    assert set(frame["device"]) == {"miopen:gfx908:120"}
    assert frame["samples"].null_count() == frame.height
    assert frame["miopen_key"].to_list() == [KEY_FWD, KEY_FWD, KEY_BWD, KEY_WRW, KEY_3D]
    for row in frame.iter_rows(named=True):
        problem = parse_key(row["miopen_key"])
        assert row["problem_id"] == problem.problem_id
        assert (row["out_d"], row["out_h"], row["out_w"]) == (problem.out_d, problem.out_h, problem.out_w)
        assert {f: row[f] for f in FIELDS} == problem.as_dict()
    meta = result.metadata
    assert (meta["source"], meta["coverage"], meta["fdb_format"]) == (SOURCE, COVERAGE, "find-db-2.0")
    assert meta["device"] == {"arch": "gfx908", "num_cu": 120, "name": "AMD Instinct MI100", "backend": "HIP",
                              "label": "miopen:gfx908:120", "descriptor": descriptor("gfx908_120").as_dict()}
    assert meta["miopen_fdb_file"] == path.name and meta["format"] == "long"
    assert meta["devices"] == {"miopen:gfx908:120": [meta["device"]]}
    assert set(frame["run_id"]) == {meta["run_id"]} and meta["run_id"].startswith("miopen-")
    assert meta["import_report"]["rows"] == 5 and meta["import_report"]["skipped_lines"] == {}
    assert {"created", "kernelbench_version", "coverage_note"} <= set(meta)


def test_imported_rows_hold_the_clamped_output_size(tmp_path):
    key = "8-1-1-3x3-16-1-1-4-0x0-1x1-1x1-0-NCHW-FP32-F"  # 3x3 on 1x1: the floor formula gives -1, MIOpen 1
    result = import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", [f"{key}={v2('ConvA', 0.5, 0, FWD_DIRECT)}"]))
    assert result.frame.select("out_d", "out_h", "out_w").rows() == [(1, 1, 1)]
    assert result.frame["problem_id"].to_list() == [parse_key(key).problem_id]


def test_import_of_a_find_db_1_0_file(tmp_path):
    lines = [(f"{KEY_FWD}={FWD_DIRECT}:ConvOclDirectFwd,0.5,0,{FWD_DIRECT},<unused>;"
             f"miopenConvolutionFwdAlgoGEMM:GemmFwdRest,1.5,99,rocBlas,<unused>"),
             f"{KEY_BWD}={BWD_WINO}:ConvBinWinogradRxSf2x3g1,0.25,0,{BWD_WINO},not used"]
    result = import_miopen_fdb(write(tmp_path / "gfx906_60.OpenCL.fdb.txt", lines))
    assert result.metadata["fdb_format"] == "find-db-1.0"
    assert result.metadata["device"]["label"] == "miopen:gfx906:60"
    assert result.frame.select("kernel", "algorithm", "time_ms").rows() == [
        ("ConvOclDirectFwd", "direct", 0.5), ("GemmFwdRest", "gemm", 1.5),
        ("ConvBinWinogradRxSf2x3g1", "winograd", 0.25)]


def corrupted_file(tmp_path: Path) -> Path:
    good = small_v2_lines()
    junk = [
        good[0].encode(),                                          # 1 ok
        b"",                                                       # 2 blank: ignored
        good[1][:40].encode(),                                     # 3 truncated: no '='
        good[2].replace(";", ",").replace("=", ":").encode(),      # 4 wrong separators
        b"\x00\xff\xfe binary junk \x80\x81",                      # 5 not UTF-8
        (good[3] + "\r").encode(),                                 # 6 ok, CRLF ending
        good[0].encode(),                                          # 7 duplicate key
        f"{KEY_NHWC}=".encode(),                                   # 8 no entries
        f"{KEY_NHWC}={v2('ConvE', 0.0, 0, FWD_DIRECT)};{v2('ConvF', 'x', 0, FWD_DIRECT)}".encode(),  # 9 no usable
        f"{KEY_DEPTHWISE.replace('FP32', 'FP64')}={v2('ConvG', 1, 0, FWD_DIRECT)}".encode(),  # 10 precision
        b"   ",                                                    # 11 whitespace: ignored
        f"{KEY_INT8}={v2('ConvH', 0.5, 0, FWD_DIRECT)};{v2('ConvI', 0.5, 0, WRW_GEMM)}".encode(),  # 12 one bad
        f"{KEY_DILATED}={v2('ConvJ', 0.5, 0, FWD_DIRECT)}".encode()[:-9],  # 13 truncated in the algorithm
    ]
    return write(tmp_path / "gfx90878.HIP.fdb.txt", b"\n".join(junk))


def test_corrupted_lines_are_skipped_counted_and_reported(tmp_path):
    result = import_miopen_fdb(corrupted_file(tmp_path))
    report = result.report
    assert result.frame["miopen_key"].unique(maintain_order=True).to_list() == [KEY_FWD, KEY_3D, KEY_INT8]
    assert report.lines == 11 and report.keys == 3 and report.rows == 4
    lines = {s.reason: (s.count, s.first_lines) for s in report.skipped_lines}
    assert lines == {"no_key": (2, (3, 4)), "not_text": (1, (5,)), "duplicate_key": (1, (7,)),
                     "no_entries": (1, (8,)), "unsupported_precision": (1, (10,))}
    entries_ = {s.reason: (s.count, s.first_lines) for s in report.skipped_entries}
    assert entries_ == {"nonpositive_time": (1, (9,)), "non_numeric_time": (1, (9,)),
                        "algorithm_direction_mismatch": (1, (12,)), "unknown_algorithm": (1, (13,))}
    assert report.keys_without_entries == 2  # lines 9 and 13
    text = report.format()
    assert "no_key x2 (line 3, 4)" in text and "2 valid keys had no usable entry" in text
    assert result.metadata["import_report"]["skipped_lines"]["not_text"]["first_lines"] == [5]


def test_strict_stops_at_the_first_skip_with_one_line(tmp_path):
    with pytest.raises(InputError) as info:
        import_miopen_fdb(corrupted_file(tmp_path), strict=True)
    message = str(info.value)
    assert "line 3" in message and "no_key" in message and "\n" not in message


def test_strict_reports_an_entry_before_a_later_bad_line(tmp_path):
    lines = small_v2_lines()
    lines[1] = lines[1].replace("1.25", "0")
    lines.append("garbage")
    with pytest.raises(InputError, match=r"line 2, entry 1: nonpositive_time"):
        import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", lines), strict=True)
    assert import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", small_v2_lines()), strict=True).report.rows == 5


def test_batches_keep_duplicates_order_and_strictness(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "BATCH_LINES", 2)
    lines = [*small_v2_lines(), small_v2_lines()[0], small_v2_lines()[1].replace("1.25", "0.0")]
    result = import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", lines))
    assert result.frame["miopen_key"].to_list() == [KEY_FWD, KEY_FWD, KEY_BWD, KEY_WRW, KEY_3D]
    assert [(s.reason, s.first_lines) for s in result.report.skipped_lines] == [("duplicate_key", (5, 6))]
    with pytest.raises(InputError, match="line 5: duplicate_key"):
        import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", lines), strict=True)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty file"),
        (b"\n\n   \n", "empty file"),
        (b"SQLite format 3\x00" + bytes(100), "SQLite"),
        (b"k=ConvAsm1x1U:1,16,1,64,2,2,1,4\n", "perf-db"),
        (b"hello world\nno find db here\n", "not a MIOpen find-db"),
        (bytes(random.Random(7).randrange(256) for _ in range(50_000)), "find-db"),
        (bz2.compress(b"x" * 10_000)[:-20], "corrupt bzip2"),
        (b"x" * (textfile.MAX_LINE_BYTES + 10), "longer than"),
    ],
    ids=["empty", "blank", "sqlite", "perf-db", "text", "random-bytes", "corrupt-bz2", "huge-line"],
)
def test_garbage_files_give_one_clear_error(tmp_path, content, words):
    path = tmp_path / "gfx90878.HIP.fdb.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=words):
        import_miopen_fdb(path)


def test_a_file_whose_entries_are_all_unusable_is_an_error(tmp_path):
    lines = [f"{KEY_FWD}={v2('ConvA', 0.0, 0, FWD_DIRECT)}"]
    with pytest.raises(InputError, match=r"no usable find-db entry in 1 lines.*nonpositive_time x1"):
        import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", lines))


def test_missing_file_and_unknown_device(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        import_miopen_fdb(tmp_path / "gfx90878.HIP.fdb.txt")
    with pytest.raises(InputError, match="--arch and --num-cu"):
        import_miopen_fdb(write(tmp_path / "find.txt", small_v2_lines()))
    assert import_miopen_fdb(write(tmp_path / "find.txt", small_v2_lines()), arch="gfx90a", num_cu=104).frame[
        "device"].unique().to_list() == ["miopen:gfx90a:104"]


def test_lines_survive_chunk_boundaries_and_early_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(textfile, "CHUNK_BYTES", 7)
    path = write(tmp_path / "a.txt.bz2", b"alpha\nbe\n\ngamma-delta\nlast", compress="bz2")
    assert list(textfile.iter_lines(path)) == [b"alpha", b"be", b"", b"gamma-delta", b"last"]
    lines = textfile.iter_lines(path)
    assert next(lines) == b"alpha"
    lines.close()  # stops the reader thread (join in the generator's finally)
    assert not any(t.name == "kernelbench-read" and t.is_alive() for t in threading.enumerate())



def test_absurd_times_are_skipped_and_the_dataset_reads_back(tmp_path):
    lines = small_v2_lines()
    lines[0] = lines[0].replace("0.75", "1e308")       # line 1, entry 2
    lines[2] = lines[2].replace("2.0", "1e-320")       # line 3: its only entry
    result = import_miopen_fdb(write(tmp_path / "gfx90878.HIP.fdb.txt", lines))
    assert result.frame["kernel"].to_list() == ["ConvA", "ConvC", "ConvD"]
    assert [(s.reason, s.count, s.first_lines) for s in result.report.skipped_entries] == [
        ("implausible_time", 2, (1, 3))]
    assert "outside [1e-06, 1e+07] ms" in result.report.format()
    from kernelbench.schema import write_dataset

    write_dataset(result.frame, tmp_path / "d.parquet", result.metadata)
    assert read_dataset(tmp_path / "d.parquet")[0].height == 3


@pytest.mark.parametrize("tail, ignored", [(b"", None), (bz2.compress(b"more\n"), None), (b"trailing garbage", 16),
                                           (b"BZh9 not bzip2 after all", 24), (bytes(3), 3)],
                         ids=["one-stream", "two-streams", "garbage", "bzh-garbage", "zeros"])
def test_bytes_after_the_bzip2_data_are_reported(tmp_path, monkeypatch, tail, ignored):
    monkeypatch.setattr(textfile, "CHUNK_BYTES", 5)  # headers and streams split across reads
    path = tmp_path / "a.txt.bz2"
    path.write_bytes(bz2.compress(b"alpha\nbeta\n") + tail)
    warnings = []
    lines = list(textfile.iter_lines(path, warn=warnings.append))
    assert lines == [b"alpha", b"beta", *([b"more"] if tail.startswith(b"BZh9") and ignored is None else [])]
    assert warnings == ([] if ignored is None else [
        f"a.txt.bz2: {ignored} byte(s) after the end of the bzip2 data are not bzip2 and were ignored "
        "(an appended file or a damaged copy?)"])


def test_an_import_with_trailing_garbage_warns_and_strict_refuses(tmp_path):
    path = write(tmp_path / "gfx90878.HIP.fdb.txt.bz2", small_v2_lines(), compress="bz2")
    path.write_bytes(path.read_bytes() + b"\x00garbage")
    result = import_miopen_fdb(path)
    assert result.report.rows == 5 and len(result.report.warnings) == 1
    assert "  warning: gfx90878.HIP.fdb.txt.bz2: 8 byte(s) after the end of the bzip2 data" in result.report.format()
    assert result.metadata["import_report"]["warnings"] == list(result.report.warnings)
    with pytest.raises(InputError, match=r"8 byte\(s\) after the end.*--strict"):
        import_miopen_fdb(path, strict=True)
    cli = CliRunner().invoke(kernelbench_cli, ["import", "miopen", str(path), "-o", str(tmp_path / "d.parquet")])
    assert cli.exit_code == 0 and "warning: gfx90878.HIP.fdb.txt.bz2: 8 byte(s)" in cli.stderr


# ---------------------------------------------------------------- command line


def test_cli_writes_a_dataset_and_reports(tmp_path):
    src = write(tmp_path / "gfx90878.HIP.fdb.txt.bz2", small_v2_lines(), compress="bz2")
    out = tmp_path / "mi.parquet"
    result = CliRunner().invoke(kernelbench_cli, ["import", "miopen", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 rows, 4 problems, 5 solvers on miopen:gfx908:120" in result.output
    frame, meta = read_dataset(out)
    assert frame.height == 5 and meta["coverage"] == COVERAGE and meta["fdb_format"] == "find-db-2.0"


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    src = corrupted_file(tmp_path)
    out = tmp_path / "mi.parquet"
    strict = CliRunner().invoke(kernelbench_cli, ["import", "miopen", str(src), "-o", str(out), "--strict"])
    assert strict.exit_code == 2 and strict.output.startswith("Error: ") and strict.output.count("\n") == 1
    assert not out.exists()
    missing = CliRunner().invoke(kernelbench_cli, ["import", "miopen", str(tmp_path / "nope.txt"), "-o", str(out)])
    assert missing.exit_code == 2 and "Error:" in missing.output


# ---------------------------------------------------------------- the real MI100 find-db


@pytest.fixture(scope="module")
def mi100_path() -> Path:
    value = os.environ.get(FDB_ENV)
    if value and Path(value).is_file():
        return Path(value)
    message = f"{FDB_ENV} does not name the MI100 find-db (gfx90878.HIP.fdb.txt.bz2): {value!r}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def mi100_lines(mi100_path) -> list[str]:
    with bz2.open(mi100_path, "rt") as fh:
        return fh.read().splitlines()


@pytest.fixture(scope="module")
def mi100(mi100_path):
    return import_miopen_fdb(mi100_path)


def floor_output_ok(key: str) -> bool:
    """Independent check: are all floor-mode output sizes of this key >= 1 (no axis MIOpen clamps to 1)?"""
    t = key.split("_")[0].split("-")
    dims = 2 if "x" in t[3] else 3
    ins, filt = [int(v) for v in t[1:1 + dims]], [int(v) for v in t[1 + dims].split("x")]
    outs = [int(v) for v in t[3 + dims:3 + 2 * dims]]
    pad, stride, dil = ([int(v) for v in t[i].split("x")] for i in (4 + 2 * dims, 5 + 2 * dims, 6 + 2 * dims))
    x = ins if t[-1] == "F" else outs
    return all((x[i] + 2 * pad[i] - dil[i] * (filt[i] - 1) - 1) // stride[i] + 1 >= 1 for i in range(dims))


def independent_counts(lines: list[str]) -> dict:
    """A plain pass over the lines: keys, usable keys and rows per (direction letter, precision)."""
    keys, usable, rows, zero, clamped = Counter(), Counter(), Counter(), 0, 0
    for line in lines:
        key, value = line.split("=")
        fields = key.split("_")[0].split("-")
        group = (fields[-1], fields[-2])
        keys[group] += 1
        clamped += not floor_output_ok(key)
        times = [float(entry.split(":")[1].split(",")[0]) for entry in value.split(";")]
        zero += sum(t <= 0 for t in times)
        positive = sum(t > 0 for t in times)
        rows[group] += positive
        usable[group] += positive > 0
    return {"keys": keys, "usable": usable, "rows": rows, "zero": zero, "clamped": clamped}


@pytest.mark.slow
def test_mi100_counts_match_an_independent_count(mi100, mi100_lines):
    expected = independent_counts(mi100_lines)
    assert sum(expected["keys"].values()) == len(mi100_lines) == 183_610
    names = {"F": "fwd", "B": "bwd_data", "W": "bwd_weights"}
    group = mi100.frame.group_by("direction", "dtype").agg(pl.len().alias("rows"), pl.col("problem_id").n_unique())
    got_rows = {(d, t): n for d, t, n, _ in group.iter_rows()}
    got_keys = {(d, t): k for d, t, _, k in group.iter_rows()}
    assert got_rows == {(names[d], p.lower()): n for (d, p), n in expected["rows"].items()}
    assert got_keys == {(names[d], p.lower()): n for (d, p), n in expected["usable"].items()}
    skipped = {s.reason: s.count for s in mi100.report.skipped_entries}
    assert skipped == {"nonpositive_time": expected["zero"]} and 1_100 < expected["zero"] < 1_300
    assert not mi100.report.skipped_lines
    assert expected["clamped"] == 364  # keys with an output MIOpen clamps to 1: imported like any other
    assert mi100.frame["problem_id"].n_unique() == sum(expected["usable"].values())
    assert mi100.report.lines == 183_610
    assert mi100.frame.select(pl.min_horizontal("out_d", "out_h", "out_w").min()).item() == 1
    assert mi100.frame["kernel"].n_unique() == 70
    assert mi100.frame["time_ms"].min() > 0 and not mi100.frame["time_ms"].is_nan().any()
    assert mi100.metadata["fdb_format"] == "find-db-2.0" and mi100.metadata["device"]["num_cu"] == 120


@pytest.mark.slow
def test_every_mi100_key_round_trips(mi100_lines):
    keys = [line.split("=", 1)[0] for line in mi100_lines]
    parsed = parse_keys(keys)
    assert parsed["reason"].null_count() == len(keys) == 183_610
    clamped = 0
    for row in parsed.iter_rows(named=True):
        problem = ConvProblem(**{f: row[f] for f in FIELDS})
        assert format_key(problem) == row["key"]
        assert bool(problem.clamped_axes) == (not floor_output_ok(row["key"]))
        clamped += bool(problem.clamped_axes)
    assert clamped == 364


@pytest.mark.slow
def test_mi100_dataset_is_readable_and_summarised(mi100, tmp_path):
    from kernelbench.info import summarize
    from kernelbench.schema import write_dataset

    out = tmp_path / "mi100.parquet"
    write_dataset(mi100.frame, out, mi100.metadata)
    frame, meta = read_dataset(out)
    summary = summarize(frame)
    assert summary["kernels"] == 70 and summary["rows"] == mi100.report.rows
    assert set(summary["directions"]) == {"fwd", "bwd_data", "bwd_weights"}
    assert meta["import_report"]["skipped_entries"]["nonpositive_time"]["count"] > 0
    assert math.isclose(sum(summary["directions"].values()), frame["problem_id"].n_unique())
