"""Convolution layers of well-known ImageNet classifiers, written from the architectures.

Each function walks the network in forward order at its ImageNet inference
resolution (224×224; 299×299 for Inception-v3) and returns every convolution,
named after the usual module path.  Only convolutions are listed (pooling and
fully connected layers are not convolution problems); training-only branches
(Inception-v3's auxiliary classifier) are left out.  Layer counts, for checking:
ResNet-50 53, VGG-16 13, MobileNet-V2 52, Inception-v3 94, EfficientNet-B0 81.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kernelbench.spaces.layers import Layer, NetBuilder, pool_size


def resnet50() -> list[Layer]:
    """ResNet-50 v1.5 (stride on the bottleneck's 3×3, as in torchvision): stem + 16 bottlenecks."""
    net = NetBuilder()
    size = net.conv("conv1", 3, 64, 224, 7, stride=2, pad=3)
    size = pool_size(size, window=3, stride=2, pad=1)
    channels = 64
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        out_channels = 4 * width
        for block in range(blocks):
            name = f"layer{stage}.{block}"
            s = stride if block == 0 else 1
            net.conv(f"{name}.conv1", channels, width, size, 1)
            after = net.conv(f"{name}.conv2", width, width, size, 3, stride=s)
            net.conv(f"{name}.conv3", width, out_channels, after, 1)
            if block == 0:
                net.conv(f"{name}.downsample", channels, out_channels, size, 1, stride=s)
            channels, size = out_channels, after
    return net.layers


def vgg16() -> list[Layer]:
    """VGG-16 (configuration D): 13 convolutions 3×3 pad 1 in five stages separated by 2×2 max pooling."""
    net = NetBuilder()
    size, channels = 224, 3
    for stage, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(1, convs + 1):
            net.conv(f"conv{stage}_{i}", channels, width, size, 3)
            channels = width
        size = pool_size(size, window=2, stride=2)
    return net.layers


def mobilenet_v2() -> list[Layer]:
    """MobileNet-V2 (width 1.0): stem, 17 inverted residuals (expand 1×1, depthwise 3×3, project 1×1), last 1×1."""
    net = NetBuilder()
    size = net.conv("features.0", 3, 32, 224, 3, stride=2)
    channels, index = 32, 1
    # (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for repeat in range(n):
            name = f"features.{index}"
            hidden = channels * t
            if t != 1:
                net.conv(f"{name}.expand", channels, hidden, size, 1)
            after = net.conv(f"{name}.depthwise", hidden, hidden, size, 3, stride=s if repeat == 0 else 1,
                             groups=hidden)
            net.conv(f"{name}.project", hidden, c, after, 1)
            channels, size, index = c, after, index + 1
    net.conv(f"features.{index}", channels, 1280, size, 1)
    return net.layers


def _inception_a(net: NetBuilder, name: str, cin: int, size: int, pool_features: int) -> int:
    net.conv(f"{name}.branch1x1", cin, 64, size, 1)
    net.conv(f"{name}.branch5x5_1", cin, 48, size, 1)
    net.conv(f"{name}.branch5x5_2", 48, 64, size, 5)
    net.conv(f"{name}.branch3x3dbl_1", cin, 64, size, 1)
    net.conv(f"{name}.branch3x3dbl_2", 64, 96, size, 3)
    net.conv(f"{name}.branch3x3dbl_3", 96, 96, size, 3)
    net.conv(f"{name}.branch_pool", cin, pool_features, size, 1)
    return 64 + 64 + 96 + pool_features


def _inception_c(net: NetBuilder, name: str, cin: int, size: int, c7: int) -> int:
    net.conv(f"{name}.branch1x1", cin, 192, size, 1)
    net.conv(f"{name}.branch7x7_1", cin, c7, size, 1)
    net.conv(f"{name}.branch7x7_2", c7, c7, size, (1, 7))
    net.conv(f"{name}.branch7x7_3", c7, 192, size, (7, 1))
    net.conv(f"{name}.branch7x7dbl_1", cin, c7, size, 1)
    net.conv(f"{name}.branch7x7dbl_2", c7, c7, size, (7, 1))
    net.conv(f"{name}.branch7x7dbl_3", c7, c7, size, (1, 7))
    net.conv(f"{name}.branch7x7dbl_4", c7, c7, size, (7, 1))
    net.conv(f"{name}.branch7x7dbl_5", c7, 192, size, (1, 7))
    net.conv(f"{name}.branch_pool", cin, 192, size, 1)
    return 4 * 192


def _inception_e(net: NetBuilder, name: str, cin: int, size: int) -> int:
    net.conv(f"{name}.branch1x1", cin, 320, size, 1)
    net.conv(f"{name}.branch3x3_1", cin, 384, size, 1)
    net.conv(f"{name}.branch3x3_2a", 384, 384, size, (1, 3))
    net.conv(f"{name}.branch3x3_2b", 384, 384, size, (3, 1))
    net.conv(f"{name}.branch3x3dbl_1", cin, 448, size, 1)
    net.conv(f"{name}.branch3x3dbl_2", 448, 384, size, 3)
    net.conv(f"{name}.branch3x3dbl_3a", 384, 384, size, (1, 3))
    net.conv(f"{name}.branch3x3dbl_3b", 384, 384, size, (3, 1))
    net.conv(f"{name}.branch_pool", cin, 192, size, 1)
    return 320 + 2 * 384 + 2 * 384 + 192


def inception_v3() -> list[Layer]:
    """Inception-v3 at 299×299: unpadded stem, 3× block A (5×5), B, 4× block C (1×7/7×1), D, 2× block E."""
    net = NetBuilder()
    size = net.conv("Conv2d_1a_3x3", 3, 32, 299, 3, stride=2, pad=0)
    size = net.conv("Conv2d_2a_3x3", 32, 32, size, 3, pad=0)
    size = net.conv("Conv2d_2b_3x3", 32, 64, size, 3)
    size = pool_size(size, window=3, stride=2)
    size = net.conv("Conv2d_3b_1x1", 64, 80, size, 1)
    size = net.conv("Conv2d_4a_3x3", 80, 192, size, 3, pad=0)
    size = pool_size(size, window=3, stride=2)
    channels = 192
    for name, pool_features in [("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)]:
        channels = _inception_a(net, name, channels, size, pool_features)
    # Block B: grid reduction 35 -> 17.
    reduced = net.conv("Mixed_6a.branch3x3", channels, 384, size, 3, stride=2, pad=0)
    net.conv("Mixed_6a.branch3x3dbl_1", channels, 64, size, 1)
    net.conv("Mixed_6a.branch3x3dbl_2", 64, 96, size, 3)
    net.conv("Mixed_6a.branch3x3dbl_3", 96, 96, size, 3, stride=2, pad=0)
    channels, size = 384 + 96 + channels, reduced
    for name, c7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)]:
        channels = _inception_c(net, name, channels, size, c7)
    # Block D: grid reduction 17 -> 8.
    net.conv("Mixed_7a.branch3x3_1", channels, 192, size, 1)
    reduced = net.conv("Mixed_7a.branch3x3_2", 192, 320, size, 3, stride=2, pad=0)
    net.conv("Mixed_7a.branch7x7x3_1", channels, 192, size, 1)
    net.conv("Mixed_7a.branch7x7x3_2", 192, 192, size, (1, 7))
    net.conv("Mixed_7a.branch7x7x3_3", 192, 192, size, (7, 1))
    net.conv("Mixed_7a.branch7x7x3_4", 192, 192, size, 3, stride=2, pad=0)
    channels, size = 320 + 192 + channels, reduced
    for name in ("Mixed_7b", "Mixed_7c"):
        channels = _inception_e(net, name, channels, size)
    return net.layers


def efficientnet_b0() -> list[Layer]:
    """EfficientNet-B0: stem, 16 MBConv blocks (expand 1×1, depthwise 3×3/5×5, squeeze-excite, project), head.

    The squeeze-and-excitation layers are 1×1 convolutions on the pooled 1×1 map,
    reducing to a quarter of the block's input channels, as in the reference model.
    """
    net = NetBuilder()
    size = net.conv("features.0", 3, 32, 224, 3, stride=2)
    channels = 32
    # (expand ratio, kernel, first stride, output channels, repeats), from the paper's Table 1.
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
              (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    for stage, (expand, kernel, stride, out_channels, repeats) in enumerate(stages, start=1):
        for block in range(repeats):
            name = f"features.{stage}.{block}"
            hidden = channels * expand
            if expand != 1:
                net.conv(f"{name}.expand", channels, hidden, size, 1)
            after = net.conv(f"{name}.depthwise", hidden, hidden, size, kernel, stride=stride if block == 0 else 1,
                             groups=hidden)
            squeezed = max(1, channels // 4)
            net.conv(f"{name}.se.fc1", hidden, squeezed, 1, 1)
            net.conv(f"{name}.se.fc2", squeezed, hidden, 1, 1)
            net.conv(f"{name}.project", hidden, out_channels, after, 1)
            channels, size = out_channels, after
    net.conv(f"features.{len(stages) + 1}", channels, 1280, size, 1)
    return net.layers


#: Network spaces: name -> (one-line description, layer list builder).  Order is the ``networks`` union order.
NETWORKS: dict[str, tuple[str, Callable[[], list[Layer]]]] = {
    "resnet50": ("ResNet-50 v1.5 at 224x224: 7x7 stem, bottleneck 1x1/3x3, strided downsampling", resnet50),
    "vgg16": ("VGG-16 at 224x224: 13 dense 3x3 pad-1 convolutions, large early feature maps", vgg16),
    "mobilenet_v2": ("MobileNet-V2 at 224x224: depthwise 3x3 + pointwise 1x1 inverted residuals", mobilenet_v2),
    "inception_v3": ("Inception-v3 at 299x299: 5x5, 1x7/7x1, 1x3/3x1 and unpadded 3x3 branches", inception_v3),
    "efficientnet_b0": ("EfficientNet-B0 at 224x224: MBConv with depthwise 3x3/5x5 and squeeze-excite 1x1",
                        efficientnet_b0),
}

#: Multiply-accumulates of each network's classifier (fully connected) layer, to compare totals with published counts.
CLASSIFIER_MACS = {
    "resnet50": 2048 * 1000,
    "vgg16": 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000,
    "mobilenet_v2": 1280 * 1000,
    "inception_v3": 2048 * 1000,
    "efficientnet_b0": 1280 * 1000,
}


def conv_macs(layers: list[Layer]) -> int:
    """Multiply-accumulates of all listed convolutions at batch 1, counting merged layers ``count`` times."""
    total = 0
    for layer in layers:
        s = layer.shape
        per_output = (s.in_channels // s.groups) * math.prod(s.filter_hw)
        total += layer.count * s.out_channels * math.prod(s.out_hw) * per_output
    return total
