"""The ``smoke`` space: 18 small layers that exercise every kind of convolution quickly.

Sized for a full CPU sweep in under two minutes on two cores (batch 1-4,
at most 64 channels, feature maps at most 28×28), yet covering what the kernels
must get right: 1×1 (plain and strided), 3×3, stride 2, 5×5 and 7×7, 1×7/7×1,
dilation, depthwise, grouped, unpadded odd and non-square inputs.
"""

from __future__ import annotations

from kernelbench.spaces.layers import Layer, LayerShape


def _layer(name: str, cin: int, cout: int, hw: int | tuple[int, int], filter_hw: int | tuple[int, int], *,
           pad: int | tuple[int, int] = 0, stride: int = 1, dilation: int = 1, groups: int = 1) -> Layer:
    def pair(v: int | tuple[int, int]) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else v

    return Layer(name, LayerShape(cin, cout, pair(hw), pair(filter_hw), pair(pad), (stride, stride),
                                  (dilation, dilation), groups))


#: (layer, batch size).  Names say what each layer covers.
SMOKE: tuple[tuple[Layer, int], ...] = (
    (_layer("pointwise", 16, 32, 28, 1), 1),
    (_layer("pointwise_b2", 64, 64, 14, 1), 2),
    (_layer("pointwise_s2", 32, 64, 28, 1, stride=2), 1),
    (_layer("pointwise_b4_7x7map", 64, 32, 7, 1), 4),
    (_layer("conv3x3", 16, 16, 28, 3, pad=1), 1),
    (_layer("conv3x3_b4", 32, 64, 14, 3, pad=1), 4),
    (_layer("conv3x3_s2", 16, 32, 28, 3, pad=1, stride=2), 2),
    (_layer("conv3x3_rgb_nopad_odd", 3, 16, 27, 3), 1),
    (_layer("conv3x3_nonsquare_b3", 8, 16, (20, 12), 3, pad=1), 3),
    (_layer("stem7x7_s2", 3, 16, 28, 7, pad=3, stride=2), 1),
    (_layer("conv5x5", 16, 32, 14, 5, pad=2), 1),
    (_layer("conv1x7", 32, 32, 14, (1, 7), pad=(0, 3)), 1),
    (_layer("conv7x1", 32, 32, 14, (7, 1), pad=(3, 0)), 1),
    (_layer("dilated3x3_d2", 16, 16, 28, 3, pad=2, dilation=2), 1),
    (_layer("depthwise3x3", 32, 32, 28, 3, pad=1, groups=32), 1),
    (_layer("depthwise3x3_s2_b2", 64, 64, 14, 3, pad=1, stride=2, groups=64), 2),
    (_layer("depthwise5x5", 32, 32, 14, 5, pad=2, groups=32), 1),
    (_layer("grouped3x3_g4_b2", 32, 32, 14, 3, pad=1, groups=4), 2),
)
