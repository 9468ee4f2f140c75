import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kernelbench.errors import InputError
from kernelbench.problem import (
    FIELDS,
    INPUT_ITEMSIZE,
    INT_FIELD_MAX,
    ConvProblem,
    im2col_elements,
    kn2row_elements,
    memory_estimate,
    output_size,
    problem_2d,
    problem_id_of,
    tensor_elements,
)
from kernelbench.schema import read_dataset


def test_output_size_matches_the_convolution_formula():
    assert output_size(224, 7, 3, 2, 1) == 112
    assert output_size(56, 3, 1, 1, 1) == 56
    assert output_size(7, 3, 0, 1, 2) == 3  # dilated: effective filter 5
    assert output_size(8, 3, 0, 2, 1) == 3


def test_output_is_clamped_to_one_where_the_filter_exceeds_the_padded_input():
    # MIOpen's default mode: max(1, floor formula).  A 3x3 filter on a 1x1 unpadded input gives -1 -> 1.
    p = problem_2d(batch=4, in_channels=8, out_channels=16, in_h=1, in_w=5, filter_h=3, filter_w=3)
    assert output_size(1, 3, 0, 1, 1) == -1
    assert (p.out_h, p.out_w) == (1, 3) and p.clamped_axes == "h"
    assert p.flops == 2 * 4 * 16 * 1 * 3 * 8 * 9
    assert problem_2d(batch=1, in_channels=1, out_channels=1, in_h=3, in_w=3, filter_h=3, filter_w=3).clamped_axes == ""


def test_derived_sizes_and_flops(small_problem):
    assert (small_problem.out_d, small_problem.out_h, small_problem.out_w) == (1, 9, 7)
    assert small_problem.flops == 2 * 2 * 4 * 9 * 7 * 3 * 9


def test_problem_id_is_stable_and_depends_on_every_field(small_problem):
    assert small_problem.problem_id == problem_2d(
        batch=2, in_channels=3, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=3, pad_h=1, pad_w=1
    ).problem_id
    assert len(small_problem.problem_id) == 16
    ids = {small_problem.problem_id}
    base = small_problem.as_dict()
    for field, value in [("batch", 3), ("dtype", "fp16"), ("direction", "bwd_data"), ("pad_w", 0), ("layout", "NHWC"),
                         ("stride_h", 2), ("dilation_w", 2), ("out_channels", 8)]:
        ids.add(ConvProblem(**{**base, field: value}).problem_id)
    assert len(ids) == 9


@pytest.mark.parametrize(
    "change, field",
    [
        ({"in_channels": 6, "groups": 4}, "in_channels"),
        ({"out_channels": 6, "in_channels": 4, "groups": 4}, "out_channels"),
        ({"direction": "sideways"}, "direction"),
        ({"dtype": "fp64"}, "dtype"),
        ({"layout": "NCDHW"}, "layout"),
        ({"in_d": 3}, "in_d"),
        ({"batch": 0}, "batch"),
        ({"pad_w": -1}, "pad_w"),
        ({"stride_w": 0}, "stride_w"),
        ({"groups": 1.5}, "groups"),
        ({"batch": 2**31}, "batch"),  # datasets store int32
        ({"batch": 99999999999}, "batch"),  # above int32: the dataset could not hold it
        ({"in_w": 2**31}, "in_w"),
        ({"pad_h": 2**30}, "pad_h"),  # every field fits int32, out_h = 2**31 + 7 does not
    ],
)
def test_invalid_problems_name_the_field(small_problem, change, field):
    with pytest.raises(InputError, match=rf"\b{field}="):
        ConvProblem(**{**small_problem.as_dict(), **change})


def test_from_mapping_fills_defaults_and_parses_strings():
    p = ConvProblem.from_mapping(
        {"batch": "32", "in_channels": 64, "in_h": 56, "in_w": 56, "out_channels": 64, "filter_h": 3, "filter_w": 3,
         "pad_h": 1, "pad_w": 1}
    )
    assert p.layout == "NCHW" and p.groups == 1 and p.spatial_dims == 2 and p.batch == 32 and p.out_h == 56
    with pytest.raises(InputError, match="missing problem field"):
        ConvProblem.from_mapping({"batch": 1})
    with pytest.raises(InputError, match="unknown problem field.*colour"):
        ConvProblem.from_mapping({"colour": 1})
    with pytest.raises(InputError, match="batch='x'"):
        ConvProblem.from_mapping({**p.as_dict(), "batch": "x"})


def test_3d_problem_and_row_round_trip():
    p = ConvProblem(direction="bwd_weights", dtype="fp16", layout="NDHWC", spatial_dims=3, batch=1, in_channels=4,
                    out_channels=8, groups=2, in_d=5, in_h=6, in_w=7, filter_d=3, filter_h=3, filter_w=3, pad_d=1,
                    pad_h=1, pad_w=1, stride_d=2, stride_h=2, stride_w=2, dilation_d=1, dilation_h=1, dilation_w=1)
    assert (p.out_d, p.out_h, p.out_w) == (3, 3, 4)
    row = p.as_row()
    assert set(FIELDS) < set(row) and row["problem_id"] == p.problem_id
    assert ConvProblem.from_mapping(row) == p


# ---------------------------------------------------------------- padding mode and id stability


def test_problem_ids_of_default_mode_problems_are_the_ones_before_pad_mode_existed():
    # Ids computed by the code before the pad_mode field (commit a664118); they must never change.
    assert problem_2d(batch=2, in_channels=3, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=3, pad_h=1,
                      pad_w=1).problem_id == "3f23d12c2338d4fd"
    p3 = ConvProblem(direction="bwd_weights", dtype="bf16", layout="NCDHW", spatial_dims=3, batch=4, in_channels=16,
                     out_channels=32, groups=2, in_d=8, in_h=32, in_w=32, filter_d=3, filter_h=3, filter_w=3, pad_d=1,
                     pad_h=1, pad_w=1, stride_d=2, stride_h=2, stride_w=2, dilation_d=1, dilation_h=1, dilation_w=1,
                     pad_mode="default")
    assert p3.problem_id == "ea49ba6908517b80"
    assert problem_id_of({**p3.as_dict(), "pad_mode": None}) == problem_id_of({**p3.as_dict(), "pad_mode": "default"})


def test_committed_dataset_reads_with_the_default_mode_and_keeps_its_ids():
    path = Path(__file__).resolve().parents[2] / "datasets" / "cpu-networks-epyc-2t.parquet"
    assert "pad_mode" not in pq.read_schema(path).names  # written before the column existed
    frame, _ = read_dataset(path)
    assert set(frame["pad_mode"]) == {"default"}
    problems = frame.unique("problem_id").select("problem_id", *FIELDS, "pad_mode", "out_d", "out_h", "out_w")
    for row in problems.iter_rows(named=True):
        problem = ConvProblem.from_mapping(row)
        assert problem.problem_id == row["problem_id"]
        assert (problem.out_h, problem.out_w) == (row["out_h"], row["out_w"])
    assert problems.height > 100


@pytest.mark.parametrize(
    "mode, out, padding",
    [("default", 4, (0, -1)), ("same", 5, (0, 1)), ("valid", 4, (0, -1))],
)
def test_padding_modes_give_miopens_output_sizes(small_problem, mode, out, padding):
    p = ConvProblem(**{**problem_2d(batch=1, in_channels=2, out_channels=2, in_h=10, in_w=10, filter_h=3, filter_w=3,
                                    stride_h=2, stride_w=2).as_dict(), "pad_mode": mode})
    assert (p.out_h, p.out_w, p.padding("h")) == (out, out, padding)
    assert p.as_row()["pad_mode"] == mode and ConvProblem.from_mapping(p.as_row()) == p
    assert ("pad_mode" in p.as_dict()) == (mode != "default")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"pad_mode": "full"}, "is not one of default, same, valid"),
        ({"pad_mode": "same", "dilation_h": 2}, "needs dilation 1"),
        ({"pad_mode": "valid", "in_h": 2}, "'valid' needs filter_h <= in_h"),
    ],
)
def test_invalid_padding_modes_name_the_field(small_problem, change, words):
    with pytest.raises(InputError, match=rf"pad_mode=.*{words}"):
        ConvProblem(**{**small_problem.as_dict(), **change})


def test_int_field_max_is_what_the_dataset_columns_hold():
    import numpy as np
    import pyarrow as pa

    from kernelbench.problem import DERIVED_FIELDS, INT_FIELDS
    from kernelbench.schema import ARROW_SCHEMA

    assert all(ARROW_SCHEMA.field(f).type == pa.int32() for f in INT_FIELDS + DERIVED_FIELDS)
    assert INT_FIELD_MAX == np.iinfo(np.int32).max
    assert problem_2d(batch=INT_FIELD_MAX, in_channels=1, out_channels=1, in_h=1, in_w=1, filter_h=1,
                      filter_w=1).batch == INT_FIELD_MAX


def test_memory_estimate_counts_inputs_reference_and_the_largest_workspace():
    p = problem_2d(batch=2, in_channels=8, out_channels=16, in_h=10, in_w=10, filter_h=3, filter_w=3, pad_h=1, pad_w=1)
    x, w, y = tensor_elements(p)
    assert (x, w, y) == (2 * 8 * 100, 16 * 8 * 9, 2 * 16 * 100)
    columns, kn2row = 2 * 8 * 9 * 100, 2 * 16 * 9 * 100
    assert (im2col_elements(p), kn2row_elements(p)) == (columns, kn2row)
    e = memory_estimate(p)
    assert (e.inputs_bytes, e.reference_bytes) == (4 * (x + w), 8 * y)
    assert e.reference_work_bytes == 8 * (x + w + columns)
    assert e.kernel_bytes == 4 * (x + w + y) + 8 * kn2row
    assert e.peak_bytes == e.inputs_bytes + e.reference_bytes + max(e.reference_work_bytes, e.kernel_bytes)
    half = memory_estimate(ConvProblem(**{**p.as_dict(), "dtype": "fp16"}))
    assert half.inputs_bytes == e.inputs_bytes // 2
    back = memory_estimate(ConvProblem(**{**p.as_dict(), "direction": "bwd_weights"}))
    assert back.inputs_bytes == 4 * (x + w + y) and back.reference_bytes == 8 * w
    lean = memory_estimate(p, kernel_workspace_bytes=1000)  # one kernel's own workspace instead of the largest
    assert lean.kernel_bytes == 4 * (x + w + y) + 1000
    assert (lean.inputs_bytes, lean.reference_bytes, lean.reference_work_bytes) == (
        e.inputs_bytes, e.reference_bytes, e.reference_work_bytes)


def test_memory_estimate_of_an_absurd_problem_is_exact_and_allocates_nothing():
    p = problem_2d(batch=INT_FIELD_MAX, in_channels=64, out_channels=64, in_h=56, in_w=56, filter_h=3, filter_w=3,
                   pad_h=1, pad_w=1)
    e = memory_estimate(p)
    assert e.inputs_bytes == 4 * (INT_FIELD_MAX * 64 * 56 * 56 + 64 * 64 * 9)  # Python ints: no overflow
    assert e.peak_bytes > 1e16 and e.describe().startswith(f"{e.peak_bytes / 1e9:.1f} GB (inputs ")


@pytest.mark.parametrize("dtype", sorted(INPUT_ITEMSIZE))
def test_input_itemsize_is_what_make_inputs_stores(dtype):
    from kernelbench.reference import make_inputs

    p = ConvProblem(**{**problem_2d(batch=1, in_channels=2, out_channels=2, in_h=4, in_w=4, filter_h=3,
                                    filter_w=3).as_dict(), "dtype": dtype})
    inputs = make_inputs(p, seed=0)
    assert inputs.x.itemsize == inputs.w.itemsize == INPUT_ITEMSIZE[dtype]


MEASURE_PEAK = """
from kernelbench.problem import problem_2d, memory_estimate
from kernelbench.sweep import problem_data

def kib(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":")) * 1024

tiny = problem_2d(batch=1, in_channels=1, out_channels=1, in_h=3, in_w=3, filter_h=3, filter_w=3)
problem_data(tiny, seed=0)  # imports torch and loads its kernels: not part of the problem's memory
p = problem_2d(batch=16, in_channels=64, out_channels=64, in_h=56, in_w=56, filter_h=3, filter_w=3, pad_h=1, pad_w=1)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
before = kib("VmRSS")
problem_data(p, seed=0)
e = memory_estimate(p)
print(kib("VmHWM") - before, e.inputs_bytes + e.reference_bytes + e.reference_work_bytes)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc/self/clear_refs")
def test_memory_estimate_of_inputs_and_reference_is_within_2x_of_the_measured_peak():
    """The peak RSS of a process grows by what make_inputs and the float64 reference hold (~300 MB here)."""
    out = subprocess.run([sys.executable, "-c", MEASURE_PEAK], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    measured, estimated = (int(v) for v in out.stdout.split())
    assert 0.5 * estimated <= measured <= 2 * estimated, (measured, estimated)
