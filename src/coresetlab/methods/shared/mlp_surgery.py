"""Neuron-pruning surgery for MLPs: genuinely smaller ``nn.Linear`` pairs, layer by layer.

Pruning hidden layer ``i`` to a neuron set ``C`` (Mussay et al., ICLR 2020, Section 4 / Figure 1):

* layer ``i`` keeps the rows ``C`` of its weight **and of its own bias** (the bias is the last
  coordinate of the neuron ``p = [w | b]``; the authors' published ``coreset.py`` takes column 1 of
  the weight instead -- :func:`prune_pair` does not, see the regression test);
* layer ``i+1`` keeps the columns ``C`` of its weight, reweighted to ``u_j(q)`` (Algorithm 2), and its
  bias unchanged.

Where the reweighting goes (``reweight``): ``outgoing`` (Algorithm 2: ``u_j(q) = s_q w_j(q)`` in layer
``i+1``), ``incoming`` (layer ``i``'s row and bias of ``q`` scaled by ``s_q > 0``, layer ``i+1`` left
unscaled: the same function for positively homogeneous activations, ``φ(s t) = s φ(t)`` -- ReLU,
identity -- but a different starting point for fine-tuning), or ``none`` (the kept neurons with their
original weights: *not* the coreset's estimator; an ablation). With several pruned layers the later
selections see the already-scaled weights, so ``incoming`` and ``outgoing`` may keep different neurons
there; for one pruned layer they give the same network function.

:func:`compress_mlp` applies this to the hidden layers of an MLP (``model.layers`` is an
``nn.ModuleList`` of ``nn.Linear``) in a configurable order -- ``top_down`` (the ICLR paper: "from the
top to the bottom") or ``bottom_up`` (the 2020 journal extension) -- with an optional fine-tuning
callback after each layer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.shared.sampling import WeightedSample

NeuronSample = WeightedSample

ORDERS = ("top_down", "bottom_up")
#: ``selector(points, out_weights, size, activation, generator, beta_override) -> NeuronSample``
Selector = Callable[..., NeuronSample]
#: ``finetune(model, layer_index) -> epochs used (or None)``
FineTune = Callable[[nn.Module, int], "int | None"]


def neuron_points(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The neurons of a layer as points ``P = [W | b]`` of shape ``(n, d + 1)`` (bias last)."""
    b = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) if bias is None else bias
    return torch.cat([weight, b.reshape(-1, 1)], dim=1)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Linear) -> nn.Linear:
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=like.weight.device, dtype=like.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


REWEIGHTS = ("outgoing", "incoming", "none")
#: Activations with ``φ(s t) = s φ(t)`` for ``s > 0`` (``reweight="incoming"`` is exact only for these).
POSITIVELY_HOMOGENEOUS = ("relu", "identity")


def check_reweight(reweight: str, activation: Any) -> None:
    """``reweight`` is known, and ``incoming`` is only used with a positively homogeneous activation."""
    if reweight not in REWEIGHTS:
        raise ConfigError(f"reweight must be one of {REWEIGHTS}, got '{reweight}'")
    if reweight == "incoming" and activation not in POSITIVELY_HOMOGENEOUS:
        raise ConfigError(
            f"reweight=incoming needs a positively homogeneous activation ({', '.join(POSITIVELY_HOMOGENEOUS)}), "
            f"got '{activation}': scaling a neuron's input would change its output otherwise"
        )


def prune_pair(
    layer: nn.Linear, next_layer: nn.Linear, sample: NeuronSample, reweight: str = "outgoing"
) -> tuple[nn.Linear, nn.Linear]:
    """New, smaller ``(layer, next_layer)`` keeping neurons ``sample.indices`` of ``layer``.

    ``reweight="outgoing"`` (Algorithm 2): ``layer`` keeps rows ``C`` of weight and bias;
    ``next_layer`` keeps columns ``C`` scaled by ``sample.scale`` (``u_j(q) = s_q w_j(q)``), bias
    unchanged. ``"incoming"``: rows ``C`` of ``layer`` (weight and bias) scaled by ``s_q`` and the
    columns of ``next_layer`` unscaled -- the same function under a positively homogeneous activation
    (checked by the callers, :func:`check_reweight`); ``"none"``: no scaling at all.
    """
    if reweight not in REWEIGHTS:
        raise ConfigError(f"reweight must be one of {REWEIGHTS}, got '{reweight}'")
    if layer.out_features != next_layer.in_features:
        raise ValueError(f"layers do not chain: {layer.out_features} outputs vs {next_layer.in_features} inputs")
    idx = sample.indices.to(layer.weight.device)
    scale = sample.scale.to(layer.weight)
    if reweight == "incoming" and not bool((scale > 0).all()):
        raise ConfigError("reweight=incoming needs positive scales (a neuron's scale is <= 0)")
    s_in = scale if reweight == "incoming" else torch.ones_like(scale)
    s_out = scale if reweight == "outgoing" else torch.ones_like(scale)
    with torch.no_grad():
        w1 = layer.weight[idx] * s_in[:, None]
        b1 = layer.bias[idx] * s_in if layer.bias is not None else None
        w2 = next_layer.weight[:, idx] * s_out
        b2 = next_layer.bias.clone() if next_layer.bias is not None else None
    return _linear(w1, b1, layer), _linear(w2, b2, next_layer)


def layer_points(layer: nn.Linear) -> torch.Tensor:
    """The neurons of ``layer`` as points ``[W | b]`` (Section 3 of the paper)."""
    return neuron_points(layer.weight.detach(), None if layer.bias is None else layer.bias.detach())


def params_of_widths(widths: Sequence[int]) -> int:
    """Parameters (weights + biases) of a dense MLP with layer widths ``[in, h1, ..., out]``."""
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def hidden_widths_for_compression(
    widths: Sequence[int], rate: float, layers: Sequence[int] | None = None
) -> list[int]:
    """Hidden widths that remove at least a fraction ``rate`` of the parameters.

    The hidden layers listed in ``layers`` (indices into the hidden layers; all by default) are shrunk
    by one common factor, the largest one (widths rounded down, at least 1 neuron) for which
    ``params(new) <= (1 - rate) * params(old)``; other hidden layers keep their width. E.g.
    LeNet-300-100 (266,610 params), ``rate=0.9``, ``layers=[0]`` -> ``[28, 100]`` (25,890 params).
    """
    hidden = list(widths[1:-1])
    layers = list(range(len(hidden))) if layers is None else [int(i) for i in layers]
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"compression rate must be in [0, 1), got {rate}")
    if any(not 0 <= i < len(hidden) for i in layers):
        raise ConfigError(f"prune_layers {layers} out of range for {len(hidden)} hidden layers")
    budget = (1.0 - rate) * params_of_widths(widths)

    def shrink(f: float) -> list[int]:
        return [max(1, math.floor(h * f + 1e-9)) if i in layers else h for i, h in enumerate(hidden)]

    def fits(f: float) -> bool:
        return params_of_widths([widths[0], *shrink(f), widths[-1]]) <= budget

    if not fits(0.0):
        raise ConfigError(f"rate {rate} is not reachable by pruning hidden layers {layers} of {list(widths)}")
    lo, hi = 0.0, 1.0  # fits(lo) holds; params grow with f
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return shrink(lo)


def hidden_indices(model: nn.Module) -> list[int]:
    """Indices (into ``model.layers``) of the hidden linear layers: all but the last."""
    return list(range(len(model.layers) - 1))


def compress_layer(
    model: nn.Module,
    index: int,
    size: int,
    selector: Selector,
    activation: Any = "relu",
    generator: torch.Generator | None = None,
    beta: float | None = None,
    reweight: str = "outgoing",
) -> NeuronSample:
    """Prune hidden layer ``index`` of ``model`` (in place) to the neurons chosen by ``selector``.

    ``reweight``: where the selection's scales go (:func:`prune_pair`).
    """
    layer, nxt = model.layers[index], model.layers[index + 1]
    if size >= layer.out_features:
        idx = torch.arange(layer.out_features)
        return NeuronSample(indices=idx, scale=torch.ones(len(idx), dtype=torch.float64), m=0)
    sample = selector(layer_points(layer), nxt.weight.detach(), int(size), activation, generator, beta)
    model.layers[index], model.layers[index + 1] = prune_pair(layer, nxt, sample, reweight)
    return sample


def compress_mlp(
    model: nn.Module,
    hidden: Sequence[int],
    selector: Selector,
    order: str = "top_down",
    activation: Any = None,
    finetune: FineTune | None = None,
    generator: torch.Generator | None = None,
    betas: dict[int, float] | None = None,
    reweight: str = "outgoing",
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """A pruned copy of ``model`` whose hidden layers have widths ``hidden`` (layer by layer).

    ``order``: ``top_down`` (last hidden layer first, the ICLR paper) or ``bottom_up``. Layers whose
    target width is not smaller are left as they are. ``finetune(model, i)`` is called after each
    pruned layer and returns the epochs it used. ``betas[i]`` is the input-norm bound of layer ``i``
    (for selectors configured with ``beta=None``). ``activation`` defaults to ``model.activation``.
    ``reweight``: ``outgoing`` (Algorithm 2), ``incoming`` or ``none`` (:func:`prune_pair`).
    Returns ``(model, per-layer info)``; the input model is not modified.
    """
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {ORDERS}, got '{order}'")
    model = copy.deepcopy(model)
    idxs = hidden_indices(model)
    if len(hidden) != len(idxs):
        raise ConfigError(f"{len(hidden)} target widths for {len(idxs)} hidden layers")
    activation = activation if activation is not None else getattr(model, "activation", "relu")
    check_reweight(reweight, activation)
    info: list[dict[str, Any]] = []
    for i in (idxs[::-1] if order == "top_down" else idxs):
        before = model.layers[i].out_features
        if int(hidden[i]) >= before:
            continue
        sample = compress_layer(model, i, int(hidden[i]), selector, activation, generator,
                                (betas or {}).get(i), reweight)
        row: dict[str, Any] = {"layer": i, "width_before": before, "width_after": sample.size, "draws": sample.m}
        if finetune is not None:
            row["finetune_epochs"] = finetune(model, i)
        info.append(row)
    return model, info
