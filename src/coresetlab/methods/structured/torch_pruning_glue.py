"""Residual (non-chain) networks: channel groups and real pruning through Torch-Pruning's dependency graph.

Torch-Pruning (Fang et al., *DepGraph*, CVPR 2023; ``torch_pruning`` on PyPI) traces the model once on
``example_inputs`` and, for the output channels of a conv, returns every coupled pruning operation (its BN,
the next layers' input channels, and -- through residual additions -- the other producers of the same
feature maps). We use it to *find* the groups and to *slice* them; which channels survive is decided by
our selection rules, and the consumer-side reweighting is applied afterwards (Torch-Pruning only slices).

**Only uncoupled groups are pruned** -- a producer conv, at most one BN fed directly by it, parameter-free
elementwise/reshape ops (the activation, pooling, flatten), and ``Conv2d``/``Linear`` consumers. Coupled
groups (the channels of a residual stream) are skipped and reported, for two reasons:

1. the unbiased coreset reweighting must be placed at *every* consumer of a kept channel, and a residual
   stream's consumers include the identity shortcut and the addition, which have no weights to scale;
2. Torch-Pruning does not trace the option-A shortcut of :class:`~coresetlab.models.resnet_cifar.CifarResNet`
   (``F.pad`` on the channel dimension) as a channel map: it treats it as an elementwise op and couples
   the 16-, 32- and 64-channel stages into one inconsistent group (checked: 58 items for the stem of
   ResNet-20), so pruning those groups would be wrong.

What remains are the blocks' *internal* channels (``conv1 → bn1 → relu → conv2`` of every basic block,
also ``conv2`` of a bottleneck): exactly where Li et al. (2017) prune ResNet-56, and what
``CifarResNet.mid_widths`` describes. For torchvision's ResNets the same rule applies (the stem and the
stage channels are coupled through the identity shortcuts). Groups are processed in the model's module
registration order (bottom to top for these networks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from coresetlab.methods.shared.sampling import WeightedSample

#: ``select(conv, bn, consumers) -> (sample, record)``: the selection rule bound to the model (``pruners``).
SelectFn = Callable[[nn.Conv2d, "nn.BatchNorm2d | None", list[nn.Module]], tuple[WeightedSample, dict[str, Any]]]

_FREE_OPS = (tp.ops._ElementWiseOp, tp.ops._ReshapeOp)  # the activation, pooling, flatten


def _describe(dg: tp.DependencyGraph, conv: nn.Conv2d) -> tuple[nn.BatchNorm2d | None, list[nn.Module], str | None]:
    """(BN, consumers, None) for an uncoupled group of ``conv``'s output channels, or (…, reason) if coupled."""
    group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
    bn, consumers = None, []
    for dep, _ in group:
        mod, fn = dep.target.module, dep.handler
        if mod is conv:
            continue
        if dg.is_out_channel_pruning_fn(fn):
            if isinstance(mod, _FREE_OPS):
                continue
            if isinstance(mod, nn.BatchNorm2d) and bn is None:
                if not any(n.module is conv for n in dg.module2node[mod].inputs):
                    return None, [], "its BatchNorm does not directly follow the conv (BN folding needs conv→BN)"
                bn = mod
                continue
            return None, [], f"coupled with another layer's output channels (a {type(mod).__name__}): residual/concat"
        if dg.is_in_channel_pruning_fn(fn) and (isinstance(mod, nn.Linear) or
                                                (isinstance(mod, nn.Conv2d) and mod.groups == 1)):
            consumers.append(mod)
            continue
        return None, [], f"a {type(mod).__name__} reads the channels (only Conv2d/Linear consumers are rescaled)"
    if not consumers:
        return None, [], "no Conv2d/Linear consumer"
    return bn, consumers, None


@torch.no_grad()
def _scale_consumer(consumer: nn.Module, scale: torch.Tensor) -> None:
    """Multiply the (already sliced) input channels of ``consumer`` by ``scale`` (NCHW flatten for Linear)."""
    w = consumer.weight
    s = scale.to(w.dtype).to(w.device)
    if isinstance(consumer, nn.Conv2d):
        w.mul_(s.view(1, -1, 1, 1))
    else:
        w.mul_(s.repeat_interleave(w.shape[1] // len(s))[None, :])


def prune_dependency_graph(
    model: nn.Module, select: SelectFn, example_inputs: torch.Tensor, ignored: set[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Prune ``model`` **in place**, group by group, keeping what ``select`` picks; return (records, skipped)."""
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    records, skipped = [], []
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    for name, conv in convs:
        if name in ignored:
            skipped.append({"layer": name, "reason": "ignored_layers"})
            continue
        if conv.groups != 1:
            skipped.append({"layer": name, "reason": "grouped/depthwise conv"})
            continue
        bn, consumers, why = _describe(dg, conv)
        if why is not None:
            skipped.append({"layer": name, "reason": why})
            continue
        width = conv.out_channels
        sample, rec = select(conv, bn, consumers)
        kept = set(sample.indices.tolist())
        remove = [i for i in range(width) if i not in kept]
        if remove:
            group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=remove)
            group.prune()
        if not bool((sample.scale == 1).all()):
            for c in consumers:
                _scale_consumer(c, sample.scale)
        records.append({"layer": name, **rec})
    return records, skipped
