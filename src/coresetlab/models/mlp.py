"""Fully connected networks: LeNet-300-100 (784-300-100-10), its 30-100 variant, LeNet-200-105."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from coresetlab.models.utils import make_activation


class MLP(nn.Module):
    """``in_features -> hidden[0] -> ... -> num_classes`` with an activation after every hidden layer.

    The linear layers are ``self.layers`` (an ``nn.ModuleList``) so pruning code can replace them by
    smaller ones; inputs of any shape are flattened.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (300, 100),
        num_classes: int = 10,
        activation: str = "relu",
        name: str | None = None,
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = make_activation(activation)
        self.activation = activation
        self.name = name or "mlp-" + "-".join(map(str, hidden))

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x
