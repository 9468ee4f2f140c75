"""Configuration spaces for ``kernelbench sweep``: named spaces and user spec files.

Named spaces (:data:`SPACE_NAMES`):

- ``smoke``: 18 small layers covering every kind of convolution, each at its own
  batch size (1-4), 0.06 GFLOP in all, sized for a full CPU sweep under two minutes.
- ``resnet50``, ``vgg16``, ``mobilenet_v2``, ``inception_v3``, ``efficientnet_b0``:
  every distinct convolution shape of the network (identical shapes merged,
  keeping the first layer name and a count), at each batch size of
  :data:`DEFAULT_BATCH_SIZES` unless ``batch_sizes`` is given.
- ``networks``: the union of the network spaces, without repeating a problem.

Spec files (TOML or JSON, ``docs/spec-format.md``) describe a grid or a seeded
random sample; :func:`load_spec` reads one.

Problem order is deterministic: the sweep shards the list by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kernelbench.errors import InputError
from kernelbench.spaces.generate import generate
from kernelbench.spaces.layers import Layer, LayerShape, SpaceEntry, deduplicate, entries
from kernelbench.spaces.networks import NETWORKS
from kernelbench.spaces.smoke import SMOKE
from kernelbench.spaces.spec import SpaceSpec, read_spec_file

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "SPACE_NAMES",
    "Layer",
    "LayerShape",
    "SpaceEntry",
    "SpaceSpec",
    "describe_spaces",
    "load_spec",
    "network_layers",
    "space_problems",
]

#: Batch sizes of the network spaces when none are given: single-image latency (1) and a small
#: batch (8) where GEMM-based kernels start to pay off, while one sweep of all networks stays
#: within hours, not days, on a two-core CPU.
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 8)
SPACE_NAMES: tuple[str, ...] = ("smoke", *NETWORKS, "networks")


def network_layers(name: str) -> list[Layer]:
    """The distinct convolution shapes of a network space, in forward order (``count`` = layers sharing it).

    Raises:
        InputError: ``name`` is not a network space.
    """
    if name not in NETWORKS:
        raise InputError(f"unknown network {name!r}; networks: {', '.join(NETWORKS)}")
    return deduplicate(NETWORKS[name][1]())


def space_problems(name: str, *, batch_sizes: Sequence[int] | None = None, dtype: str = "fp32") -> list[SpaceEntry]:
    """The problems of the named space, in a fixed order (batch-major within each network).

    ``batch_sizes`` replaces the default batch sizes (for ``smoke``: each layer's own
    batch) with these, in the given order.

    Raises:
        InputError: unknown space name (the message lists the valid ones), a batch
            size below 1, or an invalid ``dtype``.
    """
    if name not in SPACE_NAMES:
        raise InputError(f"unknown space {name!r}; valid spaces: {', '.join(SPACE_NAMES)} (or use --spec FILE)")
    if batch_sizes is not None:
        batch_sizes = tuple(batch_sizes)
        if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
            raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if name == "smoke":
        if batch_sizes is None:
            return [SpaceEntry(layer.shape.problem(batch=batch, dtype=dtype), "smoke", layer.name)
                    for layer, batch in SMOKE]
        return entries("smoke", [layer for layer, _ in SMOKE], batch_sizes=batch_sizes, dtype=dtype)
    batches = batch_sizes or DEFAULT_BATCH_SIZES
    if name != "networks":
        return entries(name, network_layers(name), batch_sizes=batches, dtype=dtype)
    union: dict[str, SpaceEntry] = {}
    for network in NETWORKS:
        for entry in entries(network, network_layers(network), batch_sizes=batches, dtype=dtype):
            union.setdefault(entry.problem.problem_id, entry)
    return list(union.values())


def load_spec(path: str | Path) -> tuple[SpaceSpec, list[SpaceEntry]]:
    """Read a spec file and generate its problems.

    Returns the spec (``.as_dict()`` for the run manifest, with the number of problems
    and of skipped combinations) and the problems in a fixed order.

    Raises:
        InputError: one line naming the file and the key: unreadable file, invalid
            TOML/JSON, unknown or missing keys, bad values or ranges, no valid problem.
    """
    return generate(read_spec_file(path))


def describe_spaces() -> list[tuple[str, str, int]]:
    """``(name, one-line description, number of problems at default batch sizes)`` for every named space."""
    described = {"smoke": "18 small layers (1x1, 3x3, 5x5, 7x7, 1x7/7x1, stride 2, dilation, depthwise, grouped), "
                          "batch 1-4: a quick check of every kernel",
                 **{name: description for name, (description, _) in NETWORKS.items()},
                 "networks": f"union of {', '.join(NETWORKS)}, each problem once"}
    return [(name, described[name], len(space_problems(name))) for name in SPACE_NAMES]
