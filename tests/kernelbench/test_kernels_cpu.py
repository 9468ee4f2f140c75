import dataclasses
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from kernelbench.backends import CpuBackend
from kernelbench.errors import InputError
from kernelbench.kernels import cpu
from kernelbench.kernels.registry import all_kernels, select_kernels
from kernelbench.problem import memory_estimate, problem_2d
from kernelbench.reference import make_inputs, max_rel_error, reference_output, tolerance
from kernelbench.spaces import SpaceEntry
from kernelbench.store import RunStore, read_parts
from kernelbench.sweep import SweepOptions, run_sweep
from kernelbench.timing import StoppingRule

KERNELS = cpu.cpu_kernels()
CASES = {
    "odd_padded_3x3": problem_2d(batch=2, in_channels=3, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=3,
                                 pad_h=1, pad_w=1),
    "stride2": problem_2d(batch=2, in_channels=4, out_channels=6, in_h=11, in_w=8, filter_h=3, filter_w=3, pad_h=1,
                          pad_w=1, stride_h=2, stride_w=2),
    "dilated": problem_2d(batch=1, in_channels=3, out_channels=5, in_h=10, in_w=9, filter_h=3, filter_w=3, pad_h=2,
                          pad_w=2, dilation_h=2, dilation_w=2),
    "grouped": problem_2d(batch=2, in_channels=6, out_channels=9, in_h=8, in_w=7, filter_h=3, filter_w=3, pad_h=1,
                          pad_w=1, groups=3),
    "depthwise": problem_2d(batch=2, in_channels=5, out_channels=5, in_h=9, in_w=9, filter_h=3, filter_w=3, pad_h=1,
                            pad_w=1, groups=5),
    "pointwise": problem_2d(batch=2, in_channels=8, out_channels=6, in_h=7, in_w=5, filter_h=1, filter_w=1),
    "5x5_rect": problem_2d(batch=1, in_channels=2, out_channels=3, in_h=12, in_w=9, filter_h=5, filter_w=3,
                           pad_h=2, pad_w=1, stride_w=2),
}
DTYPES = ("fp32", "fp16", "bf16")
PAIRS = [(k, name, dtype) for k in KERNELS for name in CASES for dtype in DTYPES
         if k.applies(dataclasses.replace(CASES[name], dtype=dtype)) is None]


@pytest.fixture(autouse=True)
def fresh_probes():
    """Probe results are cached per process; tests that fake a build must not leak into others."""
    cpu._probe.cache_clear()
    yield
    cpu._probe.cache_clear()


@pytest.mark.parametrize(("kernel", "name", "dtype"), PAIRS, ids=[f"{k.name}-{n}-{d}" for k, n, d in PAIRS])
def test_kernel_matches_the_reference(kernel, name, dtype):
    reason = kernel.unavailable()
    if reason is not None:
        pytest.skip(f"{kernel.name} unavailable here: {reason}")
    problem = dataclasses.replace(CASES[name], dtype=dtype)
    inputs = make_inputs(problem, seed=4)
    prepared = kernel.prepare(problem, inputs)
    out = prepared.result(prepared.run())
    assert isinstance(out, np.ndarray) and out.shape == (problem.batch, problem.out_channels, problem.out_h,
                                                         problem.out_w)
    assert max_rel_error(out, reference_output(problem, inputs)) <= tolerance(problem)
    assert prepared.workspace_bytes >= 0


def test_there_are_at_least_eight_algorithms_and_every_kernel_is_exercised():
    assert len({k.name for k in KERNELS}) == len(KERNELS) >= 13
    assert len({(k.algorithm, k.name.split("_")[0]) for k in KERNELS}) >= 8
    exercised = {k.name for k, _, dtype in PAIRS if dtype == "fp32"}
    assert exercised == {k.name for k in KERNELS}
    # fp16 runs through torch's native path and every numpy algorithm; bf16 through torch.
    assert {"torch_default", "torch_im2col", "numpy_im2col_gemm", "numpy_fft"} <= {
        k.name for k, _, d in PAIRS if d == "fp16"}
    assert {"torch_default", "torch_im2col"} <= {k.name for k, _, d in PAIRS if d == "bf16"}


def test_core_torch_back_ends_are_available_in_this_build():
    # torch 2.13 CPU wheels ship oneDNN and NNPACK; if this fails the build changed, not the code.
    for name in ("onednn_nchw", "onednn_nhwc", "nnpack", "torch_default", "torch_im2col"):
        kernel = next(k for k in KERNELS if k.name == name)
        assert kernel.unavailable() is None, (name, kernel.unavailable())


def test_default_set_is_the_prototype_winners_and_the_torch_default_baseline():
    # torch_default (F.conv2d) is in every default CPU dataset: what the user gets without a selector.
    assert {k.name for k in select_kernels("cpu", "default")} == {
        "onednn_nchw", "onednn_nhwc", "nnpack", "torch_im2col", "numpy_im2col_gemm", "numpy_gemm_1x1",
        "numpy_shifted_gemm", "torch_default"}


@pytest.mark.parametrize("change", [{"layout": "NHWC"}, {"direction": "bwd_data"}, {"dtype": "int8"}],
                         ids=["nhwc", "backward", "int8"])
def test_out_of_scope_problems_are_rejected_by_every_kernel(change):
    problem = dataclasses.replace(CASES["odd_padded_3x3"], **change)
    assert all(k.applies(problem) for k in KERNELS)


def test_library_limits_are_declared():
    by_name = {k.name: k for k in KERNELS}
    assert "groups" in by_name["torch_im2col"].applies(CASES["grouped"])
    assert "groups" in by_name["nnpack"].applies(CASES["depthwise"])
    assert "dilation" in by_name["nnpack"].applies(CASES["dilated"])
    assert "padding" in by_name["nnpack"].applies(dataclasses.replace(CASES["pointwise"], pad_h=1))
    assert "fp32" in by_name["nnpack"].applies(dataclasses.replace(CASES["stride2"], dtype="fp16"))


def test_numpy_size_bounds_keep_sweeps_practical():
    resnet = problem_2d(batch=8, in_channels=64, out_channels=64, in_h=56, in_w=56, filter_h=3, filter_w=3,
                        pad_h=1, pad_w=1, dtype="fp16")
    by_name = {k.name: k for k in KERNELS}
    assert "no BLAS for float16" in by_name["numpy_im2col_gemm"].applies(resnet)
    assert by_name["numpy_winograd_f4x4_3x3"].applies(resnet) is None  # computes in float32
    assert by_name["numpy_im2col_gemm"].applies(dataclasses.replace(resnet, dtype="fp32")) is None
    huge = dataclasses.replace(resnet, dtype="fp32", batch=512, in_h=112, in_w=112)
    assert cpu.numpy_workspace_estimate(huge) > cpu.NUMPY_MAX_WORKSPACE_BYTES
    assert "working set" in by_name["numpy_shifted_gemm"].applies(huge)


def test_torch_kernels_declare_a_workspace_bound_below_the_generic_one_where_kn2row_dominates():
    stem = problem_2d(batch=8, in_channels=3, out_channels=64, in_h=224, in_w=224, filter_h=7, filter_w=7,
                      pad_h=3, pad_w=3, stride_h=2, stride_w=2)
    generic = memory_estimate(stem).kernel_bytes
    for kernel in cpu.torch_kernels():
        assert kernel.workspace_estimate is cpu.torch_workspace_estimate
        assert memory_estimate(stem, kernel_workspace_bytes=kernel.workspace_estimate(stem)).kernel_bytes < generic / 10
    assert all(k.workspace_estimate is cpu.numpy_workspace_estimate for k in cpu.numpy_kernels())


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc/self/clear_refs")
def test_the_torch_workspace_bound_holds_on_the_peak_rss_of_an_output_heavy_layer():
    """benchmarks/bench_kernel_memory.py on the shape where oneDNN comes closest to its bound (three outputs
    alive: the checked run's, the timed run's in oneDNN's blocked layout and the NCHW copy)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kernel_memory.py"
    out = subprocess.run([sys.executable, str(script), "--kernels", "onednn_nchw,torch_im2col", "--shapes",
                          "4,16,1024,56,1,0,1", "--threads", "1"], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith("| onednn") or
            line.startswith("| torch")]
    assert len(rows) == 2, out.stdout
    ratios = {row[1].strip(): float(row[5]) for row in rows}
    # A bound that holds (< 1) and is not vacuous: oneDNN's peak is over a third of it.
    assert 0.35 < ratios["onednn_nchw"] < 1 and 0 < ratios["torch_im2col"] < 1, out.stdout


def test_missing_nnpack_is_reported_as_unavailable_not_a_crash(monkeypatch):
    monkeypatch.setattr(cpu, "_nnpack_initialised", lambda: False)
    kernel = next(k for k in KERNELS if k.name == "nnpack")
    assert "NNPACK" in kernel.unavailable()


def test_missing_onednn_is_reported_as_unavailable(monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert all("oneDNN" in k.unavailable() for k in KERNELS if k.name.startswith("onednn"))


def test_a_failing_entry_point_is_reported_by_the_probe(monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed\ndetails")

    monkeypatch.setattr(torch.ops.aten, "_nnpack_spatial_convolution", broken)
    reason = next(k for k in KERNELS if k.name == "nnpack").unavailable()
    assert reason == "nnpack float32 probe failed on this CPU: NNPACK SpatialConvolution_updateOutput failed"


def test_sweep_records_an_unavailable_kernel_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "_nnpack_initialised", lambda: False)
    kernels = select_kernels("cpu", "nnpack,numpy_im2col_gemm")
    backend = CpuBackend(threads=1)
    identity = {"space": {"space": "test"}, "kernels": [k.name for k in kernels], "rule": {}, "seed": 0,
                "device_label": backend.device_label}
    store = RunStore.open(tmp_path / "run", identity, {})
    entries = [SpaceEntry(problem=CASES["odd_padded_3x3"], network="test", layer="l0")]
    # In-process: the monkeypatch above does not reach a worker process.
    options = SweepOptions(rule=StoppingRule(warmup=1, min_samples=3, budget_s=0.05), flush_every_s=0,
                           isolation="none")
    run_sweep(entries, kernels, backend=backend, store=store, options=options, progress=False)
    status = dict(read_parts(tmp_path / "run").select("kernel", "status").iter_rows())
    assert status == {"nnpack": "unavailable", "numpy_im2col_gemm": "ok"}


# ---------------------------------------------------------------- registry


def test_select_kernels_by_name_keeps_order_and_drops_duplicates():
    chosen = select_kernels("cpu", " numpy_fft, onednn_nchw ,numpy_fft")
    assert [k.name for k in chosen] == ["numpy_fft", "onednn_nchw"]
    assert [k.name for k in select_kernels("cpu", "all")] == [k.name for k in all_kernels("cpu")]


@pytest.mark.parametrize("spec", ["onednn_nchw,bogus", " , "])
def test_unknown_or_empty_kernel_names_list_the_valid_ones(spec):
    with pytest.raises(InputError, match="numpy_im2col_gemm") as info:
        select_kernels("cpu", spec)
    assert ("bogus" in str(info.value)) == ("bogus" in spec)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="cpu, cuda"):
        all_kernels("tpu")


def test_missing_cuda_module_is_an_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "kernelbench.kernels.cuda", None)  # makes the import fail
    with pytest.raises(InputError, match="--device cpu"):
        all_kernels("cuda")
    monkeypatch.setitem(sys.modules, "kernelbench.kernels.cuda", types.ModuleType("kernelbench.kernels.cuda"))
    with pytest.raises(InputError, match="cuda_kernels"):
        all_kernels("cuda")


def test_cuda_kernels_come_from_the_cuda_module(monkeypatch):
    fake = types.ModuleType("kernelbench.kernels.cuda")
    fake.cuda_kernels = lambda: [KERNELS[0]]
    monkeypatch.setitem(sys.modules, "kernelbench.kernels.cuda", fake)
    assert all_kernels("cuda") == (KERNELS[0],)



@pytest.mark.parametrize("backend", ["cpu", "cuda"])  # the CUDA kernel objects build without a GPU
def test_no_kernel_takes_a_problem_whose_output_miopen_clamps(backend):
    clamped = problem_2d(batch=2, in_channels=4, out_channels=4, in_h=2, in_w=8, filter_h=3, filter_w=3)
    ordinary = dataclasses.replace(clamped, in_h=8)
    kernels = all_kernels(backend)
    assert kernels and clamped.clamped_axes == "h"
    assert {k.reason_not_applicable(clamped) for k in kernels} == {
        "output size clamped to 1 (MIOpen's default mode): the filter is larger than the padded input"}
    assert any(k.reason_not_applicable(ordinary) is None for k in kernels)
