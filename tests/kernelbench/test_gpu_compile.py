"""Every CUDA source and template instantiation compiles for sm_80 and sm_90, without spills.

Two routes: nvcc (explicit instantiations, ``-Xptxas -v``) and NVRTC (the runtime
RawModule path with name expressions).  Without nvcc the nvcc tests skip, and
fail under CI (env ``CI``); the NVRTC test needs CuPy and libnvrtc
(``pip install cupy-cuda13x nvidia-cuda-nvrtc``) and skips without them.
"""

from __future__ import annotations

import re

import pytest

from kernelbench.gpu import compile_check, instances
from tests.kernelbench.cuda_harness.build import require_nvcc

PTXAS_SAMPLE = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z1kILi2EEvPf' for 'sm_80'
ptxas info    : Function properties for _Z1kILi2EEvPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 360 bytes cmem[0]
ptxas info    : Compiling entry function '_Z1kILi3EEvPf' for 'sm_90'
ptxas info    : Function properties for _Z1kILi3EEvPf
    24 bytes stack frame, 40 bytes spill stores, 32 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 360 bytes cmem[0]
"""


def test_parse_ptxas_reads_registers_and_spills_per_entry():
    first, second = compile_check.parse_ptxas(PTXAS_SAMPLE)
    assert (first.mangled, first.arch, first.registers, first.spills) == ("_Z1kILi2EEvPf", "sm_80", 8, False)
    assert (second.arch, second.registers, second.stack_bytes) == ("sm_90", 32, 24)
    assert (second.spill_store_bytes, second.spill_load_bytes, second.spills) == (40, 32, True)


def test_parse_ptxas_rejects_a_report_without_register_line():
    broken = "\n".join(line for line in PTXAS_SAMPLE.splitlines() if "Used 8" not in line)
    with pytest.raises(ValueError, match="registers"):
        compile_check.parse_ptxas(broken)


def test_instantiation_list_is_complete_and_unique():
    insts = instances.instances()
    exprs = [i.name_expression for i in insts]
    assert len(exprs) == len(set(exprs))
    assert len(instances.DIRECT_CONFIGS) >= 2 and len(instances.IGEMM_CONFIGS) >= 3
    assert {i.dtype for i in insts} == {"fp32", "fp16"}
    # Each source's unit instantiates exactly its own name expressions, with the kernel signature.
    for source in instances.SOURCES:
        unit = instances.instantiation_unit(source)
        assert unit.startswith(f'#include "{source}"')
        for expr in instances.name_expressions(source):
            assert f"template __global__ void {expr}(" in unit
    assert "conv_igemm<kb_half, 64, 64, 8, 4, 4>(const kb_half*, const kb_half*, kb_half*, const int*)" in (
        instances.instantiation_unit("conv_igemm.cu"))


def test_source_digest_changes_with_a_header(tmp_path, monkeypatch):
    for path in instances.source_dir().glob("*.cu*"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(instances, "source_dir", lambda: tmp_path)
    instances.source_digest.cache_clear()
    try:
        before = instances.source_digest()
        header = tmp_path / "kb_common.cuh"
        header.write_text(header.read_text() + "\n// edited\n")
        instances.source_digest.cache_clear()
        assert instances.source_digest() != before
    finally:
        instances.source_digest.cache_clear()


@pytest.fixture(scope="module")
def nvcc_reports(tmp_path_factory):
    """ptxas reports of every (source, arch), compiled once per module."""
    require_nvcc()
    workdir = tmp_path_factory.mktemp("nvcc")
    return {
        (source, arch): compile_check.compile_with_nvcc(source, arch, workdir=workdir)
        for source in instances.SOURCES
        for arch in compile_check.ARCHS
    }


@pytest.mark.parametrize("arch", compile_check.ARCHS)
@pytest.mark.parametrize("source", instances.SOURCES)
def test_nvcc_compiles_every_instantiation_without_spills(nvcc_reports, source, arch):
    records = nvcc_reports[(source, arch)]
    compiled = {re.sub(r"^void |\(.*$", "", r.name).replace(" ", "") for r in records}
    expected = {e.replace(" ", "") for e in instances.name_expressions(source)}
    assert compiled == expected
    assert all(r.arch == arch for r in records)
    spilling = [f"{r.name}: {r.spill_store_bytes} B stores / {r.spill_load_bytes} B loads" for r in records if r.spills]
    assert not spilling, "kernels spill registers:\n" + "\n".join(spilling)
    assert all(0 < r.registers <= 255 for r in records)


def _nvrtc_or_skip() -> None:
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - ImportError or the library-not-found error of cuda-pathfinder
        pytest.skip(f"NVRTC via CuPy unavailable ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                    "pip install cupy-cuda13x nvidia-cuda-nvrtc to check the runtime compile path")


@pytest.mark.parametrize("arch", compile_check.ARCHS)
@pytest.mark.parametrize("source", instances.SOURCES)
def test_nvrtc_compiles_the_runtime_module_and_resolves_every_name(nvcc_reports, source, arch):
    _nvrtc_or_skip()
    lowered = compile_check.compile_with_nvrtc(source, arch)
    assert set(lowered) == set(instances.name_expressions(source))
    # NVRTC (runtime) and nvcc (CI report) produce the same symbols: the report is about the kernels that run.
    assert set(lowered.values()) == {r.mangled for r in nvcc_reports[(source, arch)]}
