"""Channel-pruning baselines at the filter coreset's budget (same kept count per group, same pruning loop).

* :class:`UniformChannels` -- ``k`` channels uniformly at random **without replacement**, no reweighting
  by default (``reweight=True`` multiplies the kept channels' consumer slices by the exact
  Horvitz–Thompson weight ``n/k``, which makes the consumer's pre-activation unbiased, as the coreset is).
* :class:`L1Filter` -- Li, Kadav, Durdanovic, Samet, Graf, *Pruning Filters for Efficient ConvNets*
  (ICLR 2017), §3.1: keep the ``k`` filters of largest ``Σ|W|`` (the producer's raw kernel weights, BN not
  folded, as in the paper), no reweighting; ties by the lower index.

Both are data independent and deterministic given the generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coresetlab.methods.shared.sampling import WeightedSample
from coresetlab.methods.structured.pruners import GroupView, check_keep, prune_model


def uniform_channels(width: int, k: int, reweight: bool = False,
                     generator: torch.Generator | None = None) -> WeightedSample:
    """``k`` of ``width`` channels uniformly without replacement (sorted); scale ``n/k`` if ``reweight`` else 1."""
    idx = torch.randperm(int(width), generator=generator)[: int(k)].sort().values
    scale = torch.full((len(idx),), width / k if reweight else 1.0, dtype=torch.float64)
    return WeightedSample(indices=idx, scale=scale, m=0, probs=None)


def l1_top_k(weight: torch.Tensor, k: int) -> WeightedSample:
    """The ``k`` output channels of largest ``‖W[p]‖₁`` (Li et al. 2017), sorted, scale 1."""
    norms = weight.detach().abs().reshape(weight.shape[0], -1).sum(1).to(torch.float64).cpu()
    order = torch.argsort(-norms, stable=True)  # ties: lower index first
    idx = order[: int(k)].sort().values
    return WeightedSample(indices=idx, scale=torch.ones(len(idx), dtype=torch.float64), m=0, probs=None)


@dataclass
class UniformChannels:
    """Uniform channel sampling (``conf/coreset_method/channel_uniform.yaml``)."""

    keep: float = 0.5
    reweight: bool = False
    name: str = "channel_uniform"

    needs_beta = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> UniformChannels:
        """Raise :class:`~coresetlab.errors.ConfigError` on a bad ``keep``; return ``self``."""
        self.keep = check_keep(self.keep)
        return self

    def select(self, group: GroupView, k: int, generator: torch.Generator | None = None) -> WeightedSample:
        return uniform_channels(group.conv.out_channels, k, bool(self.reweight), generator)

    def prune(self, model: nn.Module, example_inputs: torch.Tensor | None = None,
              generator: torch.Generator | None = None, ignored_layers: Sequence[str] | None = None,
              ) -> tuple[nn.Module, dict[str, Any]]:
        """A pruned copy of ``model`` and the info (:func:`~coresetlab.methods.structured.pruners.prune_model`)."""
        return prune_model(model, self, example_inputs, generator, ignored_layers)


@dataclass
class L1Filter:
    """L1-norm filter pruning of Li et al. 2017 (``conf/coreset_method/l1_filter.yaml``)."""

    keep: float = 0.5
    name: str = "l1_filter"

    needs_beta = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> L1Filter:
        """Raise :class:`~coresetlab.errors.ConfigError` on a bad ``keep``; return ``self``."""
        self.keep = check_keep(self.keep)
        return self

    def select(self, group: GroupView, k: int, generator: torch.Generator | None = None) -> WeightedSample:
        return l1_top_k(group.conv.weight, k)

    def prune(self, model: nn.Module, example_inputs: torch.Tensor | None = None,
              generator: torch.Generator | None = None, ignored_layers: Sequence[str] | None = None,
              ) -> tuple[nn.Module, dict[str, Any]]:
        """A pruned copy of ``model`` and the info (:func:`~coresetlab.methods.structured.pruners.prune_model`)."""
        return prune_model(model, self, example_inputs, generator, ignored_layers)
