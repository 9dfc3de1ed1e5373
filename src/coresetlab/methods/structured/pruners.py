"""The one pruning loop every channel-selection rule shares (filter coreset, uniform, L1-norm).

:func:`prune_model` deep-copies the model, finds its prunable channel groups, and walks them **bottom to
top** (the forward order of the producers): for each group it asks the rule for ``k = max(1, round(keep ·
width))`` channels and their consumer scales (:class:`~coresetlab.methods.shared.sampling.WeightedSample`),
measured on the network whose lower groups are already pruned, and removes the other channels for real.

Two backends (``backend="auto"`` picks one):

* ``chain`` -- plain chain networks (:class:`~coresetlab.models.vgg.VGG`, an ``nn.Sequential`` of leaf
  modules): :func:`~coresetlab.methods.shared.channel_surgery.chain_groups` and ``prune_group`` with the
  consumer ``scale`` (exact, fast);
* ``torch_pruning`` -- anything else (residual networks): Torch-Pruning's dependency graph
  (:mod:`.torch_pruning_glue`), which prunes only *uncoupled* groups (see there for why).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.measure import count_flops
from coresetlab.methods.shared.channel_surgery import (
    ChannelGroup,
    chain_groups,
    conv_out_channels,
    prune_group,
)
from coresetlab.methods.shared.sampling import WeightedSample
from coresetlab.models import count_params
from coresetlab.models.vgg import VGG, cfg_with_widths

BACKENDS = ("auto", "chain", "torch_pruning")


@dataclass
class GroupView:
    """What a selection rule sees of one channel group: producer, its BN, consumers, and the ball radius β."""

    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None
    consumers: list[nn.Module]
    beta: float | None = None


class ChannelSelector(Protocol):
    """A channel-selection rule: ``select(group, k, generator)`` -> kept channels (sorted) and their scales."""

    name: str
    keep: float
    needs_beta: bool

    def select(self, group: GroupView, k: int, generator: torch.Generator | None = None) -> WeightedSample: ...


def check_keep(keep: Any) -> float:
    """``keep`` as a float in (0, 1], else :class:`ConfigError`."""
    try:
        k = float(keep)
    except (TypeError, ValueError):
        raise ConfigError(f"keep must be a number in (0, 1], got {keep!r}") from None
    if not 0.0 < k <= 1.0:
        raise ConfigError(f"keep (fraction of channels kept per group) must be in (0, 1], got {keep}")
    return k


def kept_count(keep: float, width: int) -> int:
    """The budget of every method: ``max(1, round(keep · width))`` channels of a group of ``width``."""
    return max(1, min(int(width), round(float(keep) * int(width))))


class _Stop(Exception):
    pass


@torch.no_grad()
def input_patch_beta(model: nn.Module, conv: nn.Conv2d, example_inputs: torch.Tensor) -> float:
    """The largest norm of an input patch (``C_in × kh × kw``, zero padding) of ``conv`` over ``example_inputs``.

    One forward of ``model`` (eval) stopped at ``conv``: ``‖patch‖² = conv2d(Σ_c x_c², ones(kh, kw))``.
    """
    found: dict[str, float] = {}

    def hook(mod: nn.Conv2d, inp: tuple[torch.Tensor, ...]) -> None:
        x = inp[0].detach()
        sq = x.pow(2).sum(1, keepdim=True)
        ones = torch.ones(1, 1, *mod.kernel_size, dtype=x.dtype, device=x.device)
        found["beta"] = float(F.conv2d(sq, ones, stride=mod.stride, padding=mod.padding,
                                       dilation=mod.dilation).amax().sqrt())
        raise _Stop

    handle = conv.register_forward_pre_hook(hook)
    try:
        model(example_inputs)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "beta" not in found:
        raise ValueError("the conv was not called in the forward pass of the example inputs")
    return max(found["beta"], 1e-12)


def _ignored_names(model: nn.Module, ignored_layers: Sequence[str | nn.Module] | None) -> set[str]:
    names = {id(m): n for n, m in model.named_modules()}
    out: set[str] = set()
    for item in ignored_layers or ():
        if isinstance(item, nn.Module):
            if id(item) not in names:
                raise ConfigError(f"ignored layer {type(item).__name__} is not a module of the model")
            out.add(names[id(item)])
        else:
            try:
                model.get_submodule(str(item))
            except AttributeError:
                raise ConfigError(f"ignored layer '{item}' is not a module of the model") from None
            out.add(str(item))
    return out


def is_chain(model: nn.Module) -> bool:
    """True for the networks :func:`chain_groups` describes exactly: VGG and Sequentials of leaf modules."""
    if isinstance(model, VGG):
        return True
    return isinstance(model, nn.Sequential) and all(len(list(c.children())) == 0 for c in model.children())


def select_for_group(
    model: nn.Module, selector: ChannelSelector, conv: nn.Conv2d, bn: nn.BatchNorm2d | None,
    consumers: list[nn.Module], example_inputs: torch.Tensor | None, generator: torch.Generator | None,
) -> tuple[WeightedSample, dict[str, Any]]:
    """Run ``selector`` on one group of ``model`` (β measured on the current, partly pruned, model)."""
    beta = None
    if getattr(selector, "needs_beta", False) and getattr(selector, "beta", None) is None:
        if example_inputs is None:
            raise ConfigError(f"{selector.name} with beta=null takes β from example_inputs: pass example_inputs "
                              "or set coreset_method.beta")
        beta = input_patch_beta(model, conv, example_inputs)
    width = conv.out_channels
    k = kept_count(selector.keep, width)
    sample = selector.select(GroupView(conv, bn, consumers, beta), k, generator)
    if sample.size != k:
        raise RuntimeError(f"{selector.name} kept {sample.size} channels, the budget is {k}")
    rec = {"width_before": width, "width_after": k, "m": int(sample.m),
           "beta": getattr(selector, "beta", None) or beta}
    return sample, rec


def _unit(scale: torch.Tensor) -> torch.Tensor | None:
    return None if bool((scale == 1).all()) else scale


def _prune_chain(model: nn.Module, selector: ChannelSelector, example_inputs: torch.Tensor | None,
                 generator: torch.Generator | None, ignored: set[str]) -> tuple[list[dict], list[dict]]:
    records, skipped = [], []
    for g in chain_groups(model):
        if g.conv in ignored:
            skipped.append({"layer": g.conv, "reason": "ignored_layers"})
            continue
        conv = model.get_submodule(g.conv)
        bn = model.get_submodule(g.bn) if g.bn is not None else None
        cons = [model.get_submodule(c) for c in g.consumers]
        sample, rec = select_for_group(model, selector, conv, bn, cons, example_inputs, generator)
        prune_group(model, ChannelGroup(g.conv, g.bn, list(g.consumers)), sample.indices, _unit(sample.scale))
        records.append({"layer": g.conv, **rec})
    if isinstance(model, VGG):
        model.cfg = cfg_with_widths(model.cfg, conv_out_channels(model))
    return records, skipped


def prune_model(
    model: nn.Module,
    selector: ChannelSelector,
    example_inputs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    ignored_layers: Sequence[str | nn.Module] | None = None,
    backend: str = "auto",
) -> tuple[nn.Module, dict[str, Any]]:
    """A genuinely smaller **copy** of ``model`` pruned by ``selector`` (``model`` is left untouched).

    The copy is in eval mode while pruning (BN running statistics are read, never updated) and gets the
    input's train/eval mode back. ``info``: ``method``, ``keep``, ``backend``, ``groups`` (``layer``,
    ``width_before``, ``width_after``, ``m``, ``beta``), ``skipped`` (``layer``, ``reason``),
    ``params_before/after`` and, with ``example_inputs``, ``flops_before/after`` (one input).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got '{backend}'")
    check_keep(selector.keep)
    if backend == "auto":
        backend = "chain" if is_chain(model) else "torch_pruning"
    if backend == "torch_pruning" and example_inputs is None:
        raise ConfigError("pruning a non-chain network traces it with Torch-Pruning: pass example_inputs")
    pruned = copy.deepcopy(model).eval()
    ignored = _ignored_names(pruned, ignored_layers)
    params_before = count_params(model)
    if backend == "chain":
        records, skipped = _prune_chain(pruned, selector, example_inputs, generator, ignored)
    else:
        from coresetlab.methods.structured.torch_pruning_glue import (
            prune_dependency_graph,  # torch_pruning: lazily
        )

        def select(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, consumers: list[nn.Module]):
            return select_for_group(pruned, selector, conv, bn, consumers, example_inputs, generator)

        records, skipped = prune_dependency_graph(pruned, select, example_inputs, ignored)
    pruned.train(model.training)
    info: dict[str, Any] = {
        "method": selector.name, "keep": float(selector.keep), "backend": backend, "groups": records,
        "skipped": skipped, "params_before": params_before, "params_after": count_params(pruned),
    }
    if example_inputs is not None:
        shape = tuple(example_inputs.shape[1:])
        info["flops_before"], info["flops_after"] = count_flops(model, shape), count_flops(pruned, shape)
    return pruned, info
