"""Channel surgery for Conv/BN/Linear chains: genuinely smaller networks that keep a subset of channels.

A *channel group* is one prunable set of feature maps: the output channels of a producer ``Conv2d``,
the ``BatchNorm2d`` that normalises them (optional) and every consumer reading them as input channels
(a ``Conv2d``, or an ``nn.Linear`` after flattening, where channel ``c`` owns the ``spatial`` inputs
``c·spatial … c·spatial + spatial − 1`` of the NCHW flatten order). Keeping the channels ``K`` of a group:

* producer: rows ``K`` of the weight (and bias);
* BN: entries ``K`` of γ, β, running mean and running variance;
* consumers: input slices ``K`` of their weights, optionally multiplied by ``scale[k]`` (a coreset's
  reweighting of the kept channels, e.g. Mussay et al.'s structured coresets); biases unchanged.

Keeping every channel (in any order, scale 1) gives a network with exactly the same function (test), and
pruning a channel whose post-activation output is identically zero (BN γ = β = 0 before a ReLU) does too.
Network slimming (Liu et al. 2017) and the filter-coreset methods use the same functions; residual
networks, where several producers must share one channel set, add coupling on top of :class:`ChannelGroup`
(left for the ResNet issue). :func:`fold_bn` folds an inference-mode BN into its convolution (exact).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from coresetlab.models.vgg import cfg_with_widths


@dataclass
class ChannelGroup:
    """One prunable channel set: producer conv, its BN (or None) and its consumers, as module paths."""

    conv: str
    bn: str | None
    consumers: list[str] = field(default_factory=list)


def _index(keep: torch.Tensor | Sequence[int], device: torch.device) -> torch.Tensor:
    idx = torch.as_tensor(keep, dtype=torch.long, device=device).flatten()
    if idx.numel() == 0:
        raise ValueError("a channel group must keep at least one channel")
    if len(torch.unique(idx)) != len(idx):
        raise ValueError("kept channel indices must be distinct")
    return idx


def slice_conv_out(conv: nn.Conv2d, keep: torch.Tensor | Sequence[int]) -> nn.Conv2d:
    """A new ``Conv2d`` with the output channels ``keep`` of ``conv`` (weight rows and bias)."""
    if conv.groups != 1:
        raise NotImplementedError("grouped/depthwise convolutions need coupled in/out pruning")
    idx = _index(keep, conv.weight.device)
    out = nn.Conv2d(conv.in_channels, len(idx), conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(conv.weight[idx])
        if conv.bias is not None:
            out.bias.copy_(conv.bias[idx])
    return out


def slice_bn(bn: nn.BatchNorm2d, keep: torch.Tensor | Sequence[int]) -> nn.BatchNorm2d:
    """A new ``BatchNorm2d`` with the entries ``keep`` of γ, β and the running statistics."""
    idx = _index(keep, bn.weight.device if bn.weight is not None else torch.device("cpu"))
    out = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    out = out.to(device=idx.device)
    with torch.no_grad():
        if bn.affine:
            out.weight.copy_(bn.weight[idx])
            out.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            out.running_mean.copy_(bn.running_mean[idx])
            out.running_var.copy_(bn.running_var[idx])
            out.num_batches_tracked.copy_(bn.num_batches_tracked)
    out.train(bn.training)
    return out


def _scale_vector(scale: torch.Tensor | Sequence[float] | None, n: int, like: torch.Tensor) -> torch.Tensor | None:
    if scale is None:
        return None
    s = torch.as_tensor(scale, dtype=like.dtype, device=like.device).flatten()
    if len(s) != n:
        raise ValueError(f"{len(s)} scales for {n} kept channels")
    return s


def slice_conv_in(
    conv: nn.Conv2d, keep: torch.Tensor | Sequence[int], scale: torch.Tensor | Sequence[float] | None = None
) -> nn.Conv2d:
    """A new ``Conv2d`` reading only the input channels ``keep`` (weights optionally scaled per channel)."""
    if conv.groups != 1:
        raise NotImplementedError("grouped/depthwise convolutions need coupled in/out pruning")
    idx = _index(keep, conv.weight.device)
    out = nn.Conv2d(len(idx), conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        w = conv.weight[:, idx]
        s = _scale_vector(scale, len(idx), w)
        out.weight.copy_(w if s is None else w * s.view(1, -1, 1, 1))
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def slice_linear_in(
    linear: nn.Linear,
    keep: torch.Tensor | Sequence[int],
    channels: int,
    scale: torch.Tensor | Sequence[float] | None = None,
) -> nn.Linear:
    """A new ``Linear`` reading the flattened inputs of the kept channels only.

    ``channels``: the producer's channel count before pruning; ``linear.in_features`` must be a multiple
    (``spatial`` = in_features / channels inputs per channel, NCHW flatten order).
    """
    if linear.in_features % channels:
        raise ValueError(f"Linear with {linear.in_features} inputs cannot follow {channels} channels")
    spatial = linear.in_features // channels
    idx = _index(keep, linear.weight.device)
    cols = (idx[:, None] * spatial + torch.arange(spatial, device=idx.device)[None, :]).flatten()
    out = nn.Linear(len(cols), linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        w = linear.weight[:, cols]
        s = _scale_vector(scale, len(idx), w)
        out.weight.copy_(w if s is None else w * s.repeat_interleave(spatial)[None, :])
        if linear.bias is not None:
            out.bias.copy_(linear.bias)
    return out


def prune_group(
    model: nn.Module,
    group: ChannelGroup,
    keep: torch.Tensor | Sequence[int],
    scale: torch.Tensor | Sequence[float] | None = None,
) -> None:
    """Keep the channels ``keep`` of ``group`` **in place** (modules of ``model`` are replaced)."""
    conv = model.get_submodule(group.conv)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{group.conv} is a {type(conv).__name__}, not a Conv2d")
    channels = conv.out_channels
    idx = _index(keep, conv.weight.device)
    if int(idx.max()) >= channels or int(idx.min()) < 0:
        raise ValueError(f"channel index out of range for {group.conv} with {channels} channels")
    model.set_submodule(group.conv, slice_conv_out(conv, idx))
    if group.bn is not None:
        model.set_submodule(group.bn, slice_bn(model.get_submodule(group.bn), idx))
    for name in group.consumers:
        cons = model.get_submodule(name)
        if isinstance(cons, nn.Conv2d):
            if cons.in_channels != channels:
                raise ValueError(f"{name} reads {cons.in_channels} channels, {group.conv} makes {channels}")
            model.set_submodule(name, slice_conv_in(cons, idx, scale))
        elif isinstance(cons, nn.Linear):
            model.set_submodule(name, slice_linear_in(cons, idx, channels, scale))
        else:
            raise TypeError(f"consumer {name} is a {type(cons).__name__}; expected Conv2d or Linear")


def chain_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups of a plain chain network (VGG-like): modules in registration order.

    Every ``Conv2d`` is a producer; a ``BatchNorm2d`` right after it (in registration order) is its BN;
    its consumer is the next ``Conv2d`` or ``Linear``. The last conv's consumer must exist (a classifier).
    Residual or branching networks need their own grouping.
    """
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    groups: list[ChannelGroup] = []
    for i, (name, m) in enumerate(mods):
        if not isinstance(m, nn.Conv2d):
            continue
        bn = mods[i + 1][0] if i + 1 < len(mods) and isinstance(mods[i + 1][1], nn.BatchNorm2d) else None
        nxt = next((n for n, c in mods[i + 1:] if isinstance(c, (nn.Conv2d, nn.Linear))), None)
        if nxt is None:
            raise ValueError(f"conv {name} has no consumer (Conv2d/Linear) after it")
        groups.append(ChannelGroup(conv=name, bn=bn, consumers=[nxt]))
    return groups


def prune_chain(
    model: nn.Module,
    keep: Mapping[int, torch.Tensor | Sequence[int]] | Sequence[torch.Tensor | Sequence[int] | None],
    scales: Mapping[int, torch.Tensor | Sequence[float]] | None = None,
) -> nn.Module:
    """A pruned **copy** of a chain network: ``keep[i]`` = kept channels of conv ``i`` (None = all).

    Layers are processed from the last to the first so that each consumer is sliced after its own
    producer slicing (both orders give the same result; this one keeps shapes consistent at every step).
    ``scales[i]`` multiplies the consumer's input slice of conv ``i``. A model with a ``cfg`` list
    (:class:`coresetlab.models.vgg.VGG`) gets its widths updated.
    """
    pruned = copy.deepcopy(model)
    groups = chain_groups(pruned)
    items = keep.items() if isinstance(keep, Mapping) else enumerate(keep)
    plan = {int(i): k for i, k in items if k is not None}
    if any(not 0 <= i < len(groups) for i in plan):
        raise ValueError(f"layer index out of range: {sorted(plan)} for {len(groups)} conv layers")
    for i in sorted(plan, reverse=True):
        prune_group(pruned, groups[i], plan[i], (scales or {}).get(i))
    if hasattr(pruned, "cfg"):
        pruned.cfg = cfg_with_widths(pruned.cfg, conv_out_channels(pruned))
    return pruned


def conv_out_channels(model: nn.Module) -> list[int]:
    """Output channels of every ``Conv2d`` of ``model`` in registration order (the layer widths)."""
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """The ``Conv2d`` computing ``bn(conv(x))`` with BN in inference mode (running statistics): exact.

    ``w' = w · γ/√(σ² + ε)`` per output channel, ``b' = β + (b − μ) · γ/√(σ² + ε)``.
    """
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BN over {bn.num_features} channels cannot follow a conv with {conv.out_channels}")
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    factor = gamma / std
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=True, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    out.weight.copy_(conv.weight * factor.view(-1, 1, 1, 1))
    b = conv.bias if conv.bias is not None else torch.zeros_like(std)
    out.bias.copy_(beta + (b - bn.running_mean) * factor)
    return out


def fold_all_bn(model: nn.Module) -> nn.Module:
    """An inference copy of a chain network with every Conv→BN pair folded (BN replaced by ``Identity``)."""
    folded = copy.deepcopy(model).eval()
    for g in chain_groups(folded):
        if g.bn is not None:
            folded.set_submodule(g.conv, fold_bn(folded.get_submodule(g.conv), folded.get_submodule(g.bn)))
            folded.set_submodule(g.bn, nn.Identity())
    return folded
