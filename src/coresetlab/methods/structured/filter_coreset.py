"""Filter coresets: data-independent channel pruning of CNNs (Mussay, Feldman, Zhou et al. 2020).

*Data-Independent Structured Pruning of Neural Networks via Coresets* (arXiv 2020; only the abstract is
available here): "it approximates the output of a layer of neurons/filters by a coreset of
neurons/filters in the previous layer and discards the rest ... layer-by-layer from the bottom to the
top ... for any input x, including an adversarial one". The construction below carries the neuron-coreset
algorithm (Mussay et al., ICLR 2020, Algorithms 1–2, Corollaries 8–9) over to convolutions; the
derivation is ours.

**Points and weights.** Layer ``i`` is ``a_p = φ(BN_p(conv_p(x)))`` for its output channels ``p``. With the
inference-mode BN folded in (:func:`~coresetlab.methods.shared.channel_surgery.fold_bn`, exact),
``BN_p(conv_p(x))`` at a spatial position is ``p̃ᵀx + b̃_p`` with ``p̃`` the folded filter (``C_in·kh·kw``)
and ``x`` the input patch there. The consumer (the next conv, or a linear layer) computes at each output
position ``z_j = Σ_p Σ_{u} W_{i+1}[j, p, u] · a_p(pos + u) + bias_j``: channel ``p`` is a point whose
"weights" are its consumer slices ``W_{i+1}[j, p]`` (one kh×kw kernel per consumer output ``j``).

**Sensitivity bound** (Corollary 8's ``sup_x |w(p) φ(pᵀx)|``, per layer as in Corollary 9). If every input
patch satisfies ``‖x‖ ≤ β``, then every value of ``a_p`` lies in ``φ([b̃_p − β‖p̃‖₂, b̃_p + β‖p̃‖₂])`` (the
range of ``p̃ᵀx`` over the ball is exactly ``±β‖p̃‖₂``, Cauchy–Schwarz), so the contribution of channel
``p`` to ``z_j`` at any position is bounded by

    |Σ_u W_{i+1}[j, p, u] a_p(pos + u)|  ≤  ‖W_{i+1}[j, p]‖₁ · sup_{|t − b̃_p| ≤ β‖p̃‖₂} |φ(t)|,

and ``s(p) = max_j ‖W_{i+1}[j, p]‖₁ · sup|φ|`` (max over every consumer output, and over all consumers if
there are several). For ReLU the supremum is ``relu(b̃_p + β‖p̃‖₂)``; for activations monotone on each side
of 0 it is the largest ``|φ|`` among the interval's endpoints and 0 (when inside) (:func:`interval_sup`).
``pr(p) = s(p) / Σ_q s(q)``; channels are drawn i.i.d. from ``pr`` until ``k`` distinct ones were drawn
(:func:`~coresetlab.methods.shared.sampling.importance_sample`, ``size_mode="distinct"``, ``k`` = the
budget ``max(1, round(keep · width))``), and the kept channel ``q`` is **reweighted at the consumer**:
its input slices ``W_{i+1}[:, q]`` are multiplied by ``1/π(q)`` (``weighting="inclusion"``, exact
Horvitz–Thompson; default) or by Algorithm 2's ``count(q)/(m·pr(q))`` (``"counts"``). The scale goes on the
consumer, not the producer: the BN after the producer would normalise a producer-side factor away.

**What is exact and what is heuristic for conv layers.**

* *Unbiased, exactly*: for any input, ``E[z̃_j] = z_j`` for the consumer's pre-activation given the
  producer's post-activation maps ``a_p`` (HT weighting; ``counts`` is unbiased only for ``size_mode="m"``).
  This holds whatever per-channel operation sits between producer and consumer (ReLU after BN,
  max-pooling, average pooling, flattening): the consumer is linear in the channel maps it reads.
* *Exact at full size*: ``keep = 1`` keeps every channel with scale 1 -- the same function.
* *A bound, not tight*: ``‖W[j, p]‖₁ · sup|φ|`` assumes every kernel tap sees the extreme value at once, and
  the ball is over one patch (``C_in·kh·kw`` values, zero padding included), not the whole image.
* *Heuristic*: β. ``beta=None`` takes, per layer, the largest patch norm of the layer's input over the
  ``example_inputs`` (on the already-pruned upstream network) -- a data calibration of the ball, so the
  "any input" guarantee then covers inputs whose patches are no larger than those seen. The ε-guarantee
  is per layer (as in the papers); across layers the errors compound, and the BN of the *consumer* keeps
  its running statistics (valid in expectation, since its input is estimated without bias).
* Layer by layer **bottom to top**: the sensitivities of layer ``i + 1`` are computed on the network whose
  layers ``≤ i`` are already pruned and reweighted (the consumer scaling of layer ``i`` is part of layer
  ``i + 1``'s filters ``p̃``).

Everything is vectorised over channels; no loop over draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coresetlab.errors import ConfigError, DataError
from coresetlab.methods.shared.channel_surgery import fold_bn
from coresetlab.methods.shared.sampling import SIZE_MODES, WEIGHTINGS, WeightedSample, importance_sample
from coresetlab.methods.structured.pruners import GroupView, check_keep, prune_model

#: Activations after the producer's BN (elementwise, monotone on each side of 0).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "gelu": F.gelu, "softplus": F.softplus, "relu6": F.relu6, "silu": F.silu,
}


def interval_sup(activation: str, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``sup_{t ∈ [lo, hi]} |φ(t)|`` per entry (for ReLU: ``relu(hi)``).

    The largest ``|φ|`` among the endpoints and 0 (when inside): exact for activations monotone on each
    side of 0. SiLU and GELU also have a negative lobe (minimum −0.2785 at −1.2785, −0.1700 at −0.7518)
    whose depth is added when the interval contains the minimiser, so the value stays exact.
    """
    try:
        phi = ACTIVATIONS[activation]
    except KeyError:
        raise ConfigError(f"unknown activation '{activation}', choose one of {', '.join(ACTIVATIONS)}") from None
    cand = torch.stack([phi(lo).abs(), phi(hi).abs()])
    inside = (lo <= 0) & (hi >= 0)
    sup = torch.where(inside, torch.maximum(cand.amax(0), phi(torch.zeros_like(lo)).abs()), cand.amax(0))
    lobes = {"silu": (-1.2785, 0.2785), "gelu": (-0.7518, 0.1700)}
    if activation in lobes:
        at, val = lobes[activation]
        sup = torch.where((lo <= at) & (hi >= at), sup.clamp_min(val), sup)
    return sup


def consumer_l1(consumer: nn.Module, channels: int) -> torch.Tensor:
    """``‖W[j, p]‖₁`` per consumer output ``j`` and input channel ``p``: ``(out, channels)``.

    A ``Conv2d`` sums over its kernel; a ``Linear`` after flattening ``channels`` maps sums over the
    ``in_features / channels`` inputs of each channel (NCHW flatten order).
    """
    w = consumer.weight.detach()
    if isinstance(consumer, nn.Conv2d):
        if consumer.groups != 1 or consumer.in_channels != channels:
            raise ValueError(f"consumer conv reads {consumer.in_channels} channels (groups={consumer.groups}), "
                             f"producer makes {channels}")
        return w.abs().sum(dim=(2, 3))
    if isinstance(consumer, nn.Linear):
        if consumer.in_features % channels:
            raise ValueError(f"Linear with {consumer.in_features} inputs cannot follow {channels} channels")
        return w.abs().reshape(w.shape[0], channels, -1).sum(-1)
    raise TypeError(f"consumer is a {type(consumer).__name__}; expected Conv2d or Linear")


def folded_filters(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The points ``p̃`` (``(C_out, C_in·kh·kw)``) and biases ``b̃`` of ``conv`` with ``bn`` folded in (eval mode)."""
    f = fold_bn(conv, bn) if bn is not None else conv
    b = f.bias.detach() if f.bias is not None else torch.zeros(conv.out_channels, device=conv.weight.device)
    return f.weight.detach().reshape(conv.out_channels, -1), b


def filter_sensitivity(
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None,
    consumers: Sequence[nn.Module],
    beta: float,
    activation: str = "relu",
    normalize: bool = True,
) -> torch.Tensor:
    """``s(p) = max_j ‖W_{i+1}[j, p]‖₁ · sup_{‖x‖≤β} |φ(p̃ᵀx + b̃_p)|`` per output channel (module docstring).

    Returns ``(C_out,)`` float64, normalised to sum to 1 unless ``normalize=False``. All zero → uniform
    (exact: every channel's output is 0 on the ball). Non-finite → :class:`DataError`.
    """
    if not beta > 0:
        raise ConfigError(f"beta (input-patch norm bound) must be > 0, got {beta}")
    if not consumers:
        raise ValueError("a channel group needs at least one consumer")
    pts, b = folded_filters(conv, bn)
    radius = beta * pts.to(torch.float64).norm(dim=1)
    b = b.to(torch.float64)
    sup = interval_sup(activation, b - radius, b + radius)
    wmax = torch.stack([consumer_l1(c, conv.out_channels).amax(0) for c in consumers]).amax(0).to(torch.float64)
    s = wmax.cpu() * sup.cpu()
    if not bool(torch.isfinite(s).all()):
        raise DataError(f"non-finite filter sensitivities in a conv with {conv.out_channels} channels "
                        "(NaN/Inf weights or BN statistics): cannot build a coreset of this layer")
    if not normalize:
        return s
    total = s.sum()
    return torch.full_like(s, 1.0 / len(s)) if total <= 0 else s / total


def sample_channels(probs: torch.Tensor, k: int, size_mode: str = "distinct", weighting: str = "inclusion",
                    generator: torch.Generator | None = None) -> WeightedSample:
    """Importance-sample ``k`` channels from ``probs`` (zero-probability channels fill up, scale 1, if needed).

    A channel with ``s(p) = 0`` outputs 0 on the whole ball, so keeping it with any scale changes nothing
    there; they are only kept when fewer than ``k`` channels have ``s > 0`` (lowest indices first).
    """
    pos = torch.nonzero(probs > 0).flatten()
    k_pos = min(int(k), len(pos))
    sample = importance_sample(probs, k_pos, size_mode, generator, weighting)
    if size_mode != "distinct" or k_pos == k:
        return sample
    zero = torch.nonzero(probs <= 0).flatten()[: int(k) - k_pos]
    idx = torch.cat([sample.indices, zero])
    scale = torch.cat([sample.scale, torch.ones(len(zero), dtype=sample.scale.dtype)])
    order = torch.argsort(idx)
    return WeightedSample(indices=idx[order], scale=scale[order], m=sample.m, probs=probs)


@dataclass
class FilterCoreset:
    """The filter coreset as configured (``conf/coreset_method/filter_coreset.yaml``).

    ``keep``: fraction of channels kept per group; ``beta``: input-patch norm bound (None = per layer from
    the example inputs); ``activation``: the nonlinearity after each producer's BN; ``size_mode`` /
    ``weighting``: as in :mod:`coresetlab.methods.shared.sampling`.
    """

    keep: float = 0.5
    beta: float | None = None
    activation: str = "relu"
    size_mode: str = "distinct"
    weighting: str = "inclusion"
    name: str = "filter_coreset"

    needs_beta = True  # the pruner computes β per layer when ``beta`` is None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> FilterCoreset:
        """Raise :class:`ConfigError` on a bad setting; return ``self``."""
        self.keep = check_keep(self.keep)
        if self.beta is not None and not float(self.beta) > 0:
            raise ConfigError(f"coreset_method.beta must be > 0 or null, got {self.beta}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation '{self.activation}', choose one of {', '.join(ACTIVATIONS)}")
        if self.size_mode != "distinct":
            raise ConfigError(f"filter coresets hit a width budget: size_mode must be 'distinct' "
                              f"(one of {SIZE_MODES} for neurons), got '{self.size_mode}'")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got '{self.weighting}'")
        return self

    def select(self, group: GroupView, k: int, generator: torch.Generator | None = None) -> WeightedSample:
        """Sample ``k`` channels of ``group`` by sensitivity and reweight them (module docstring)."""
        beta = float(self.beta) if self.beta is not None else group.beta
        if beta is None:
            raise ConfigError("filter_coreset with beta=null takes β from example_inputs: pass example_inputs "
                              "or set coreset_method.beta")
        probs = filter_sensitivity(group.conv, group.bn, group.consumers, beta, self.activation)
        return sample_channels(probs, k, self.size_mode, self.weighting, generator)

    def prune(self, model: nn.Module, example_inputs: torch.Tensor | None = None,
              generator: torch.Generator | None = None, ignored_layers: Sequence[str] | None = None,
              ) -> tuple[nn.Module, dict[str, Any]]:
        """A pruned copy of ``model`` and the info (:func:`~coresetlab.methods.structured.pruners.prune_model`)."""
        return prune_model(model, self, example_inputs, generator, ignored_layers)
