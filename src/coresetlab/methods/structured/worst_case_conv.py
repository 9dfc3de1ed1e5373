"""Worst-case inputs for one pruned conv layer (beyond the paper): coreset vs uniform vs L1-norm at equal size.

The structured-coreset guarantee is data independent: it holds "for any input x, including an
adversarial one" (Mussay et al. 2020, abstract). For one layer ``a = φ(BN(conv(x)))`` read by a
``consumer`` (a conv or a linear layer) we search the input ball ``‖x‖₂ ≤ β`` (``x`` a whole
``C_in × H × W`` input, so every patch is in the patch ball of the sensitivity bound) for the input that
maximises the relative error of the consumer's output between the full layer and each pruned one (the
kept channels and consumer scales of each method, all at the same kept count ``k``):

* ``normalizer="abs_sum"`` (default): ``‖z(x) − z̃(x)‖₂ / ‖Σ_p |W_{·,p}| ∗ |a_p(x)|‖₂`` -- the quantity
  the coreset's ε-guarantee scales with (the sum of absolute contributions, Corollary 8), never ≈ 0/0;
* ``normalizer="output"``: ``‖z − z̃‖₂ / ‖z‖₂``.

Projected normalised gradient ascent from ``restarts`` random points of the sphere, all restarts in one
batch (as :mod:`coresetlab.methods.neuron.worst_case` does for MLPs; the loop is repeated here because a
paper package does not import another's): step ``η_t β g/‖g‖`` with ``η_t`` cosine-decayed from ``lr`` to
``lr/100``, projection onto the ball, the best value along every path kept. A lower bound on the true
worst case (the problem is not concave). BN is used in inference mode (folded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.shared.channel_surgery import fold_bn
from coresetlab.methods.structured.baselines import L1Filter, UniformChannels
from coresetlab.methods.structured.filter_coreset import ACTIVATIONS, FilterCoreset
from coresetlab.methods.structured.pruners import GroupView, kept_count

NORMALIZERS = ("abs_sum", "output")


def _method(m: Any, keep: float, beta: float) -> Any:
    if not isinstance(m, str):
        return m
    table = {"filter_coreset": FilterCoreset, "uniform": UniformChannels, "l1": L1Filter}
    table |= {"coreset": FilterCoreset, "channel_uniform": UniformChannels, "l1_filter": L1Filter}
    if m not in table:
        raise ConfigError(f"unknown method '{m}' for the worst-case search, choose one of {', '.join(table)}")
    return table[m](keep=keep, beta=beta) if table[m] is FilterCoreset else table[m](keep=keep)


def _consume(consumer: nn.Module, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(consumer, nn.Conv2d):
        return F.conv2d(a, weight, bias, consumer.stride, consumer.padding, consumer.dilation)
    return F.linear(a.flatten(1), weight, bias)


def _slice_in(consumer: nn.Module, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor,
              channels: int) -> torch.Tensor:
    if isinstance(consumer, nn.Conv2d):
        return weight[:, idx] * scale.view(1, -1, 1, 1)
    w = weight.reshape(weight.shape[0], channels, -1)[:, idx] * scale.view(1, -1, 1)
    return w.reshape(weight.shape[0], -1)


def worst_case_conv(
    layer_conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None,
    consumer: nn.Module,
    keep: float,
    methods: Sequence[Any] = ("filter_coreset", "uniform", "l1"),
    beta: float = 1.0,
    steps: int = 100,
    generator: torch.Generator | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    restarts: int = 8,
    lr: float = 0.5,
    activation: str = "relu",
    normalizer: str = "abs_sum",
) -> dict[str, float]:
    """Per method (a name or a selector object), the worst relative consumer-output error found on ``‖x‖ ≤ β``.

    ``input_shape``: ``(C_in, H, W)`` of the searched input (default ``(C_in, 8, 8)``; a Linear consumer
    needs the shape that gives its ``in_features``). The methods are drawn once each (``generator``).
    """
    res = conv_layer_errors(layer_conv, bn, consumer, keep, methods, beta, steps, generator, input_shape=input_shape,
                            restarts=restarts, lr=lr, activation=activation, normalizer=normalizer)
    return {name: r["err_worst"] for name, r in res.items()}


def conv_layer_errors(
    layer_conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None,
    consumer: nn.Module,
    keep: float,
    methods: Sequence[Any] = ("filter_coreset", "uniform", "l1"),
    beta: float = 1.0,
    steps: int = 100,
    generator: torch.Generator | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    restarts: int = 8,
    lr: float = 0.5,
    activation: str = "relu",
    normalizer: str = "abs_sum",
    data: torch.Tensor | None = None,
    init_top: int = 4,
) -> dict[str, dict[str, float]]:
    """:func:`worst_case_conv` with the average case beside it: per method ``{"err_worst": …}`` plus, when
    ``data`` (real inputs of the layer, ``(N, *input_shape)``, each of norm ≤ β) is given, ``err_avg`` /
    ``err_max_data`` (mean / max error over ``data``) and ``worst_over_avg``; the ``init_top`` data points
    with the largest error are added to the ascent's starting points (as the MLP search does)."""
    if not beta > 0 or steps < 0 or restarts < 1:
        raise ConfigError(f"worst-case search needs beta > 0, steps >= 0, restarts >= 1 (got {beta}, {steps}, {restarts})")
    if normalizer not in NORMALIZERS:
        raise ConfigError(f"normalizer must be one of {NORMALIZERS}, got '{normalizer}'")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{activation}', choose one of {', '.join(ACTIVATIONS)}")
    phi = ACTIVATIONS[activation]
    shape = tuple(input_shape) if input_shape is not None else (layer_conv.in_channels, 8, 8)
    f = fold_bn(layer_conv, bn) if bn is not None else layer_conv
    wp = f.weight.detach().double()
    bp = (f.bias.detach() if f.bias is not None else torch.zeros(layer_conv.out_channels)).double()
    wc = consumer.weight.detach().double()
    bc = consumer.bias.detach().double() if consumer.bias is not None else None
    n, k = layer_conv.out_channels, kept_count(keep, layer_conv.out_channels)

    def produce(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return phi(F.conv2d(x.view(-1, *shape), w, b, layer_conv.stride, layer_conv.padding, layer_conv.dilation))

    if data is not None:
        data = data.detach().double().reshape(len(data), -1)
        if data.shape[1] != math.prod(shape):
            raise ValueError(f"data has {data.shape[1]} values per input, the searched shape {shape} has {math.prod(shape)}")
    out: dict[str, dict[str, float]] = {}
    for spec in methods:
        sel = _method(spec, keep, beta)
        sample = sel.select(GroupView(layer_conv, bn, [consumer], beta), k, generator)
        idx, scale = sample.indices, sample.scale.double()
        wk = _slice_in(consumer, wc, idx, scale, n)

        def error(x: torch.Tensor, idx=idx, wk=wk) -> torch.Tensor:
            a = produce(x, wp, bp)
            z = _consume(consumer, a, wc, bc)
            zk = _consume(consumer, a[:, idx], wk, bc)
            den = (_consume(consumer, a.abs(), wc.abs(), None) if normalizer == "abs_sum" else z).flatten(1)
            return (z - zk).flatten(1).norm(dim=1) / den.norm(dim=1).clamp_min(1e-12)

        row: dict[str, float] = {}
        init = None
        if data is not None:
            with torch.no_grad():
                e = error(data)
            row |= {"err_avg": float(e.mean()), "err_max_data": float(e.max())}
            init = data[torch.topk(e, k=min(int(init_top), len(e))).indices] if init_top > 0 else None
        row["err_worst"] = _ascent(error, math.prod(shape), beta, restarts, steps, lr, generator, init)
        if "err_avg" in row:
            row["worst_over_avg"] = row["err_worst"] / max(row["err_avg"], 1e-300)
        out[getattr(sel, "name", str(spec))] = row
    return out


def _ascent(error, dim: int, beta: float, restarts: int, steps: int, lr: float,
            generator: torch.Generator | None, init: torch.Tensor | None = None) -> float:
    g = torch.randn(restarts, dim, generator=generator, dtype=torch.float64)
    x = beta * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if init is not None:  # data points (projected onto the ball) as extra starts
        x0 = init.reshape(len(init), -1).double()
        x = torch.cat([x, x0 * (beta / x0.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)])
    with torch.no_grad():
        best = error(x)
    for t in range(steps):
        eta = lr / 100 + 0.5 * (lr - lr / 100) * (1 + math.cos(math.pi * t / max(1, steps)))
        x.requires_grad_(True)
        val = error(x)
        (grad,) = torch.autograd.grad(val.sum(), x)
        with torch.no_grad():
            best = torch.maximum(best, val.detach())
            x = x.detach() + eta * beta * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            x = x * (beta / x.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    with torch.no_grad():
        best = torch.maximum(best, error(x))
    return float(best.max())
