"""Deep Compression (Han, Mao, Dally, ICLR 2016) as the last stage of Dubey et al.'s pipeline (§4).

1. **Pruning** (Han et al. 2015): per layer, the smallest-magnitude weights are removed; the mask is
   kept fixed while the network is retrained (:class:`Masked` parametrisation).
2. **Trained quantisation**: the surviving weights of each layer are clustered by 1-D k-means with
   linear initialisation into ``2^bits`` shared values; the network then trains the *centroids*
   (each centroid's gradient is the sum of its weights' gradients — :class:`SharedWeights`).
3. **Huffman coding** of the cluster indices and of the sparse positions (see :mod:`.serialize`).

All of it is generic over the ``nn.Conv2d`` / ``nn.Linear`` modules of any network (including the two
halves of :class:`.layers.Factorized` layers). Biases stay dense float32, as in the paper. Training
itself is supplied by the caller (no Lightning here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from coresetlab.methods.dubey.layers import Compressible


def weight_layers(model: nn.Module) -> Iterator[tuple[str, Compressible]]:
    """Every conv/linear module (also inside factorised layers), by qualified name."""
    for name, m in model.named_modules():
        if isinstance(m, Compressible):
            yield name, m


def layer_kind(m: nn.Module) -> str:
    return "conv" if isinstance(m, nn.Conv2d) else "linear"


def _per_layer(value: float | dict[str, float], name: str, m: nn.Module) -> float:
    """A scalar, or a dict keyed by layer name (exact or prefix) or by kind ``conv`` / ``linear``."""
    if not isinstance(value, dict):
        return float(value)
    for key in sorted(value, key=len, reverse=True):
        if key not in ("conv", "linear") and (name == key or name.startswith(key + ".")):
            return float(value[key])
    return float(value.get(layer_kind(m), 0.0))


class Masked(nn.Module):
    """Parametrisation ``w ↦ w ⊙ mask`` (pruned connections stay zero and get no gradient)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class SharedWeights(nn.Module):
    """Parametrisation ``w ↦ centroids[index] ⊙ mask``: weight sharing with trainable centroids.

    The original tensor is ignored, so only the ``2^bits`` centroids are trained (Han et al. 2016 §3.3).
    """

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids.clone())
        self.register_buffer("index", index.to(torch.long))
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.centroids[self.index] * self.mask


def magnitude_masks(model: nn.Module, prune: float | dict[str, float]) -> dict[str, torch.Tensor]:
    """Per-layer masks removing the fraction ``prune`` (by layer name or kind) of smallest |w|."""
    masks = {}
    for name, m in weight_layers(model):
        frac = _per_layer(prune, name, m)
        w = m.weight.detach().abs().flatten()
        k = int(round(frac * w.numel()))
        mask = torch.ones_like(w, dtype=torch.bool)
        if k > 0:
            mask[torch.topk(w, min(k, w.numel()), largest=False).indices] = False
        masks[name] = mask.reshape(m.weight.shape)
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Register :class:`Masked` on every masked layer (remove with :func:`bake`)."""
    for name, mask in masks.items():
        parametrize.register_parametrization(model.get_submodule(name), "weight", Masked(mask))


def bake(model: nn.Module) -> None:
    """Remove every parametrisation, keeping the parametrised (masked / shared) weights as plain tensors."""
    for _, m in list(model.named_modules()):
        if parametrize.is_parametrized(m):
            for pname in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, pname, leave_parametrized=True)


def kmeans_1d(values: torch.Tensor, k: int, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on scalars with linear initialisation over ``[min, max]`` (Han et al. 2016 §3.2).

    Assignment uses the sorted centroids' midpoints (``searchsorted``), so each step is O(n log k).
    Returns ``(centroids (k,), assignment (n,))``; empty clusters keep their previous value.
    """
    v = values.detach().double().flatten()
    if v.numel() == 0:
        return torch.zeros(k, dtype=values.dtype), torch.zeros(0, dtype=torch.long)
    lo, hi = float(v.min()), float(v.max())
    c = torch.linspace(lo, hi, k, dtype=torch.float64)
    assign = torch.zeros_like(v, dtype=torch.long)
    for it in range(iters):
        c = torch.sort(c).values
        new = torch.searchsorted((c[1:] + c[:-1]) / 2, v)
        converged = it > 0 and bool((new == assign).all())
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, new, v)
        counts = torch.bincount(new, minlength=k).double()
        assign, c = new, torch.where(counts > 0, sums / counts.clamp(min=1), c)
        if converged:
            break
    return c.to(values.dtype), assign


@dataclass
class Quantized:
    """One layer's weights after pruning + sharing: codebook, flat positions and cluster of each kept weight."""

    shape: tuple[int, ...]
    codebook: torch.Tensor  # (K,) float32
    positions: torch.Tensor  # (nnz,) long, increasing flat indices
    index: torch.Tensor  # (nnz,) long in [0, K)

    def dense(self) -> torch.Tensor:
        out = torch.zeros(int(torch.tensor(self.shape).prod()), dtype=self.codebook.dtype)
        out[self.positions] = self.codebook[self.index]
        return out.reshape(self.shape)


def quantize(model: nn.Module, bits: int | dict[str, int], iters: int = 50) -> dict[str, SharedWeights]:
    """Replace every layer's (masked) weights by ``2^bits`` shared centroids (k-means over the nonzeros).

    Registers :class:`SharedWeights` parametrisations (call after :func:`bake` of the pruning masks);
    returns them by layer name.
    """
    out = {}
    for name, m in list(weight_layers(model)):
        b = int(_per_layer(bits, name, m))
        w = m.weight.detach()
        mask = w != 0
        cent, assign = kmeans_1d(w[mask], 2**b, iters)
        index = torch.zeros_like(w, dtype=torch.long)
        index[mask] = assign
        p = SharedWeights(cent.to(w.dtype), index, mask)
        parametrize.register_parametrization(m, "weight", p)
        out[name] = p
    return out


def export_quantized(model: nn.Module) -> dict[str, Quantized]:
    """The :class:`Quantized` form of every weight of a model carrying :class:`SharedWeights` parametrisations."""
    out = {}
    for name, m in weight_layers(model):
        if not parametrize.is_parametrized(m, "weight"):
            continue
        p = m.parametrizations.weight[0]
        if not isinstance(p, SharedWeights):
            continue
        flat_mask = p.mask.flatten()
        pos = torch.nonzero(flat_mask).flatten()
        out[name] = Quantized(tuple(p.mask.shape), p.centroids.detach().float().clone(), pos,
                              p.index.flatten()[pos].clone())
    return out


def sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of nonzero weights per conv/linear layer."""
    return {name: float((m.weight != 0).float().mean()) for name, m in weight_layers(model)}


@dataclass
class DCConfig:
    """Deep Compression settings (Han et al. 2016; LeNet-5 there: 8-bit conv / 5-bit fc codebooks,
    5-bit relative indices). ``prune`` / ``bits`` / ``gap_bits``: a scalar, or a dict by layer name or
    kind (``conv`` / ``linear``)."""

    prune: float | dict[str, float] = field(default_factory=lambda: {"conv": 0.5, "linear": 0.8})
    prune_steps: int = 1  # iterative pruning: the fraction ramps up linearly, retraining after each step
    retrain_epochs: int = 1
    bits: int | dict[str, int] = field(default_factory=lambda: {"conv": 8, "linear": 5})
    kmeans_iters: int = 50
    finetune_epochs: int = 1
    gap_bits: int | dict[str, int] = 5


def _scaled(prune: float | dict[str, float], s: float) -> float | dict[str, float]:
    return {k: v * s for k, v in prune.items()} if isinstance(prune, dict) else prune * s


def deep_compress(
    model: nn.Module, cfg: DCConfig, train: Callable[[nn.Module, int, str], None]
) -> tuple[nn.Module, dict[str, Quantized]]:
    """Prune (+ retrain) -> share weights by k-means (+ fine-tune centroids) on a copy of ``model``.

    ``train(model, epochs, phase)`` trains in place (the caller's trainer); the parametrisations keep
    pruned weights at zero and tie shared weights during it. Returns the baked model (plain tensors)
    and its :class:`Quantized` layers for :func:`.serialize.save_model`.
    """
    model = copy.deepcopy(model)
    steps = max(1, int(cfg.prune_steps))
    for step in range(1, steps + 1):
        apply_masks(model, magnitude_masks(model, _scaled(cfg.prune, step / steps)))
        if cfg.retrain_epochs > 0:
            train(model, int(cfg.retrain_epochs), f"dc_prune{step}")
        bake(model)
    quantize(model, cfg.bits, cfg.kmeans_iters)
    if cfg.finetune_epochs > 0:
        train(model, int(cfg.finetune_epochs), "dc_quantize")
    quantized = export_quantized(model)
    bake(model)
    return model, quantized
