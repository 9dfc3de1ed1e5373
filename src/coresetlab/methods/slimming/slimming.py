"""Network slimming (Liu, Li, Shen, Huang, Yan, Zhang: *Learning Efficient Convolutional Networks through
Network Slimming*, ICCV 2017) — the "Structured Pruning [37]" row of AutoCL Table 3.

1. **Sparsity training** (§3.1, Eq. 1): ``L = Σ l(f(x), y) + λ Σ_γ |γ|`` over the BN scaling factors γ.
   The subgradient of the penalty, ``λ · sign(γ)``, is added to γ's gradient after back-propagation
   (:func:`add_bn_l1_subgradient`; the authors' ``updateBN``), λ = ``s`` = 1e-4 for VGG on CIFAR.
2. **Channel pruning** (§3.2): one *global* threshold over all |γ| of the network, the value at
   position ``⌊percent · total⌋`` of the sorted |γ| (the authors' ``prune.py``); channels with
   ``|γ| > threshold`` are kept (:func:`slimming_masks`), and the network is rebuilt smaller by channel
   surgery (:func:`slim_chain`).
3. **Fine-tuning** of the pruned network (done by the task).

Guard: a global threshold can remove every channel of a layer (Liu et al. §3.2 mention it for high
pruning ratios; the authors' code then builds a zero-width layer and fails). We keep, in any layer left
with fewer than ``min_channels`` channels (default 1), its ``min_channels`` channels of largest |γ|; the
layers so guarded are reported. The guard can only add channels, so the pruned fraction may fall slightly
below ``percent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.shared.channel_surgery import (
    ChannelGroup,
    chain_groups,
    conv_out_channels,
    prune_chain,
    prune_group,
)


def bn_modules(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The ``BatchNorm2d`` modules of ``model`` in registration order."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def bn_gammas(model: nn.Module) -> list[torch.Tensor]:
    """|γ| of every conv layer's BN, in layer order (detached copies)."""
    groups = chain_groups(model)
    if any(g.bn is None for g in groups):
        raise ValueError("network slimming needs a BatchNorm2d after every conv")
    return [model.get_submodule(g.bn).weight.detach().abs().clone() for g in groups]  # type: ignore[union-attr]


@torch.no_grad()
def add_bn_l1_subgradient(model: nn.Module, s: float) -> None:
    """Add ``s · sign(γ)`` to the gradient of every BN scaling factor (the L1 term of Eq. 1), in place."""
    if s <= 0:
        return
    for bn in bn_modules(model):
        if bn.weight is not None and bn.weight.grad is not None:
            bn.weight.grad.add_(torch.sign(bn.weight) * s)


def global_threshold(gammas: list[torch.Tensor], percent: float) -> float:
    """The |γ| at position ``⌊percent · total⌋`` of all sorted |γ| (``percent`` of the channels fall at or below)."""
    if not 0.0 <= percent < 1.0:
        raise ConfigError(f"slimming percent must be in [0, 1), got {percent}")
    allg = torch.cat([g.flatten().float() for g in gammas]).sort().values
    return float(allg[int(len(allg) * percent)])


def slimming_masks(
    gammas: list[torch.Tensor], percent: float, min_channels: int = 1
) -> tuple[list[torch.Tensor], float, list[int]]:
    """Boolean keep-masks per layer (``|γ| > threshold``), the threshold, and the guarded layers.

    A layer keeping fewer than ``min_channels`` channels keeps its ``min_channels`` largest |γ| instead.
    """
    if min_channels < 1:
        raise ConfigError(f"min_channels must be >= 1 (a layer without channels disconnects the network), got {min_channels}")
    thr = global_threshold(gammas, percent)
    masks, guarded = [], []
    for i, g in enumerate(gammas):
        m = g > thr
        if int(m.sum()) < min_channels:
            top = torch.topk(g, min(min_channels, len(g))).indices
            m = torch.zeros_like(m)
            m[top] = True
            guarded.append(i)
        masks.append(m)
    return masks, thr, guarded


def slim_chain(model: nn.Module, percent: float, min_channels: int = 1) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a chain network (VGG) by network slimming; return the smaller copy and what was done.

    ``info``: ``threshold``, ``widths_before``, ``widths_after``, ``guarded_layers``, ``channels_removed``
    (fraction of conv channels removed).
    """
    masks, thr, guarded = slimming_masks(bn_gammas(model), percent, min_channels)
    keep = [torch.nonzero(m).flatten() for m in masks]
    pruned = prune_chain(model, keep)
    before, after = conv_out_channels(model), conv_out_channels(pruned)
    info = {
        "threshold": thr, "widths_before": before, "widths_after": after, "guarded_layers": guarded,
        "channels_removed": 1.0 - sum(after) / sum(before),
    }
    return pruned, info


@dataclass
class NetworkSlimming:
    """The method as configured (``conf/coreset_method/network_slimming.yaml``).

    ``percent``: fraction of all conv channels pruned by the global threshold (0.7 = AutoCL Table 1/3);
    ``s``: λ of the L1 sparsity term during sparsity training; ``min_channels``: the per-layer guard.
    """

    percent: float = 0.7
    s: float = 1e-4
    min_channels: int = 1
    name: str = "network_slimming"

    def validate(self) -> NetworkSlimming:
        """Raise :class:`ConfigError` on an impossible setting (call before any training)."""
        if not 0.0 <= float(self.percent) < 1.0:
            raise ConfigError(f"coreset_method.percent must be in [0, 1), got {self.percent}")
        if int(self.min_channels) < 1:
            raise ConfigError(f"coreset_method.min_channels must be >= 1, got {self.min_channels}")
        if float(self.s) < 0:
            raise ConfigError(f"coreset_method.s (the L1 weight) must be >= 0, got {self.s}")
        return self

    def prune(self, model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
        """The slimmed copy of a sparsity-trained ``model`` and the pruning info (:func:`slim_chain`)."""
        return slim_chain(model, self.percent, self.min_channels)


def block_internal_groups(model: nn.Module) -> list[ChannelGroup]:
    """The block-internal channel groups of a residual network of basic blocks (``conv1 → bn1 → conv2``).

    Every module with ``conv1``, ``bn1`` and ``conv2`` children (a :class:`~coresetlab.models.resnet_cifar.BasicBlock`)
    gives one group: ``conv1``'s output channels, read only by ``conv2`` (not by the residual addition),
    the channels Liu et al. (§4, ResNet) and Li et al. (2017) prune in ResNets.
    """
    out = []
    for name, m in model.named_modules():
        if all(isinstance(getattr(m, k, None), t) for k, t in (("conv1", nn.Conv2d), ("bn1", nn.BatchNorm2d),
                                                                 ("conv2", nn.Conv2d))):
            out.append(ChannelGroup(conv=f"{name}.conv1", bn=f"{name}.bn1", consumers=[f"{name}.conv2"]))
    return out


def slim_groups(
    model: nn.Module, groups: list[ChannelGroup], percent: float, min_channels: int = 1
) -> tuple[nn.Module, dict[str, Any]]:
    """Network slimming restricted to ``groups``: one global |γ| threshold over their BNs (§3.2), a pruned copy."""
    import copy

    pruned = copy.deepcopy(model)
    gammas = [pruned.get_submodule(g.bn).weight.detach().abs() for g in groups]
    masks, thr, guarded = slimming_masks(gammas, percent, min_channels)
    before = [len(g) for g in gammas]
    for g, m in zip(groups, masks):
        prune_group(pruned, g, torch.nonzero(m).flatten())
    after = [int(m.sum()) for m in masks]
    info = {"threshold": thr, "widths_before": before, "widths_after": after, "guarded_layers": guarded,
            "channels_removed": 1.0 - sum(after) / sum(before)}
    return pruned, info


@dataclass
class SlimmingNoSparsity:
    """Network slimming's pruning step on a normally trained network, at a channel budget ``keep``.

    ``cifar_pruning_compare`` gives every method the same fine-tuning budget and no other training; this
    is slimming **without its sparsity phase** (labelled so in the report): one global |γ| threshold over the
    prunable channels removing ``1 − keep`` of them, then fine-tuning. Prunable channels: every conv of a
    chain network (VGG, :func:`slim_chain`); the block-internal channels of a residual network
    (:func:`block_internal_groups`; the same channels the per-group methods prune). The same total channel
    count as a per-group ``keep``, distributed by |γ| across layers.
    """

    keep: float = 0.5
    min_channels: int = 1
    name: str = "slimming_no_sparsity"

    def validate(self) -> SlimmingNoSparsity:
        if not 0.0 < float(self.keep) <= 1.0:
            raise ConfigError(f"coreset_method.keep must be in (0, 1], got {self.keep}")
        if int(self.min_channels) < 1:
            raise ConfigError(f"coreset_method.min_channels must be >= 1, got {self.min_channels}")
        return self

    def prune(self, model: nn.Module, example_inputs=None, generator=None) -> tuple[nn.Module, dict[str, Any]]:
        """The slimmed copy of ``model`` (``example_inputs`` and ``generator`` unused: the rule is deterministic)."""
        groups = block_internal_groups(model)
        if groups:
            return slim_groups(model, groups, 1.0 - float(self.keep), int(self.min_channels))
        return slim_chain(model, 1.0 - float(self.keep), int(self.min_channels))
