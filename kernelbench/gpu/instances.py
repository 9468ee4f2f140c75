"""The template instantiations of the hand-written CUDA kernels: the one list both loaders use.

The runtime loader (``cupy.RawModule(..., name_expressions=...)``), the nvcc
compile check (explicit instantiations) and the host harness all take their
instantiations from :func:`instances`, so a configuration that is timed is
also one that was compiled and checked in CI.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

#: CUDA element type per problem dtype.  ``kb_half`` is the binary16 storage type of kb_common.cuh.
CUDA_TYPES = {"fp32": "float", "fp16": "kb_half"}
#: Bytes per element of each CUDA type.
ELEMENT_BYTES = {"float": 4, "kb_half": 2}


@dataclasses.dataclass(frozen=True)
class DirectConfig:
    """``conv_direct<T, BH, BW, KPT>``: a BH x BW block of threads, each computing KPT output channels."""

    block_h: int
    block_w: int
    k_per_thread: int

    template = "conv_direct"
    source = "conv_direct.cu"
    algorithm = "direct"

    @property
    def template_args(self) -> tuple[int, ...]:
        return (self.block_h, self.block_w, self.k_per_thread)

    @property
    def threads(self) -> int:
        return self.block_h * self.block_w

    @property
    def shared_bytes(self) -> int:
        """Static shared memory per block, bytes (the direct kernel uses none)."""
        return 0

    @property
    def kernel_name(self) -> str:
        """The dataset's ``kernel`` value (one kernel covers every dtype)."""
        return f"cuda_direct_{self.block_h}x{self.block_w}_k{self.k_per_thread}"


@dataclasses.dataclass(frozen=True)
class IgemmConfig:
    """``conv_igemm<T, BM, BN, BK, TM, TN>``: BM x BN output tile, depth BK, TM x TN per thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    template = "conv_igemm"
    source = "conv_igemm.cu"
    algorithm = "implicit_gemm"

    def __post_init__(self) -> None:
        if self.bm % self.tm or self.bn % self.tn:
            raise ValueError(f"{self}: the tile must be a multiple of the micro-tile")

    @property
    def template_args(self) -> tuple[int, ...]:
        return (self.bm, self.bn, self.bk, self.tm, self.tn)

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def shared_bytes(self) -> int:
        """Static shared memory per block, bytes: float tiles As[BK][BM] and Bs[BK][BN]."""
        return 4 * self.bk * (self.bm + self.bn)

    @property
    def kernel_name(self) -> str:
        return f"cuda_igemm_{self.bm}x{self.bn}x{self.bk}_t{self.tm}x{self.tn}"


KernelConfig = DirectConfig | IgemmConfig

#: Tile-size variants of the direct kernel.
DIRECT_CONFIGS: tuple[DirectConfig, ...] = (
    DirectConfig(block_h=16, block_w=16, k_per_thread=1),
    DirectConfig(block_h=8, block_w=8, k_per_thread=4),
    DirectConfig(block_h=4, block_w=32, k_per_thread=2),
)
#: Tile configurations of the implicit-GEMM kernel (small problems first).
IGEMM_CONFIGS: tuple[IgemmConfig, ...] = (
    IgemmConfig(bm=32, bn=32, bk=16, tm=2, tn=2),
    IgemmConfig(bm=64, bn=64, bk=8, tm=4, tn=4),
    IgemmConfig(bm=128, bn=64, bk=8, tm=8, tn=4),
    IgemmConfig(bm=128, bn=128, bk=8, tm=8, tn=8),
)
SOURCES = ("conv_direct.cu", "conv_igemm.cu")


@dataclasses.dataclass(frozen=True)
class Instance:
    """One template instantiation: a configuration at one element type."""

    config: KernelConfig
    dtype: str

    @property
    def cuda_type(self) -> str:
        return CUDA_TYPES[self.dtype]

    @property
    def name_expression(self) -> str:
        """The NVRTC name expression, e.g. ``conv_direct<float, 16, 16, 1>``."""
        args = ", ".join([self.cuda_type, *map(str, self.config.template_args)])
        return f"{self.config.template}<{args}>"

    @property
    def explicit_instantiation(self) -> str:
        """The C++ explicit instantiation of the same kernel (for nvcc, which has no name expressions)."""
        t = self.cuda_type
        return f"template __global__ void {self.name_expression}(const {t}*, const {t}*, {t}*, const int*);"


def instances(source: str | None = None) -> tuple[Instance, ...]:
    """Every instantiation (of one ``.cu`` source, or of all)."""
    configs: tuple[KernelConfig, ...] = DIRECT_CONFIGS + IGEMM_CONFIGS
    return tuple(
        Instance(config, dtype)
        for config in configs
        if source is None or config.source == source
        for dtype in CUDA_TYPES
    )


def name_expressions(source: str) -> tuple[str, ...]:
    """The ``name_expressions`` of ``source``'s RawModule."""
    return tuple(inst.name_expression for inst in instances(source))


def instantiation_unit(source: str) -> str:
    """A translation unit that includes ``source`` and explicitly instantiates all its kernels."""
    lines = [f'#include "{source}"', *(inst.explicit_instantiation for inst in instances(source))]
    return "\n".join(lines) + "\n"


def source_dir() -> Path:
    """The directory of the ``.cu`` / ``.cuh`` files (package data)."""
    return Path(str(resources.files("kernelbench.kernels") / "cuda"))


def source_text(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown CUDA source {source!r}; known: {', '.join(SOURCES)}")
    return (source_dir() / source).read_text()


@cache
def source_digest() -> str:
    """SHA-256 (16 hex digits) over every ``.cu`` and ``.cuh`` file.

    CuPy's kernel cache is keyed by the source text and the options, not by the
    headers it includes; putting this digest in the options makes a header edit
    recompile instead of loading a stale binary.
    """
    digest = hashlib.sha256()
    for path in sorted(source_dir().glob("*.cu*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def compile_options() -> tuple[str, ...]:
    """Options of the runtime NVRTC compile (and of the NVRTC compile check)."""
    return ("--std=c++17", f"-I{source_dir()}", f"-DKB_SOURCE_DIGEST=0x{source_digest()}ull")
