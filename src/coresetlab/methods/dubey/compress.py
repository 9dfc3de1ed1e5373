"""Layer-wise coreset compression with a data-driven rank search (Dubey et al. 2018, §3.3–3.6).

Each conv/linear layer ``k`` (from the shallowest, §3.6; or by descending parameter count like AP) is replaced by a rank
``N̂_k`` factorisation (:class:`.layers.Factorized`) from Coreset-K, -S, -A or the SVD baseline.
``N̂_k`` is the smallest rank keeping the accuracy within ``tol`` of the pre-coreset network, found by
binary search on a random fraction ``s`` of the training data (paper: s = 0.005, tol = 0.5 %); earlier
layers stay compressed while later ones are searched, so the whole network meets the bound. Ranks are
searched up to the break-even rank (beyond it a factorisation has more parameters than the layer);
a layer that cannot meet the bound there stays dense.

Coreset-S additionally drops the filters whose column of ``D`` is all zero — structurally, with the
matching input channels of the next layer (exact: those filters output zero).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from coresetlab.methods.dubey.coreset import (
    coreset_a,
    coreset_k,
    coreset_s,
    filter_importance,
)
from coresetlab.methods.dubey.evaluation import SuffixEvaluator, accuracy, layer_output_stat, swapped
from coresetlab.methods.dubey.layers import (
    Compressible,
    break_even_rank,
    channel_pairs,
    compressible_layers,
    factorize,
    get_module,
    keep_batchnorm,
    keep_inputs,
    keep_outputs,
    n_params,
    prune_outputs,
    replace_module,
    weight_matrix,
)
from coresetlab.methods.dubey.pruning import layer_order
from coresetlab.methods.dubey.search import smallest_passing

log = logging.getLogger("coresetlab")

KINDS = ("k", "s", "a", "svd")


@dataclass
class CoresetConfig:
    """Settings of one coreset kind (supplement Table 1: Coreset-S λ = 1.5 for LeNet-5)."""

    kind: str = "k"
    alpha: float = 1.5  # Coreset-S sparsity λ (scikit-learn SparsePCA ``alpha``)
    alpha_grid: list[float] | None = None  # Coreset-S: try each λ, keep the smallest passing layer
    ridge_alpha: float = 0.01
    spca_max_iter: int = 1000
    spca_tol: float = 1e-6
    spca_method: str = "cd"
    em_max_iter: int = 100  # Coreset-A EM (Srebro & Jaakkola 2003)
    em_rel_tol: float = 1e-6
    drop_zero_filters: bool = True  # Coreset-S: remove filters with an all-zero column of D
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"coreset kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class LayerOutcome:
    name: str
    kind: str
    filters_in: int  # filters entering the coreset stage
    filters_out: int  # filters after Coreset-S dropping (= filters_in otherwise)
    d: int
    rank: int | None  # None: left dense
    params_before: int
    params_after: int
    alpha: float | None = None
    trace: list[tuple[int, bool]] = field(default_factory=list)


@dataclass
class Candidate:
    """A factorised replacement of one layer and, for Coreset-S, the filters it keeps."""

    module: nn.Module
    keep: torch.Tensor | None  # surviving filters (None: all)
    rank: int
    alpha: float | None = None


def _digest(t: torch.Tensor | None) -> str:
    if t is None:
        return "-"
    a = t.detach().contiguous().cpu()
    return f"{tuple(a.shape)}:{a.dtype}:{hashlib.sha1(a.numpy().tobytes()).hexdigest()}"


class FitCache:
    """Coreset-S / Coreset-A factor pairs ``(Ŵ, D)`` keyed by everything the fit reads: the kind, the weight
    matrix (its bytes), the importance, the rank, λ and the solver settings (:class:`CoresetConfig`).

    The fits are deterministic (seeded sparse PCA, EM from a fixed start), so a hit returns what a refit would
    compute. It saves refits when rank searches revisit an unchanged layer — supplement Fig. 7's tolerance
    sweep probes the same small ranks of the same layers at every tolerance. ``hits``/``misses`` count lookups.
    """

    def __init__(self) -> None:
        self._fits: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, fit: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        if key in self._fits:
            self.hits += 1
        else:
            self.misses += 1
            self._fits[key] = tuple(t.detach().clone() for t in fit())  # type: ignore[assignment]
        w_hat, d = self._fits[key]
        return w_hat.clone(), d.clone()


def factor_layer(
    layer: Compressible, cfg: CoresetConfig, rank: int, importance: torch.Tensor | None = None,
    alpha: float | None = None, memo: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    fit_cache: FitCache | None = None,
) -> Candidate:
    """The rank-``rank`` coreset replacement of ``layer`` for ``cfg.kind``.

    ``memo`` (one dict per layer, e.g. across a rank search): Coreset-K and SVD keep the full-rank factors
    there and truncate them for every rank — the same leading singular vectors :func:`.coreset.coreset_k`
    computes for each rank, with one decomposition per layer instead of one per rank tried.
    ``fit_cache`` (:class:`FitCache`, e.g. one per run): Coreset-S / -A fits reused across rank searches.
    """
    rank = min(rank, min(weight_matrix(layer).shape))

    def leading(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if memo is None:
            return coreset_k(w, rank)
        if cfg.kind not in memo:
            memo[cfg.kind] = coreset_k(w, min(w.shape))
        w_full, d_full = memo[cfg.kind]
        return w_full[:, :rank].contiguous(), d_full[:rank].contiguous()

    if cfg.kind == "svd":
        w = weight_matrix(layer, with_bias=False)
        w_hat, d = leading(w)
        bias = layer.bias.detach() if layer.bias is not None else None
        return Candidate(factorize(layer, w_hat, d, bias=bias), None, rank)
    w = weight_matrix(layer)
    if cfg.kind == "k":
        w_hat, d = leading(w)
    elif cfg.kind == "a":
        if importance is None:
            raise ValueError("Coreset-A needs the filter importance (Eq. 6)")

        def fit_a() -> tuple[torch.Tensor, torch.Tensor]:
            em = coreset_a(w, importance, rank, cfg.em_max_iter, cfg.em_rel_tol)
            return em.w_hat, em.d

        key = ("a", _digest(w), _digest(importance), rank, cfg.em_max_iter, cfg.em_rel_tol)
        w_hat, d = fit_cache.get(key, fit_a) if fit_cache is not None else fit_a()
    else:
        alpha = cfg.alpha if alpha is None else alpha

        def fit_s() -> tuple[torch.Tensor, torch.Tensor]:
            return coreset_s(w, rank, alpha, cfg.ridge_alpha, cfg.spca_max_iter, cfg.spca_tol, cfg.spca_method,
                             cfg.seed)

        key = ("s", _digest(w), rank, float(alpha), cfg.ridge_alpha, cfg.spca_max_iter, cfg.spca_tol,
               cfg.spca_method, cfg.seed)
        w_hat, d = fit_cache.get(key, fit_s) if fit_cache is not None else fit_s()
        if d.shape[0] == 0:  # everything zeroed: keep one (zero) component so the layer stays well formed
            w_hat, d = torch.zeros(w.shape[0], 1, dtype=w.dtype), torch.zeros(1, w.shape[1], dtype=w.dtype)
        keep = torch.nonzero((d != 0).any(0)).flatten() if cfg.drop_zero_filters else None
        return Candidate(factorize(layer, w_hat, d), keep, d.shape[0], alpha)
    return Candidate(factorize(layer, w_hat, d), None, rank)


def _replacements(
    model: nn.Module, name: str, cand: Candidate, pairs: dict[str, tuple[str, list[str], int]]
) -> dict[str, nn.Module]:
    """Modules to swap in for ``cand``: the factorised layer, and for dropped filters the next layer too."""
    n = cand.module.out_channels
    keep = cand.keep
    if keep is None or name not in pairs or len(keep) in (0, n):
        return {name: cand.module}
    consumer, bns, spatial = pairs[name]
    repl = {name: keep_outputs(cand.module, keep), consumer: keep_inputs(get_module(model, consumer), keep, spatial)}
    repl.update({bn: keep_batchnorm(get_module(model, bn), keep) for bn in bns})
    return repl


def _apply(model: nn.Module, name: str, cand: Candidate, pairs: dict[str, tuple[str, list[str], int]]) -> None:
    replace_module(model, name, cand.module)
    _drop(model, name, cand, pairs)


def _drop(model: nn.Module, name: str, cand: Candidate, pairs: dict[str, tuple[str, list[str], int]]) -> None:
    """Structurally remove the filters Coreset-S zeroed (and the next layer's matching inputs)."""
    keep = cand.keep
    if keep is not None and name in pairs and 0 < len(keep) < cand.module.out_channels:
        prune_outputs(model, pairs[name], name, keep)


def _importance(model: nn.Module, name: str, x: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
    if x is None:
        return None
    return filter_importance(layer_output_stat(model, name, x, "fro", batch_size))


def _search_layer(
    model: nn.Module, name: str, cfg: CoresetConfig, ev: SuffixEvaluator, threshold: float,
    importance: torch.Tensor | None, search: str, fit_cache: FitCache | None = None,
) -> tuple[Candidate | None, int, list[tuple[int, bool]]]:
    """Smallest-rank candidate for layer ``name`` of ``model`` whose accuracy (on ``ev``) is >= ``threshold``.

    Coreset-S with ``alpha_grid`` searches each λ and keeps the candidate that removes the most
    parameters (counting the next layer's dropped inputs). Returns ``(candidate or None, r_max, trace)``.
    """
    layer = get_module(model, name)
    pairs = channel_pairs(model)
    d_dim, n = weight_matrix(layer).shape
    r_max = min(break_even_rank(d_dim, n), d_dim, n)
    best: tuple[int, Candidate] | None = None
    trace: list[tuple[int, bool]] = []
    memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for alpha in (cfg.alpha_grid or [cfg.alpha]) if cfg.kind == "s" else [None]:
        cache: dict[int, Candidate] = {}

        def passes(r: int, alpha=alpha, cache=cache) -> bool:
            cache[r] = factor_layer(layer, cfg, r, importance, alpha, memo, fit_cache)
            with swapped(model, _replacements(model, name, cache[r], pairs)):
                return ev.accuracy(model) >= threshold

        r, tr = smallest_passing(1, r_max, passes, mode=search) if r_max >= 1 else (None, [])
        trace += tr
        if r is None:
            continue
        repl = _replacements(model, name, cache[r], pairs)
        delta = sum(n_params(m) - n_params(get_module(model, k)) for k, m in repl.items())
        if best is None or delta < best[0]:
            best = (delta, cache[r])
    return (best[1] if best else None), r_max, trace


def coreset_compress(
    model: nn.Module,
    cfg: CoresetConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    tol: float = 0.005,
    importance_x: torch.Tensor | None = None,
    order: str = "forward",
    layers: Iterable[str] | None = None,
    batch_size: int = 2000,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
    search: str = "exponential",
    budget: str = "cumulative",
    fit_cache: FitCache | None = None,
) -> tuple[nn.Module, list[LayerOutcome], dict[str, Any]]:
    """Compress every conv/linear layer of a copy of ``model`` with the smallest passing rank (§3.6).

    ``(x, y)`` is the search subset (a fraction ``s`` of the training data); ``importance_x`` the data
    whose activations give Coreset-A's importance (Eq. 6); ``search`` is the rank search mode
    (:func:`.search.smallest_passing`). ``budget``: ``cumulative`` searches each layer with the layers
    before it already compressed, so the whole network stays within ``tol`` on ``(x, y)`` (like AP);
    ``independent`` searches each layer alone against the pre-coreset network (per-layer
    sensitivity) and then applies all of them (the final accuracy may fall further; it is reported).
    ``fit_cache``: reuse Coreset-S / -A fits of earlier searches (:class:`FitCache`; same result).
    Returns ``(model, per-layer outcomes, info)``.
    """
    if budget not in ("cumulative", "independent"):
        raise ValueError(f"budget must be 'cumulative' or 'independent', got {budget!r}")
    work = copy.deepcopy(model).eval()
    out = work if budget == "cumulative" else copy.deepcopy(model).eval()
    if cfg.kind == "a" and importance_x is None:
        importance_x = x
    ref = accuracy(work, x, y, batch_size)
    names = [n for n in compressible_layers(work) if layers is None or n in set(layers)]
    outcomes: list[LayerOutcome] = []
    chosen: list[tuple[str, Candidate]] = []
    todo = layer_order(work, names, order)
    for name in progress(todo) if progress else todo:
        layer = get_module(work, name)
        d_dim, n = weight_matrix(layer).shape
        before = n_params(layer)
        imp = _importance(work, name, importance_x, batch_size) if cfg.kind == "a" else None
        ev = SuffixEvaluator(work, x, y, name, batch_size)
        cand, r_max, trace = _search_layer(work, name, cfg, ev, ref - tol, imp, search, fit_cache)
        if cand is None:
            outcomes.append(LayerOutcome(name, cfg.kind, n, n, d_dim, None, before, before, None, trace))
            log.info("coreset-%s %s: no rank <= %d within tol; left dense", cfg.kind, name, r_max)
            continue
        if budget == "cumulative":
            _apply(work, name, cand, channel_pairs(work))
        chosen.append((name, cand))
        kept = len(cand.keep) if cand.keep is not None and 0 < len(cand.keep) < n else n
        outcomes.append(LayerOutcome(name, cfg.kind, n, kept, d_dim, cand.rank, before, n_params(cand.module),
                                     cand.alpha, trace))
        log.info("coreset-%s %s: rank %d (d=%d, N=%d -> %d)", cfg.kind, name, cand.rank, d_dim, n, kept)
    if budget == "independent":  # factorise everything, then drop Coreset-S's zero filters
        for name, cand in chosen:
            replace_module(out, name, cand.module)
        for name, cand in chosen:
            _drop(out, name, cand, channel_pairs(out))
    for o in outcomes:  # final sizes (dropped filters shrink a layer and its consumer's inputs)
        o.params_after = n_params(get_module(out, o.name))
    info = {"budget": budget, "ref_acc_search": ref, "acc_search": accuracy(out, x, y, batch_size),
            "layers": [asdict(o) for o in outcomes]}
    return out, outcomes, info


def uniform_compress(
    model: nn.Module, cfg: CoresetConfig, fraction: float, importance_x: torch.Tensor | None = None,
    batch_size: int = 2000,
) -> nn.Module:
    """Every layer factorised at the rank retaining about ``fraction`` of its parameters,
    ``r = max(1, ⌊fraction · dN / (d + N)⌋)`` (no search; supplement Fig. 7 sweeps ``fraction``)."""
    if not 0 < fraction:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    model = copy.deepcopy(model).eval()
    for name in compressible_layers(model):
        layer = get_module(model, name)
        d_dim, n = weight_matrix(layer).shape
        rank = max(1, math.floor(fraction * d_dim * n / (d_dim + n)))
        if rank > min(d_dim, n) or rank > break_even_rank(d_dim, n):
            continue  # the factorisation would not be smaller
        imp = _importance(model, name, importance_x, batch_size) if cfg.kind == "a" else None
        _apply(model, name, factor_layer(layer, cfg, rank, imp), channel_pairs(model))
    return model
