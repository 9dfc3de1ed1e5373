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
from collections.abc import Callable, Iterable, Iterator
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
    """A scalar, or a dict keyed by layer name (exact or prefix, e.g. ``fc1`` covers both halves
    ``fc1.basis`` / ``fc1.mix`` of a factorised layer) or by kind ``conv`` / ``linear``.

    A layer the dict does not cover is an error (a schedule written for another network must not
    silently leave layers unpruned)."""
    if not isinstance(value, dict):
        return float(value)
    for key in sorted(value, key=len, reverse=True):
        if key not in ("conv", "linear") and (name == key or name.startswith(key + ".")):
            return float(value[key])
    if layer_kind(m) not in value:
        raise ValueError(f"layer '{name}' ({layer_kind(m)}) is not covered by {sorted(value)}: give its name, "
                         "a prefix of it, or its kind (conv / linear)")
    return float(value[layer_kind(m)])


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
    keep_scale: float = 1.0  # multiplies every layer's kept fraction 1 - prune (capped at 1): see effective_prune
    prune_steps: int = 1  # iterative pruning: the fraction ramps up linearly, retraining after each step
    retrain_epochs: int = 1
    bits: int | dict[str, int] = field(default_factory=lambda: {"conv": 8, "linear": 5})
    kmeans_iters: int = 50
    finetune_epochs: int = 1
    gap_bits: int | dict[str, int] = 5

    def __post_init__(self) -> None:
        if not float(self.keep_scale) > 0:
            raise ValueError(f"keep_scale must be > 0, got {self.keep_scale}")
        values = self.prune.values() if isinstance(self.prune, dict) else [self.prune]
        if any(not 0 <= float(v) < 1 for v in values):
            raise ValueError(f"prune fractions must lie in [0, 1), got {self.prune}")


def effective_prune(prune: float | dict[str, float], keep_scale: float) -> float | dict[str, float]:
    """Pruned fractions after scaling every kept fraction: ``p ↦ 1 − min(1, (1 − p) · keep_scale)``.

    ``keep_scale`` < 1 prunes more (Han et al.'s LeNet-5 rates at 0.5 keep half as many weights per layer),
    > 1 less; the layers keep their relative allocation."""
    def f(p: float) -> float:
        return 1.0 - min(1.0, (1.0 - float(p)) * float(keep_scale))

    return {k: f(v) for k, v in prune.items()} if isinstance(prune, dict) else f(prune)


def _scaled(prune: float | dict[str, float], s: float) -> float | dict[str, float]:
    return {k: v * s for k, v in prune.items()} if isinstance(prune, dict) else prune * s


def _share_and_finetune(
    model: nn.Module, cfg: DCConfig, epochs: int, train: Callable[[nn.Module, int, str], None], phase: str
) -> tuple[nn.Module, dict[str, Quantized]]:
    """k-means weight sharing of a copy of the pruned ``model`` + centroid fine-tuning (Han et al. 2016 §3)."""
    model = copy.deepcopy(model)
    quantize(model, cfg.bits, cfg.kmeans_iters)
    if epochs > 0:
        train(model, int(epochs), phase)
    quantized = export_quantized(model)
    bake(model)
    return model, quantized


def deep_compress_path(
    model: nn.Module, cfg: DCConfig, keep_scales: list[float], train: Callable[[nn.Module, int, str], None],
    retrain_epochs: int | None = None, finetune_epochs: int | None = None,
    finetune: Callable[[nn.Module, int, str], None] | None = None,
) -> Iterator[tuple[float, nn.Module, dict[str, Quantized]]]:
    """Deep Compression at several operating points of one schedule, as one iterative pruning chain.

    The points are ``effective_prune(cfg.prune, s)`` for ``s`` in ``keep_scales``, visited from the least
    to the most pruning (Han et al. 2015's iterative pruning: each step prunes the retrained survivors
    of the previous one further, so a pruned weight stays pruned). The first point ramps up in
    ``cfg.prune_steps`` steps of ``cfg.retrain_epochs`` retraining each (exactly :func:`deep_compress`);
    every later point is one more pruning step with ``retrain_epochs`` (default ``cfg.retrain_epochs``).
    At each point a copy is weight-shared by k-means and its centroids fine-tuned (``cfg.finetune_epochs``
    for the first point, ``finetune_epochs`` after). Yields ``(s, model, quantized)`` lazily, so the caller
    may stop the chain (and its retraining) early. ``finetune`` (default ``train``) trains the centroids: a
    centroid's gradient is the sum over the weights it shares (Han et al. 2016 Eq. 3), so its step is that many
    times a single weight's and may need its own, smaller learning rate.
    Cost: ``(prune_steps − 1)·R + n·(R + F)`` epochs for ``n`` points instead of ``n·(prune_steps·R + F)``
    for independent runs.
    """
    scales = sorted({float(s) for s in keep_scales}, reverse=True)
    if not scales or scales[-1] <= 0:
        raise ValueError(f"keep_scales must be a non-empty list of values > 0, got {keep_scales}")
    later_r = cfg.retrain_epochs if retrain_epochs is None else retrain_epochs
    later_f = cfg.finetune_epochs if finetune_epochs is None else finetune_epochs
    work = copy.deepcopy(model)
    for i, s in enumerate(scales):
        target = effective_prune(cfg.prune, s)
        steps = max(1, int(cfg.prune_steps)) if i == 0 else 1
        epochs = int(cfg.retrain_epochs) if i == 0 else int(later_r)
        tag = "" if i == 0 else f"_k{s:g}"
        for step in range(1, steps + 1):
            apply_masks(work, magnitude_masks(work, _scaled(target, step / steps)))
            if epochs > 0:
                train(work, epochs, f"dc_prune{step}{tag}")
            bake(work)
        out, quantized = _share_and_finetune(work, cfg, cfg.finetune_epochs if i == 0 else later_f,
                                             finetune or train, f"dc_quantize{tag}")
        yield s, out, quantized


def deep_compress(
    model: nn.Module, cfg: DCConfig, train: Callable[[nn.Module, int, str], None]
) -> tuple[nn.Module, dict[str, Quantized]]:
    """Prune (+ retrain) -> share weights by k-means (+ fine-tune centroids) on a copy of ``model``.

    ``train(model, epochs, phase)`` trains in place (the caller's trainer); the parametrisations keep
    pruned weights at zero and tie shared weights during it. The pruning fractions are
    ``effective_prune(cfg.prune, cfg.keep_scale)``, reached in ``cfg.prune_steps`` linear steps. Returns
    the baked model (plain tensors) and its :class:`Quantized` layers for :func:`.serialize.save_model`.
    """
    _, out, quantized = next(deep_compress_path(model, cfg, [cfg.keep_scale], train))
    return out, quantized


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm layer's running statistics on ``batches`` (a cumulative average, no gradient),
    leaving the learned scale and shift alone; returns the number of BN layers (0: nothing to do).

    Needed after Deep Compression's centroid fine-tuning of a BN network: every step moves all weights of a
    cluster at once, and the running averages (momentum 0.1) lag behind the weights they normalise — measured on
    the VGG-16-BN CIFAR proxy (fast profile): 59 % accuracy with batch statistics but 28 % in eval mode after
    20 centroid steps, 59 % again after this re-estimation. Not part of Han et al. (their nets have no BN)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was, momenta = model.training, [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the given batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was)
    return len(bns)


def select_point(val_errs: list[float], factors: list[float], bound: float) -> tuple[int, bool]:
    """The operating point chosen on validation: the largest compression factor among the points with
    validation error <= ``bound``; if none passes, the point of lowest validation error (flagged).
    Returns ``(index, passed)``. Ties in factor go to the lower validation error."""
    if not val_errs or len(val_errs) != len(factors):
        raise ValueError("select_point needs one validation error per factor, at least one point")
    ok = [i for i, e in enumerate(val_errs) if e <= bound]
    if ok:
        return max(ok, key=lambda i: (factors[i], -val_errs[i])), True
    return min(range(len(val_errs)), key=lambda i: (val_errs[i], -factors[i])), False
