"""CIFAR ResNets (He et al. 2016, §4.2): ResNet-20/32/44/56/110 with basic blocks and option-A shortcuts.

A 3×3 conv stem with 16 channels, three stages of ``n`` basic blocks with 16, 32 and 64 channels (the
first block of stages 2 and 3 has stride 2), global average pooling and ``Linear(64, num_classes)``;
depth = 6n + 2 (ResNet-56: n = 9). Option A (the paper's CIFAR choice): a shortcut that changes shape is
parameter-free, ``x[:, :, ::2, ::2]`` zero-padded to the new channel count. No conv has a bias (BN follows).

Each block's *internal* width (the output channels of its first conv, read by its second) can be set
with ``mid_widths`` (one int per block; default = the stage width): this is where Li et al. (2017) prune
ResNet-56, and it needs no coupling across the residual additions. Parameter count of ResNet-56 with
10 classes: 853,018 (pinned by a test; He et al.: "0.85M"; ResNet-20: 269,722).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STAGE_WIDTHS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option-A shortcut: spatial subsampling by ``stride`` and zero channels appended up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra > 0 else x


class BasicBlock(nn.Module):
    """conv3×3(stride) → BN → ReLU → conv3×3 → BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, mid: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            PadShortcut(in_channels, out_channels, stride) if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32×32 inputs; ``mid_widths`` sets each block's internal width (3n ints)."""

    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        in_channels: int = 3,
        mid_widths: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth, self.name = depth, name or f"resnet{depth}"
        default_mid = [w for w in STAGE_WIDTHS for _ in range(n)]
        mids = [int(m) for m in (mid_widths if mid_widths is not None else default_mid)]
        if len(mids) != 3 * n or min(mids) < 1:
            raise ValueError(f"mid_widths needs {3 * n} positive ints for ResNet-{depth}, got {len(mids)}")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        c_in, it = 16, iter(mids)
        for s, width in enumerate(STAGE_WIDTHS):
            stages = [BasicBlock(c_in if i == 0 else width, next(it), width, 2 if (i == 0 and s > 0) else 1)
                      for i in range(n)]
            blocks.append(nn.Sequential(*stages))
            c_in = width
        self.layer1, self.layer2, self.layer3 = blocks
        self.fc = nn.Linear(64, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5**0.5)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    @property
    def mid_widths(self) -> list[int]:
        return [b.conv1.out_channels for layer in (self.layer1, self.layer2, self.layer3) for b in layer]
