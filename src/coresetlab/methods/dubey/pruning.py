"""Activation-based pruning, AP (Dubey et al. 2018, §3.2).

Layers are visited in order of descending parameter count. For each, the training set is run, every
filter's response is max-pooled over space, filters are ranked by the mean of those maxima, and the
smallest number ``N*_k`` of top-ranked filters is found by binary search such that the accuracy of the
network — with all layers visited so far pruned — stays within ``tol`` of the unpruned network. Pruning
is structural: the filter and the matching input channels of the next layer are removed
(:func:`.layers.prune_outputs`), so the result is a genuinely smaller network.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from coresetlab.methods.dubey.evaluation import SuffixEvaluator, accuracy, layer_output_stat, swapped
from coresetlab.methods.dubey.layers import (
    channel_pairs,
    get_module,
    keep_batchnorm,
    keep_inputs,
    keep_outputs,
    n_outputs,
    n_params,
    prune_outputs,
)
from coresetlab.methods.dubey.search import smallest_passing

log = logging.getLogger("coresetlab")


@dataclass
class APResult:
    """What AP kept: filters per layer (original indices), accuracies and the search traces."""

    kept: dict[str, list[int]] = field(default_factory=dict)
    n_before: dict[str, int] = field(default_factory=dict)
    ref_acc: float = float("nan")
    acc: float = float("nan")
    traces: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "ref_acc": self.ref_acc, "acc": self.acc,
            "filters": {k: [len(v), self.n_before[k]] for k, v in self.kept.items()},
            "traces": self.traces,
        }


def layer_order(model: nn.Module, names: Iterable[str], order: str = "params") -> list[str]:
    """``params``: descending parameter count (ties in network order) — the paper's order for AP (§3.6 step 1);
    ``forward``: as given, i.e. from the shallowest layer — the paper's order for the coreset rank search (§3.6)."""
    names = list(names)
    if order == "forward":
        return names
    if order != "params":
        raise ValueError(f"order must be 'params' or 'forward', got {order!r}")
    return sorted(names, key=lambda n: -n_params(get_module(model, n)))


def activation_ranking(model: nn.Module, name: str, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Filter indices of layer ``name`` sorted by mean spatial-max response over ``x``, highest first."""
    return torch.argsort(layer_output_stat(model, name, x, "max", batch_size), descending=True)


def activation_prune(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    tol: float = 0.005,
    order: str = "params",
    score_x: torch.Tensor | None = None,
    layers: Iterable[str] | None = None,
    batch_size: int = 2000,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> tuple[nn.Module, APResult]:
    """AP (§3.2) on a copy of ``model``; returns ``(pruned_model, result)``.

    ``(x, y)`` is the data the accuracy constraint is measured on (the training set in the paper) and
    ``score_x`` the data whose activations rank the filters (default ``x``). ``tol`` is the allowed
    absolute drop in accuracy (0.005 = 0.5 %). Only layers whose outputs feed one next conv/linear
    layer are pruned (:func:`.layers.channel_pairs`); the classifier keeps all its outputs.
    ``tol = 0`` prunes only what costs no accuracy on ``(x, y)``.
    """
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    model = copy.deepcopy(model).eval()
    pairs = channel_pairs(model)
    names = [n for n in pairs if layers is None or n in set(layers)]
    res = APResult(ref_acc=accuracy(model, x, y, batch_size))
    score_x = x if score_x is None else score_x
    todo = layer_order(model, names, order)
    for name in progress(todo) if progress else todo:
        producer, pair = get_module(model, name), pairs[name]
        n = n_outputs(producer)
        ranking = activation_ranking(model, name, score_x, batch_size)
        ev = SuffixEvaluator(model, x, y, name, batch_size)

        def passes(k: int, name=name, producer=producer, pair=pair, ranking=ranking, ev=ev) -> bool:
            keep = ranking[:k].sort().values
            consumer, bns, spatial = pair
            repl = {name: keep_outputs(producer, keep),
                    consumer: keep_inputs(get_module(model, consumer), keep, spatial)}
            repl.update({bn: keep_batchnorm(get_module(model, bn), keep) for bn in bns})
            with swapped(model, repl):
                return ev.accuracy(model) >= res.ref_acc - tol

        k, trace = smallest_passing(1, n, passes, hi_known_to_pass=True)
        assert k is not None
        keep = ranking[:k].sort().values
        prune_outputs(model, pair, name, keep)
        res.kept[name], res.n_before[name], res.traces[name] = keep.tolist(), n, trace
        log.info("AP %s: kept %d/%d filters (%d evaluations)", name, k, n, len(trace))
    res.acc = accuracy(model, x, y, batch_size)
    return model, res


def apply_ap(model: nn.Module, kept: dict[str, list[int]]) -> nn.Module:
    """Re-apply a stored AP result (``APResult.kept``) to a copy of the same unpruned ``model``."""
    model = copy.deepcopy(model)
    pairs = channel_pairs(model)
    for name, keep in kept.items():
        prune_outputs(model, pairs[name], name, torch.as_tensor(keep, dtype=torch.long))
    return model


def n_keep(n: int, fraction: float) -> int:
    """Filters kept of ``n`` at a kept fraction: ``max(1, round(fraction · n))``."""
    return max(1, min(n, int(round(float(fraction) * n))))


def prune_filters(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with only the filters ``keep[name]`` of each listed layer (and the matching inputs
    of its consumer, :func:`.layers.prune_outputs`); no retraining. Dubey et al. Fig. 2 / Fig. 4 compare
    filter selections at equal fractions: AP's top filters by activation (:func:`activation_ranking`) vs
    filters of largest weight norm (Li et al. 2017)."""
    model = copy.deepcopy(model)
    pairs = channel_pairs(model)
    for name, idx in keep.items():
        if name not in pairs:
            raise ValueError(f"layer {name!r} has no prunable outputs (not in channel_pairs)")
        prune_outputs(model, pairs[name], name, torch.as_tensor(idx, dtype=torch.long))
    return model
