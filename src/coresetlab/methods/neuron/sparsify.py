"""Weight-matrix compression baselines of Figure 3 (Mussay et al., ICLR 2020; CoreNet's Figure 2).

* **SVD**: rank-``r`` truncation of each weight matrix (``r (in + out)`` parameters);
* **entry-wise sparsification**: draw matrix entries i.i.d. from a distribution ``p_ij`` and keep
  the unbiased estimator ``Ã = Σ_draws A_ij / (s p_ij) e_i e_jᵀ`` (each entry reweighted by
  ``count_ij / (s p_ij)``), with

  - ``l1``:  ``p_ij ∝ |A_ij|`` (Achlioptas, Karnin & Liberty, "Near-optimal entrywise sampling for
    data matrices", NeurIPS 2013: the L1 distribution they analyse; their row-norm refinement is not
    used, as in CoreNet's comparison);
  - ``l2``:  ``p_ij ∝ A_ij²`` (Drineas & Zouzias, "A note on element-wise matrix sparsification via
    a matrix-valued Bernstein inequality", IPL 2011);
  - ``l1l2``: ``p_ij = α |A_ij|/‖A‖₁ + (1 − α) A_ij²/‖A‖_F²`` (Kundu & Drineas, "A note on randomized
    element-wise matrix sparsification", 2014), ``α = 0.5`` by default;
  - ``uniform``: ``p_ij = 1/(#entries)`` (CoreNet's "Uniform" baseline).

Budgets are numbers of non-zero entries: draws continue until ``k`` distinct entries were drawn
(exact and loop-free, :func:`coresetlab.methods.neuron.coreset.draw_until_distinct`). Biases are
kept. All functions return dense tensors with zeros (the evaluation counts non-zeros).
:func:`layer_fractions` splits a network-level budget into per-layer fractions (optionally keeping
the small output layer dense, which every method needs to stay usable at high compression).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.shared.sampling import draw_until_distinct

ENTRY_METHODS = ("uniform", "l1", "l2", "l1l2")


def per_layer(fraction: float | Sequence[float], n: int) -> list[float]:
    """``fraction`` as a list of ``n`` per-layer fractions in (0, 1] (checked)."""
    fracs = [float(fraction)] * n if isinstance(fraction, int | float) else [float(f) for f in fraction]
    if len(fracs) != n or any(not 0.0 < f <= 1.0 for f in fracs):
        raise ConfigError(f"need {n} fractions of weights kept in (0, 1], got {fraction}")
    return fracs


def entry_probs(weight: torch.Tensor, kind: str, alpha: float = 0.5) -> torch.Tensor:
    """Flattened sampling distribution over the entries of ``weight`` (see the module docstring)."""
    a = weight.detach().reshape(-1).to(torch.float64)
    if kind == "uniform":
        return torch.full_like(a, 1.0 / a.numel())
    l1 = a.abs() / a.abs().sum()
    l2 = a.square() / a.square().sum()
    if kind == "l1":
        return l1
    if kind == "l2":
        return l2
    if kind == "l1l2":
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"l1l2 mixing alpha must be in [0, 1], got {alpha}")
        return alpha * l1 + (1.0 - alpha) * l2
    raise ConfigError(f"unknown entry-wise sparsification '{kind}', choose one of {', '.join(ENTRY_METHODS)}")


def sparsify_entries(
    weight: torch.Tensor, kind: str, k: int, generator: torch.Generator | None = None, alpha: float = 0.5
) -> torch.Tensor:
    """An unbiased sparse estimate of ``weight`` with ``k`` non-zero entries (draws until k distinct)."""
    probs = entry_probs(weight, kind, alpha)
    k = max(1, min(int(k), int((probs > 0).sum())))
    counts, m = draw_until_distinct(probs, k, generator)
    nz = counts > 0
    scale = torch.zeros_like(probs)
    scale[nz] = counts[nz].to(torch.float64) / (m * probs[nz])
    return (weight.detach().to(torch.float64) * scale.reshape(weight.shape)).to(weight.dtype)


def svd_rank_for_budget(shape: tuple[int, int], budget: int) -> int:
    """The largest rank ``r >= 1`` with ``r (out + in) <= budget`` (at most ``min(out, in)``)."""
    out_f, in_f = shape
    return int(max(1, min(min(out_f, in_f), budget // (out_f + in_f))))


def svd_truncate(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation (Eckart–Young) of ``weight``, as a dense matrix."""
    u, s, vh = torch.linalg.svd(weight.detach().to(torch.float64), full_matrices=False)
    r = int(rank)
    return ((u[:, :r] * s[:r]) @ vh[:r]).to(weight.dtype)


def layer_fractions(model: nn.Module, fraction: float, dense_last: bool = False) -> list[float]:
    """Per-layer fractions of weights to keep so that weights + biases total ``fraction`` of the parameters.

    Biases are always kept. With ``dense_last`` the output layer is kept dense and the rest of the
    budget is spread evenly (same fraction) over the other weight matrices; if the budget cannot even
    pay for the output layer, every layer gets the same fraction.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction of parameters kept must be in (0, 1], got {fraction}")
    sizes = [layer.weight.numel() for layer in model.layers]
    biases = sum(0 if layer.bias is None else layer.bias.numel() for layer in model.layers)
    target = fraction * (sum(sizes) + biases) - biases
    if target <= 0:
        raise ConfigError(f"fraction {fraction} does not even pay for the biases ({biases} parameters)")
    rest = sum(sizes[:-1])
    if dense_last and rest and target > sizes[-1]:
        f = min(1.0, (target - sizes[-1]) / rest)
        return [f] * (len(sizes) - 1) + [1.0]
    return [min(1.0, target / sum(sizes))] * len(sizes)


def compress_linear_layers(
    model: nn.Module,
    fraction: float | Sequence[float],
    method: str,
    generator: torch.Generator | None = None,
    alpha: float = 0.5,
) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose ``model.layers[i].weight`` keeps a fraction ``fraction[i]`` of its entries.

    ``fraction``: one number for every layer or one per layer (:func:`layer_fractions`). ``method``:
    ``svd`` or one of :data:`ENTRY_METHODS`. Returns ``(model, kept parameters)`` where kept
    parameters count non-zero weights (``r (in + out)`` for SVD) plus all biases.
    """
    fracs = per_layer(fraction, len(model.layers))
    model = copy.deepcopy(model)
    kept = 0
    for layer, frac in zip(model.layers, fracs):
        w = layer.weight
        if frac >= 1.0:
            kept += w.numel() + (0 if layer.bias is None else layer.bias.numel())
            continue
        budget = max(1, math.floor(frac * w.numel()))
        with torch.no_grad():
            if method == "svd":
                r = svd_rank_for_budget(tuple(w.shape), budget)
                w.copy_(svd_truncate(w, r))
                kept += r * sum(w.shape)
            else:
                w.copy_(sparsify_entries(w, method, budget, generator, alpha))
                kept += int((w != 0).sum())
        kept += 0 if layer.bias is None else layer.bias.numel()
    return model, kept


class _Masked(nn.Module):
    """Parametrization ``W ↦ W ⊙ M``: entries outside the kept pattern ``M`` stay 0 while fine-tuning."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class _LowRank(nn.Module):
    """Parametrization ``W = A B`` with trainable factors (``r (in + out)`` parameters): the rank stays ``r``."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(a), nn.Parameter(b)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # the stored dense weight is not used
        return self.a @ self.b


def freeze_structure(model: nn.Module, method: str, rank_tol: float = 1e-5) -> nn.Module:
    """Constrain ``model`` (in place) so that fine-tuning keeps its compressed structure.

    ``svd``: every layer of rank ``r < min(out, in)`` (singular values above ``rank_tol`` times the
    largest) is re-parametrised as trainable factors ``W = A B`` (``A = U_r S_r^½``, ``B = S_r^½ V_rᵀ``);
    every other method (entry-wise sparsification, CoreNet): the zero pattern of each weight is kept by
    a fixed mask. The function is unchanged and the kept parameter count stays what
    :func:`compress_linear_layers` reports. Layers without structure (dense) are left alone.
    """
    from torch.nn.utils import parametrize

    for layer in model.layers:
        w = layer.weight.detach()
        if method == "svd":
            u, s, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
            r = int((s > rank_tol * s[0]).sum()) if len(s) and s[0] > 0 else 0
            if 0 < r < min(w.shape):
                root = s[:r].sqrt()
                a, b = (u[:, :r] * root).to(w.dtype), (root[:, None] * vh[:r]).to(w.dtype)
                parametrize.register_parametrization(layer, "weight", _LowRank(a, b), unsafe=True)
        else:
            mask = w != 0
            if not bool(mask.all()):
                parametrize.register_parametrization(layer, "weight", _Masked(mask.to(w.dtype)))
    return model
