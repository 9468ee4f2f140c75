"""Batch-free convolution layer shapes and the entries a space hands to the sweep.

A network is described once as a list of :class:`Layer` (name + :class:`LayerShape`)
in forward order; batch size and dtype are applied later, so one description
serves every ``--batch-sizes``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from kernelbench.problem import ConvProblem, output_size, problem_2d


@dataclasses.dataclass(frozen=True)
class SpaceEntry:
    """One problem of a space, with where it comes from.

    ``network`` fills the dataset's ``network`` column (a network name, ``smoke``,
    or a spec's ``name``); ``layer`` is the first layer of that network with this
    shape (e.g. ``layer2.0.conv2``); ``count`` is how many layers of the network
    share the shape (identical shapes are measured once).
    """

    problem: ConvProblem
    network: str
    layer: str
    count: int = 1


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """A 2D convolution without batch size or dtype.  Sizes in elements, ``(h, w)`` order."""

    in_channels: int
    out_channels: int
    in_hw: tuple[int, int]
    filter_hw: tuple[int, int]
    pad_hw: tuple[int, int] = (0, 0)
    stride_hw: tuple[int, int] = (1, 1)
    dilation_hw: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        return (
            output_size(self.in_hw[0], self.filter_hw[0], self.pad_hw[0], self.stride_hw[0], self.dilation_hw[0]),
            output_size(self.in_hw[1], self.filter_hw[1], self.pad_hw[1], self.stride_hw[1], self.dilation_hw[1]),
        )

    def problem(self, *, batch: int, dtype: str = "fp32", layout: str = "NCHW", direction: str = "fwd") -> ConvProblem:
        """The forward problem of this layer at ``batch``.  Raises InputError if the shape is invalid."""
        return problem_2d(
            batch=batch,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            in_h=self.in_hw[0],
            in_w=self.in_hw[1],
            filter_h=self.filter_hw[0],
            filter_w=self.filter_hw[1],
            pad_h=self.pad_hw[0],
            pad_w=self.pad_hw[1],
            stride_h=self.stride_hw[0],
            stride_w=self.stride_hw[1],
            dilation_h=self.dilation_hw[0],
            dilation_w=self.dilation_hw[1],
            groups=self.groups,
            dtype=dtype,
            layout=layout,
            direction=direction,
        )


@dataclasses.dataclass(frozen=True)
class Layer:
    """A named layer shape; ``count`` identical layers of the network were merged into it."""

    name: str
    shape: LayerShape
    count: int = 1


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


class NetBuilder:
    """Records the convolutions of a network in forward order while tracking square feature-map sizes.

    Only what the architecture descriptions need: square inputs and symmetric padding,
    which keeps every feature map square (1×7 with pad (0, 3) included).
    """

    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def conv(
        self,
        name: str,
        in_channels: int,
        out_channels: int,
        size: int,
        filter_hw: int | tuple[int, int],
        *,
        stride: int = 1,
        pad: int | tuple[int, int] | None = None,
        groups: int = 1,
    ) -> int:
        """Record one convolution on a ``size``×``size`` input; returns the output size.

        ``pad=None`` means half padding, ``(filter - 1) // 2`` per axis (size-preserving at stride 1).
        """
        fh, fw = _pair(filter_hw)
        pad_hw = ((fh - 1) // 2, (fw - 1) // 2) if pad is None else _pair(pad)
        shape = LayerShape(
            in_channels=in_channels,
            out_channels=out_channels,
            in_hw=(size, size),
            filter_hw=(fh, fw),
            pad_hw=pad_hw,
            stride_hw=(stride, stride),
            groups=groups,
        )
        out_h, out_w = shape.out_hw
        # A non-square output means an architecture description is wrong, not the user's input.
        assert out_h == out_w > 0, f"{name}: output {out_h}x{out_w}"
        self.layers.append(Layer(name, shape))
        return out_h


def pool_size(size: int, *, window: int, stride: int, pad: int = 0) -> int:
    """Output size of a max/avg pooling (floor mode): the same arithmetic as a convolution."""
    return output_size(size, window, pad, stride, 1)


def deduplicate(layers: Iterable[Layer]) -> list[Layer]:
    """Merge layers of identical shape, keeping the first name, first-seen order, and summing counts."""
    merged: dict[LayerShape, Layer] = {}
    for layer in layers:
        first = merged.get(layer.shape)
        merged[layer.shape] = layer if first is None else dataclasses.replace(first, count=first.count + layer.count)
    return list(merged.values())


def entries(
    network: str, layers: Sequence[Layer], *, batch_sizes: Sequence[int], dtype: str = "fp32"
) -> list[SpaceEntry]:
    """Every layer at every batch size, batch-major (all layers at the first batch size first).

    Batch-major order means a sweep stopped early has covered every layer at the
    smallest batch rather than a few layers at every batch.
    """
    return [
        SpaceEntry(layer.shape.problem(batch=batch, dtype=dtype), network, layer.name, layer.count)
        for batch in batch_sizes
        for layer in layers
    ]
