"""VGG for CIFAR in the network-slimming form (Liu et al. 2017; the AutoCL authors' VGG-19).

``cfg`` lists the conv widths with ``"M"`` for a 2×2 max-pool; every conv is 3×3, padding 1, **no bias**,
followed by BatchNorm and ReLU. After the features: ``AvgPool2d(2)`` (a 2×2 map at 32×32 input), flatten,
``Linear(cfg[-1], num_classes)``. Initialisation as in the slimming code: He-normal convs (fan-out),
BN γ = 0.5 and β = 0, Linear weights N(0, 0.01) and bias 0.

Parameter counts (BN included, pinned by tests): VGG-19 = 20,035,018; the slimming-70 % widths of AutoCL
Table 1 = 2,366,600 (88.19 % removed).

Optional dense head (``head``: hidden widths): the classifier becomes an
:class:`~coresetlab.models.mlp.MLP` ``cfg[-1] -> head[0] -> ... -> num_classes`` (Linear + ReLU per hidden
layer; **no BN and no dropout**, so every hidden neuron is the point ``p = [w | b]`` of the neuron-coreset
paper and Algorithm 2's reweighting applies to it exactly). ``head=None`` (default) keeps the single
``Linear(cfg[-1], num_classes)``: VGG-19's counts and state-dict keys are unchanged. ``dense_params`` counts
the dense part (all Linear layers). VGG-16 with ``head=[950, 950]`` (conf/model/vgg16_head.yaml): 1,400,310
dense parameters (the neuron-coreset paper's 1.4M; derivation there). Hidden head layers are He-normal
(fan-in) initialised, the last Linear N(0, 0.01) as above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from coresetlab.models.mlp import MLP

#: Conv widths; ``"M"`` = max-pool. ``vgg19_slim70`` = AutoCL Table 1 (network slimming, 70 % of channels pruned).
VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
    "vgg19_slim70": [49, 64, "M", 128, 128, "M", 256, 254, 234, 198, "M", 114, 41, 24, 11, "M", 14, 13, 19, 104],
}


def conv_widths(cfg: Sequence[int | str]) -> list[int]:
    """The conv widths of a cfg (the ``"M"`` entries dropped)."""
    return [int(c) for c in cfg if c != "M"]


def cfg_with_widths(cfg: Sequence[int | str], widths: Sequence[int]) -> list[int | str]:
    """``cfg`` with its conv widths replaced by ``widths`` (the ``"M"`` pools stay where they are)."""
    widths = [int(w) for w in widths]
    if len(widths) != len(conv_widths(cfg)):
        raise ValueError(f"{len(widths)} widths for a cfg with {len(conv_widths(cfg))} convs")
    it = iter(widths)
    return [c if c == "M" else next(it) for c in cfg]


class VGG(nn.Module):
    """VGG with BN for 32×32 inputs; ``features`` is an ``nn.Sequential`` of Conv-BN-ReLU blocks and pools."""

    def __init__(
        self,
        arch: str | None = "vgg19",
        cfg: Sequence[int | str] | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        name: str | None = None,
        head: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if cfg is None:
            if arch not in VGG_CFGS:
                raise ValueError(f"unknown VGG arch {arch!r}; choose one of {sorted(VGG_CFGS)} or pass cfg")
            cfg = VGG_CFGS[arch]
        self.cfg = [c if c == "M" else int(c) for c in cfg]
        self.name = name or arch or "vgg"
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in self.cfg:
            if c == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.head_widths = [int(h) for h in head] if head else []
        if any(h < 1 for h in self.head_widths):
            raise ValueError(f"head widths must be positive, got {list(head or [])}")
        self.classifier: nn.Module = (
            MLP(c_in, self.head_widths, num_classes, "relu", name="head") if self.head_widths
            else nn.Linear(c_in, num_classes)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        if self.head_widths:  # hidden dense layers feed a ReLU: He-normal (fan-in) keeps the signal's scale
            for layer in list(self.classifier.layers)[:-1]:
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(x.flatten(1))

    @property
    def widths(self) -> list[int]:
        return conv_widths(self.cfg)

    @property
    def dense_params(self) -> int:
        """Parameters of the dense part (every ``nn.Linear``: the head's hidden layers and the classifier)."""
        return sum(p.numel() for m in self.modules() if isinstance(m, nn.Linear) for p in m.parameters())
