"""Compile every CUDA source and instantiation ahead of time, without a GPU, and report resources.

Two routes, both pinned by tests:

* nvcc (CUDA toolkit): the explicit-instantiation unit of each source is compiled
  to a cubin with ``-Xptxas -v``; the register and spill counts of every kernel
  are parsed from ptxas' report.
* NVRTC (what ``cupy.RawModule`` uses at run time): each source is compiled with
  the runtime options and name expressions, and every name expression must
  resolve to a lowered (mangled) name.

Run ``python -m kernelbench.gpu.compile_check`` for a table of registers and spills.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kernelbench.gpu import instances

#: Architectures every kernel must compile for (A100, H100).
ARCHS = ("sm_80", "sm_90")

_ENTRY = re.compile(r"Compiling entry function '(?P<mangled>[^']+)' for '(?P<arch>sm_\d+a?)'")
_SPILLS = re.compile(r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, (?P<loads>\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (?P<registers>\d+) registers")


@dataclasses.dataclass(frozen=True)
class KernelResources:
    """ptxas' report on one kernel: registers per thread, bytes of stack frame and of spills."""

    mangled: str
    arch: str
    registers: int
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    name: str = ""

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


def parse_ptxas(text: str) -> tuple[KernelResources, ...]:
    """Parse ``-Xptxas -v`` output into one record per compiled entry function.

    Raises:
        ValueError: an entry function's report lacks its register or spill line (ptxas changed format).
    """
    records: list[KernelResources] = []
    current: dict[str, str] | None = None

    def finish() -> None:
        if current is None:
            return
        missing = [k for k in ("registers", "stack", "stores", "loads") if k not in current]
        if missing:
            raise ValueError(f"ptxas report for {current['mangled']} lacks {', '.join(missing)}")
        records.append(
            KernelResources(
                mangled=current["mangled"],
                arch=current["arch"],
                registers=int(current["registers"]),
                stack_bytes=int(current["stack"]),
                spill_store_bytes=int(current["stores"]),
                spill_load_bytes=int(current["loads"]),
            )
        )

    for line in text.splitlines():
        if match := _ENTRY.search(line):
            finish()
            current = dict(match.groupdict())
        elif current is not None and (match := _SPILLS.search(line) or _REGISTERS.search(line)):
            current.update(match.groupdict())
    finish()
    return tuple(records)


def demangle(names: list[str]) -> list[str]:
    """C++ names of mangled symbols via ``c++filt`` (unchanged if it is missing)."""
    tool = shutil.which("c++filt")
    if tool is None or not names:
        return list(names)
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


def compile_with_nvcc(source: str, arch: str, *, workdir: Path, nvcc: str | None = None) -> tuple[KernelResources, ...]:
    """Compile ``source``'s instantiation unit for ``arch`` to a cubin; return ptxas' per-kernel report.

    Raises:
        FileNotFoundError: no ``nvcc`` on the PATH.
        RuntimeError: the compile failed (the message holds nvcc's output).
    """
    nvcc = nvcc or nvcc_path()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found on the PATH")
    unit = workdir / f"{Path(source).stem}_instances_{arch}.cu"
    unit.write_text(instances.instantiation_unit(source))
    cmd = [
        nvcc, "-std=c++17", f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-Werror", "all-warnings",
        f"-I{instances.source_dir()}", str(unit), "-o", str(unit.with_suffix(".cubin")),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed for {source} ({arch}):\n{proc.stdout}{proc.stderr}")
    records = parse_ptxas(proc.stdout + proc.stderr)
    names = demangle([r.mangled for r in records])
    return tuple(dataclasses.replace(r, name=n) for r, n in zip(records, names, strict=True))


def compile_with_nvrtc(source: str, arch: str) -> dict[str, str]:
    """Compile ``source`` with NVRTC exactly as the runtime RawModule does; return name expression -> lowered name.

    Uses CuPy's NVRTC binding (``cupy_backends.cuda.libs.nvrtc``), which needs no GPU.

    Raises:
        ImportError: CuPy is not installed.
        RuntimeError: NVRTC is missing or the compile failed (the message holds its log).
    """
    from cupy_backends.cuda.libs import nvrtc

    exprs = instances.name_expressions(source)
    try:
        prog = nvrtc.createProgram(instances.source_text(source), source, [], [])
    except Exception as exc:  # NVRTC library missing: cuda-pathfinder raises its own error type
        raise RuntimeError(f"NVRTC unavailable: {exc}") from exc
    try:
        for expr in exprs:
            nvrtc.addNameExpression(prog, expr)
        try:
            nvrtc.compileProgram(prog, [*instances.compile_options(), f"-arch={arch}"])
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC failed for {source} ({arch}): {exc}\n{nvrtc.getProgramLog(prog)}") from exc
        return {expr: nvrtc.getLoweredName(prog, expr) for expr in exprs}
    finally:
        nvrtc.destroyProgram(prog)


def main() -> int:
    """Print registers and spills of every instantiation for every arch (nvcc route)."""
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'arch':<6} {'regs':>4} {'stack':>5} {'spill':>5}  kernel")
        for arch in ARCHS:
            for source in instances.SOURCES:
                for r in compile_with_nvcc(source, arch, workdir=Path(tmp)):
                    failed |= r.spills
                    spill = r.spill_store_bytes + r.spill_load_bytes
                    print(f"{r.arch:<6} {r.registers:>4} {r.stack_bytes:>5} {spill:>5}  {r.name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
