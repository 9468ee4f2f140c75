"""A small, deterministic synthetic runtime dataset whose winner is learnable from the problem fields.

Five kernels with cost models in the spirit of real algorithm families:
``direct`` (cheap on small problems), ``gemm`` (per-call overhead, high
throughput), ``winograd`` (3x3 stride-1 only, fastest on many channels),
``gemm_1x1`` (1x1 filters only), ``fft`` (large images only, fwd only).
Times get 3 % log-normal noise.  ``network`` cycles through three names so
``--split-by network=...`` can be tested.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from kernelbench import schema
from kernelbench.problem import ConvProblem, problem_2d

KERNELS = ("direct", "gemm", "winograd", "gemm_1x1", "fft")
NETWORKS = ("netA", "netB", "netC")


def synthetic_problems(n: int, *, seed: int = 0, directions: tuple[str, ...] = ("fwd", "bwd_data")) -> list[ConvProblem]:
    rng = np.random.default_rng(seed)
    out: dict[str, ConvProblem] = {}
    while len(out) < n:
        f = int(rng.choice([1, 3, 5]))
        p = problem_2d(
            batch=int(rng.choice([1, 2, 8, 32])),
            in_channels=int(rng.choice([3, 16, 64, 256])),
            out_channels=int(rng.choice([16, 64, 128, 512])),
            in_h=(size := int(rng.choice([7, 14, 28, 56, 112]))),
            in_w=size,
            filter_h=f,
            filter_w=f,
            pad_h=f // 2,
            pad_w=f // 2,
            stride_h=int(rng.choice([1, 1, 2])),
            stride_w=1,
            dtype=str(rng.choice(["fp32", "fp16"])),
            direction=str(rng.choice(directions)),
        )
        out.setdefault(p.problem_id, p)
    return list(out.values())


def kernel_times_ms(p: ConvProblem) -> dict[str, float]:
    """Noise-free cost model; kernels that do not apply are absent."""
    gflop = p.flops / 1e9
    speed = 2.0 if p.dtype == "fp16" else 1.0
    times = {
        "direct": 0.005 + gflop / (20 * speed) * (1 + p.in_channels / 64),
        "gemm": 0.05 + gflop / (200 * speed),
    }
    if p.filter_h == 3 and p.stride_h == 1:
        times["winograd"] = 0.08 + gflop / (500 * speed) * (64 / max(p.in_channels, 16)) ** 0.5
    if p.filter_h == 1:
        times["gemm_1x1"] = 0.02 + gflop / (300 * speed)
    if p.in_h >= 28 and p.direction == "fwd":
        times["fft"] = 0.1 + gflop / (400 * speed) * (5 if p.filter_h == 1 else 1)
    return times


def synthetic_frame(n: int = 400, *, seed: int = 0, directions: tuple[str, ...] = ("fwd", "bwd_data")) -> pl.DataFrame:
    """Long-format dataset rows (conformed to the schema) for ``n`` problems."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for i, p in enumerate(synthetic_problems(n, seed=seed, directions=directions)):
        for kernel, t in kernel_times_ms(p).items():
            row = p.as_row()
            row.update(
                kernel=kernel,
                algorithm=kernel,
                status="ok",
                time_ms=float(t * np.exp(rng.normal(0, 0.03))),
                device="synthetic",
                source="test",
                network=NETWORKS[i % len(NETWORKS)],
            )
            rows.append(row)
    return schema.conform(pl.DataFrame(rows, schema_overrides=schema.POLARS_SCHEMA, infer_schema_length=None))


def write_synthetic(path: str | os.PathLike[str], n: int = 400, *, seed: int = 0, **kwargs) -> None:
    schema.write_dataset(synthetic_frame(n, seed=seed, **kwargs), path, {"device": "synthetic", "generator": "tests"})


def synthetic_device_frame(n: int = 200, *, seed: int = 0, device: str = "other", speedup: float = 3.0,
                           without: tuple[str, ...] = ("winograd",)) -> pl.DataFrame:
    """The problems of :func:`synthetic_frame` measured on a second device: ``gemm`` is ``speedup`` times
    faster there and the kernels ``without`` are not recorded, so winners and applicability differ."""
    frame = synthetic_frame(n, seed=seed).filter(~pl.col("kernel").is_in(list(without)))
    faster = pl.when(pl.col("kernel") == "gemm").then(pl.col("time_ms") / speedup).otherwise(pl.col("time_ms"))
    return frame.with_columns(faster.alias("time_ms"), pl.lit(device).alias("device"))


#: Device labels with descriptors in kernelbench/devices/descriptors.toml, for multi-device tests.
DESCRIBED_DEVICES = ("miopen:gfx908:120", "miopen:gfx90a:110", "miopen:gfx803:64")


def multi_device_frame(n: int = 150, *, seed: int = 0, devices: tuple[str, ...] = DESCRIBED_DEVICES,
                       directions: tuple[str, ...] = ("fwd", "bwd_data")) -> pl.DataFrame:
    """The same ``n`` problems measured on each of ``devices``: ``gemm`` 1x, 3x, 5x, ... faster from one
    device to the next, and ``winograd`` recorded on the first device only, so winners and kernels differ."""
    frames = []
    for i, device in enumerate(devices):
        frame = synthetic_frame(n, seed=seed, directions=directions)
        if i:
            frame = frame.filter(pl.col("kernel") != "winograd")
        faster = pl.when(pl.col("kernel") == "gemm").then(pl.col("time_ms") / (1 + 2 * i)).otherwise(pl.col("time_ms"))
        frames.append(frame.with_columns(faster.alias("time_ms"), pl.lit(device).alias("device")))
    return pl.concat(frames)


def write_multi_device(path: str | os.PathLike[str], n: int = 150, **kwargs) -> None:
    schema.write_dataset(multi_device_frame(n, **kwargs), path, {"source": "test", "generator": "tests"})
