"""Built-in architectures: MLP, 1-D CNN, small 2-D CNN and a small ResNet.

They are sized for CPU-scale unlearning audits (populations of tens of members).
Normalisation is GroupNorm, never BatchNorm, so that every member's output depends
only on its own weights and its own input (see :mod:`expunge.models.registry`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from expunge.errors import ExpungeError
from expunge.models.registry import register_model


def _channels_and_length(input_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(input_shape) == 1:
        return 1, input_shape[0]
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    raise ExpungeError(f"cnn1d needs inputs shaped [length] or [channels, length], got {list(input_shape)}")


def _image_shape(input_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(input_shape) == 3:
        return input_shape  # type: ignore[return-value]
    if len(input_shape) == 2:
        return (1, *input_shape)  # type: ignore[return-value]
    side = math.isqrt(int(math.prod(input_shape)))
    if len(input_shape) == 1 and side * side == input_shape[0]:
        return (1, side, side)
    raise ExpungeError(f"{name} needs image inputs shaped [channels, height, width], got {list(input_shape)}")


class MLP(nn.Module):
    """Fully connected network with ReLU; flattens any input shape."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        width = int(math.prod(input_shape))
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNN1D(nn.Module):
    """Three 1-D convolutions (stride 2) and a linear head; the usual MNIST-1D baseline shape."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, channels: int = 32):
        super().__init__()
        in_channels, length = _channels_and_length(input_shape)
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv1d(in_channels, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = self.features(torch.zeros(1, in_channels, length)).shape[1]
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.head(self.features(x))


class CNN2D(nn.Module):
    """Two conv blocks (conv-GroupNorm-ReLU-pool) and a linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, channels: int = 32):
        super().__init__()
        c, h, w = _image_shape(input_shape, "cnn2d")
        self.image_shape = (c, h, w)
        self.features = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.GroupNorm(4, channels), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.GroupNorm(4, 2 * channels), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(2 * channels * 4, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(x.shape[0], *self.image_shape)))


class _Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(4, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(4, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.GroupNorm(4, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet with three stages of basic blocks (GroupNorm), for 8x8 to 32x32 images."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, width: int = 16, blocks: int = 1):
        super().__init__()
        c, h, w = _image_shape(input_shape, "resnet")
        self.image_shape = (c, h, w)
        layers: list[nn.Module] = [nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU()]
        channels = width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(_Block(channels, out, 2 if (stage > 0 and b == 0) else 1))
                channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(x.shape[0], *self.image_shape)))


@register_model("mlp", "multilayer perceptron (hidden=(256, 256))", "any (flattened)")
def mlp(input_shape: tuple[int, ...], num_outputs: int, hidden: tuple[int, ...] | list[int] = (256, 256)) -> nn.Module:
    return MLP(input_shape, num_outputs, tuple(hidden))


@register_model("cnn1d", "1-D CNN, 3 conv layers (channels=32)", "sequences, e.g. MNIST-1D")
def cnn1d(input_shape: tuple[int, ...], num_outputs: int, channels: int = 32) -> nn.Module:
    return CNN1D(input_shape, num_outputs, channels)


@register_model("cnn2d", "small 2-D CNN, 2 conv blocks (channels=32)", "images")
def cnn2d(input_shape: tuple[int, ...], num_outputs: int, channels: int = 32) -> nn.Module:
    return CNN2D(input_shape, num_outputs, channels)


@register_model("resnet", "small ResNet, 3 stages (width=16, blocks=1)", "images")
def resnet(input_shape: tuple[int, ...], num_outputs: int, width: int = 16, blocks: int = 1) -> nn.Module:
    return SmallResNet(input_shape, num_outputs, width, blocks)
