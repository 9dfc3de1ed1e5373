"""CoreNet, CoreNet+ and CoreNet++ (Baykal, Liebenwein, Gilitschenski, Feldman & Rus, ICLR 2019).

*Data-dependent coresets for compressing neural networks with applications to generalization
bounds* (arXiv:1804.05345). Each neuron ``i`` of layer ``ℓ`` has incoming edges ``j`` with weights
``w_ij`` and input activations ``a_j(x)``. CoreNet (Algorithms 1-2, SPARSIFY) sparsifies every
neuron's incoming weights separately for the positive edges ``W+ = {j : w_ij > 0}`` and the negative
edges ``W− = {j : w_ij < 0}``:

* **empirical sensitivity** over a small batch ``S`` of validation points:
  ``s_ij = max_{x∈S} |w_ij a_j(x)| / Σ_{k ∈ W±(i)} |w_ik a_k(x)|`` (the paper's ``g_j(x)``; the
  absolute values only matter for the input layer, whose normalised pixels can be negative);
* ``S_i± = Σ_{j∈W±(i)} s_ij``, ``q_ij = s_ij / S_i±``, ``m_i± ∝ S_i±`` samples (the theorem's
  ``m = ⌈8 S K log(8η/δ) / ε²⌉`` with one ``ε`` for the layer), and the reweighted edges
  ``ŵ_ij = w_ij · count_ij / (m_i± q_ij)``; the neuron's new weights are ``ŵ+ − ŵ−``.

We draw the samples *Poissonised*: ``count_ij ~ Poisson(m_i± q_ij) = Poisson(c · s_ij)``
independently, which keeps the estimator unbiased, the per-(neuron, sign) sample sizes ``∝ S_i±`` in
expectation, and needs no loop over neurons. The layer constant ``c`` is set by bisection so that the
expected number of non-zero weights equals the layer's budget (fraction of weights kept).

* **CoreNet+** adds *neuron pruning*: neurons whose activation is 0 on every point of ``S`` are
  removed (their incoming row and bias are zeroed; their outgoing edges already have zero
  sensitivity), and their budget goes to the other neurons.
* **CoreNet++** adds *amplification*: ``τ`` independent sparsifications of every neuron; each neuron
  keeps the one with the smallest error ``mean_{x∈T} |ŵ_iᵀ a(x) − w_iᵀ a(x)|`` on a second batch ``T``.

Sensitivities use the activations of the *original* network (layer inputs of the uncompressed model).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron.sparsify import per_layer

VARIANTS = ("corenet", "corenet+", "corenet++")


@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Inputs ``a^{ℓ-1}(x)`` of every linear layer of an MLP (``model.layers``, ``model.act``)."""
    h = x.flatten(1)
    out = []
    for i, layer in enumerate(model.layers):
        out.append(h)
        h = layer(h)
        if i < len(model.layers) - 1:
            h = model.act(h)
    return out


@torch.no_grad()
def empirical_sensitivity(weight: torch.Tensor, acts: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``s_ij = max_x |w_ij a_j(x)| / Σ_{k same sign as w_ij} |w_ik a_k(x)|`` for all edges, ``(out, in)``.

    The denominators are two matrix products; since ``|w_ij|`` does not depend on ``x`` the maximum is
    ``|w_ij| · max_x |a_j(x)| / den_{i,sign(w_ij)}(x)``, a max-product over the points of ``S``
    (chunks of points bound the memory; no loop over edges).
    """
    w = weight.detach().to(torch.float32)
    wa, pos = w.abs(), w > 0
    a_all = acts.detach().to(torch.float32).abs()
    inv = []
    for part in (wa * pos, wa * (w < 0)):
        den = a_all @ part.T                                             # (|S|, out)
        inv.append(torch.where(den > 0, 1.0 / den.clamp_min(1e-30), torch.zeros_like(den)))
    m_pos = torch.zeros_like(w)
    m_neg = torch.zeros_like(w)
    for start in range(0, len(a_all), chunk):
        a = a_all[start:start + chunk, None, :]                          # (B, 1, in)
        m_pos = torch.maximum(m_pos, (inv[0][start:start + chunk, :, None] * a).amax(0))
        m_neg = torch.maximum(m_neg, (inv[1][start:start + chunk, :, None] * a).amax(0))
    return (wa * torch.where(pos, m_pos, m_neg)).to(torch.float64)


def _calibrate(s: torch.Tensor, budget: float, tol: float = 0.5, max_iter: int = 100) -> float:
    """``c`` with ``f(c) = Σ (1 − exp(−c s_ij)) − budget = 0`` (expected non-zeros under Poisson sampling).

    ``f`` is increasing and concave, and ``c₀ = budget / Σ s`` gives ``f(c₀) <= 0``, so Newton's
    iterates increase monotonically to the root (a few iterations; ``inf`` if the budget covers all
    edges of positive sensitivity).
    """
    pos = s[s > 0]
    if budget >= len(pos):
        return float("inf")
    c = budget / float(pos.sum())
    for _ in range(max_iter):
        e = torch.exp(-c * pos)
        f = float((1 - e).sum()) - budget
        if abs(f) <= tol:
            break
        c -= f / float((pos * e).sum())
    return c


def sparsify_weight(
    weight: torch.Tensor,
    s: torch.Tensor,
    budget: float,
    generator: torch.Generator | None = None,
    candidates: int = 1,
) -> torch.Tensor:
    """Poissonised CoreNet sampling of a whole layer: ``(candidates, out, in)`` sparse weight estimates.

    ``count_ij ~ Poisson(c s_ij)``, ``ŵ_ij = w_ij count_ij / (c s_ij)``; ``c`` makes the expected number
    of non-zeros ``budget``. With ``budget >= #edges of positive sensitivity`` those edges are kept
    exactly.
    """
    w = weight.detach().to(torch.float64)
    c = _calibrate(s, budget)
    if c == float("inf"):
        return torch.where(s > 0, w, torch.zeros_like(w)).expand(candidates, *w.shape).clone()
    rate = (c * s).expand(candidates, *s.shape).contiguous()
    counts = torch.poisson(rate, generator=generator)
    scale = torch.where(rate > 0, counts / rate.clamp_min(1e-300), torch.zeros_like(rate))
    return w[None] * scale


@dataclass
class CoreNetPlan:
    """What CoreNet computes once per network and batch ``S`` (and ``T``), shared by all variants:
    per-layer empirical sensitivities, the neurons alive on ``S`` and the layer inputs on ``T``."""

    sens: list[torch.Tensor]
    alive: list[torch.Tensor]
    t_acts: list[torch.Tensor] | None


@torch.no_grad()
def corenet_plan(
    model: nn.Module, s_points: torch.Tensor, t_points: torch.Tensor | None = None, chunk: int = 64
) -> CoreNetPlan:
    """Empirical sensitivities of every layer on ``S``, dead-neuron masks, and ``T``'s layer inputs."""
    s_acts = layer_inputs(model, s_points)
    sens, alive = [], []
    for li, layer in enumerate(model.layers):
        sens.append(empirical_sensitivity(layer.weight, s_acts[li], chunk))
        last = li == len(model.layers) - 1
        alive.append(torch.ones(layer.out_features, dtype=torch.bool) if last else s_acts[li + 1].amax(0) > 0)
    return CoreNetPlan(sens=sens, alive=alive, t_acts=None if t_points is None else layer_inputs(model, t_points))


@dataclass
class CoreNet:
    """CoreNet / CoreNet+ / CoreNet++ applied to every layer of an MLP for a fraction of weights kept.

    ``variant``: ``corenet``, ``corenet+`` (neuron pruning) or ``corenet++`` (+ amplification with
    ``tau`` candidates). :meth:`compress` returns a compressed copy and its number of non-zero
    parameters; pass a :func:`corenet_plan` to reuse the sensitivities across calls and variants.
    """

    variant: str = "corenet"
    tau: int = 5

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown CoreNet variant '{self.variant}', choose one of {', '.join(VARIANTS)}")
        if self.tau < 1:
            raise ConfigError(f"CoreNet++ amplification needs tau >= 1, got {self.tau}")

    @property
    def prunes_neurons(self) -> bool:
        return self.variant in ("corenet+", "corenet++")

    @property
    def amplifies(self) -> bool:
        return self.variant == "corenet++"

    @torch.no_grad()
    def compress(
        self,
        model: nn.Module,
        fraction: float | Sequence[float],
        s_points: torch.Tensor | None = None,
        t_points: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        plan: CoreNetPlan | None = None,
    ) -> tuple[nn.Module, int]:
        """A copy of ``model`` keeping about ``fraction`` (one, or one per layer) of every layer's
        weights, and its number of non-zero parameters."""
        fracs = per_layer(fraction, len(model.layers))
        if plan is None:
            if s_points is None:
                raise ConfigError("CoreNet needs a batch of points S (s_points) or a plan (corenet_plan)")
            plan = corenet_plan(model, s_points, t_points)
        if self.amplifies and plan.t_acts is None:
            raise ConfigError("CoreNet++ needs a second batch of points (t_points) for amplification")
        out = copy.deepcopy(model)
        kept = 0
        for li, layer in enumerate(out.layers):
            w = layer.weight
            alive = plan.alive[li] if self.prunes_neurons else torch.ones(w.shape[0], dtype=torch.bool)
            s = plan.sens[li] * alive[:, None]  # CoreNet+: a neuron dead on all of S is pruned
            cands = sparsify_weight(w, s, fracs[li] * w.numel(), generator, self.tau if self.amplifies else 1)
            if len(cands) > 1:
                a = plan.t_acts[li].to(torch.float64)
                ref = a @ w.detach().to(torch.float64).T                           # (T, out)
                err = (torch.einsum("tij,bj->tbi", cands, a) - ref).abs().mean(1)  # (tau, out)
                new_w = cands[err.argmin(0), torch.arange(w.shape[0])]
            else:
                new_w = cands[0]
            w.copy_(new_w.to(w.dtype))
            if layer.bias is not None:
                layer.bias.mul_(alive.to(layer.bias.dtype))
                kept += int(alive.sum())
            kept += int((w != 0).sum())
        return out, kept
