"""Importance sampling shared by every coreset of this project (neurons, filters, entries).

Sensitivity sampling (Braverman et al.; Mussay et al. ICLR 2020, Algorithm 2 lines 3-6): draw items
i.i.d. from a distribution ``pr``, keep the distinct items drawn and reweight them so that the weighted
sum over the sample estimates the full sum. The structured (filter) coresets reuse exactly these
functions for conv channels.

Size modes: ``m`` -- exactly ``m`` i.i.d. draws (the paper: ``|C| ≤ m``); ``distinct`` -- draws until
``k`` distinct items were drawn (the authors' code, to hit a target width; ``m`` is then random).

Weightings of a kept item ``q`` (``weighting``):

* ``inclusion`` (default) -- the Horvitz–Thompson weight ``1 / π(q)``, ``π(q)`` the exact probability that
  the scheme keeps ``q`` (:mod:`.inclusion`): unbiased in both size modes, ``E[1{q kept} / π(q)] = 1``.
* ``counts`` -- Algorithm 2's ``count(q) / (m · pr(q))``: unbiased for ``size_mode="m"`` (``E[count] = m pr``)
  but **biased** for ``distinct``, where ``m`` depends on the draws: two items with ``pr = (0.9, 0.1)``
  and ``k = 2`` (both always kept) get ``E[scale] ≈ (0.88, 2.08)`` instead of ``(1, 1)``. Kept as the
  authors' variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from coresetlab.errors import ConfigError
from coresetlab.methods.shared.inclusion import inclusion_probabilities_distinct, inclusion_probabilities_iid

SIZE_MODES = ("distinct", "m")
WEIGHTINGS = ("inclusion", "counts")


def draw_m(probs: torch.Tensor, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Counts of ``m`` i.i.d. draws with replacement from ``probs``: a ``(n,)`` int64 multinomial vector."""
    if m < 1:
        raise ConfigError(f"the number of draws m must be >= 1, got {m}")
    idx = torch.multinomial(probs.to(torch.float64), m, replacement=True, generator=generator)
    return torch.bincount(idx, minlength=len(probs))


def draw_until_distinct(
    probs: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, int]:
    """Counts of i.i.d. draws from ``probs`` made until ``k`` distinct items were drawn, and ``m``.

    Exact and loop-free (an *exponential race*): embed the draws in a rate-1 Poisson process whose
    marks are i.i.d. ``∝ probs``; item ``i`` then first appears at ``T_i ~ Exp(p_i)`` (independent),
    so the first ``k`` distinct items are the ``k`` smallest ``T_i`` and the process stops at
    ``τ = T_(k)``. After its first appearance, item ``i`` reappears as a Poisson process of rate
    ``p_i`` independent of all first-appearance times, so its count is ``1 + Poisson(p_i (τ − T_i))``.
    This has the law of the sequential procedure of the authors' code (Algorithm 2 with a width target)
    at the cost of one sort.
    """
    p = probs.to(torch.float64)
    n_pos = int((p > 0).sum())
    if not 1 <= k <= n_pos:
        raise ConfigError(f"cannot draw {k} distinct neurons from {n_pos} with non-zero probability")
    e = torch.empty(len(p), dtype=torch.float64).exponential_(generator=generator)
    t = torch.where(p > 0, e / p, torch.full_like(p, math.inf))
    order = torch.argsort(t)
    first = order[:k]
    tau = t[order[k - 1]]
    rate = (p[first] * (tau - t[first])).clamp_min(0.0)
    counts = torch.zeros(len(p), dtype=torch.int64)
    counts[first] = 1 + torch.poisson(rate, generator=generator).to(torch.int64)
    return counts, int(counts.sum())


@dataclass
class WeightedSample:
    """The result of a selection: which items (neurons, channels) of layer ``i`` to keep and how to reweight.

    ``indices``: sorted distinct kept neurons ``C``; ``scale``: per kept neuron the factor that turns
    ``w_j(q)`` into ``u_j(q)`` -- ``1/π(q)`` or ``count(q) / (m · pr(q))`` (see the module docstring; 1 for
    unweighted selections);
    ``m``: number of draws (0 for deterministic selections); ``probs``: the sampling distribution.
    """

    indices: torch.Tensor
    scale: torch.Tensor
    m: int
    probs: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.indices)

    def reweight(self, out_weights: torch.Tensor) -> torch.Tensor:
        """The new outgoing weights ``u`` (columns ``C`` of ``out_weights``, scaled): ``(k, |C|)``."""
        cols = out_weights[..., self.indices]
        return cols * self.scale.to(cols.dtype)


def importance_sample(
    probs: torch.Tensor, size: int, size_mode: str = "distinct", generator: torch.Generator | None = None,
    weighting: str = "inclusion",
) -> WeightedSample:
    """Importance-sample neurons from ``pr = probs`` (Algorithm 2, lines 3-6) and reweight them.

    ``size_mode="m"``: ``size`` i.i.d. draws; ``"distinct"``: draw until ``size`` distinct neurons.
    ``weighting``: ``"inclusion"`` (``1/π``, unbiased) or ``"counts"`` (``count/(m·pr)``; biased with
    ``"distinct"``), see the module docstring.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got '{weighting}'")
    if size_mode == "m":
        counts, m = draw_m(probs, int(size), generator), int(size)
    elif size_mode == "distinct":
        counts, m = draw_until_distinct(probs, int(size), generator)
    else:
        raise ConfigError(f"size_mode must be one of {SIZE_MODES}, got '{size_mode}'")
    idx = torch.nonzero(counts, as_tuple=True)[0]
    if weighting == "counts":
        scale = counts[idx].to(torch.float64) / (m * probs.to(torch.float64)[idx])
    else:
        pi = inclusion_probabilities_iid(probs, m) if size_mode == "m" else inclusion_probabilities_distinct(probs, int(size))
        scale = 1.0 / pi[idx]
    return WeightedSample(indices=idx, scale=scale, m=m, probs=probs)
