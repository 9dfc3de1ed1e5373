"""Query sets for data-coreset learning (AutoCL §4.1): models sampled from optimiser trajectories.

The "training data" of coreset learning are queries -- candidate models ``q = (a, b)`` -- sampled
from Adam trajectories on the *full* data (AutoCL's recipe): ``starts`` random initialisations
``q ~ N(0, init_std² I)``; Adam (``lr``) on minibatches of ``batch_size`` rows for ``epochs`` epochs,
minimising the unbiased minibatch estimate ``(n / |batch|) Σ_batch w f(p, q)`` (+ the loss's
regulariser) of ``f(P, w, q)``; a snapshot after every step, of which a random fraction ``keep`` of
every epoch's snapshots is kept; the pool is shuffled and split ``train / val / test``.

All starts run as one batched program (one Adam over a ``(starts, d+1)`` tensor -- Adam is
per-coordinate, so this is exactly ``starts`` independent runs), each start with its own row order.
Each epoch's minibatches are summarised up front (``loss.summarize``: the second-moment matrix of
every minibatch for least squares, so a step costs O(d²) instead of O(batch · d)).
If the pool would be smaller than the split (small data: e.g. 11 batches per epoch on the 20,640-row
stand-in instead of 218 on 3D Road), more starts are added -- the smallest number that fills the
split -- and the number used is recorded in ``info``.

The full-data losses ``f(P, w, q)`` of all queries are computed once (float64) and stored with the
queries. Query sets are cached on disk under ``<cache>/data_coreset_queries/``, keyed by a hash of
the data content, the loss and the recipe, and reused across coreset sizes, seeds and methods.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from coresetlab.errors import ConfigError
from coresetlab.methods.autocl.data_losses import Progress, generator, no_progress
from coresetlab.methods.autocl.data_problems import DataProblem, evaluate

log = logging.getLogger("coresetlab")

CACHE_SUBDIR = "data_coreset_queries"
CACHE_VERSION = 1


@dataclass(frozen=True)
class QueryRecipe:
    """How queries are sampled (defaults: AutoCL's linear-regression recipe)."""

    starts: int = 20
    lr: float = 1e-4
    batch_size: int = 2000
    epochs: int = 80
    keep: float = 0.5
    split: tuple[int, int, int] = (20000, 2000, 2000)
    init_std: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        split = tuple(int(s) for s in self.split)
        object.__setattr__(self, "split", split)
        if len(split) != 3 or min(split) <= 0:
            raise ConfigError(f"queries.split must be three positive sizes (train, val, test), got {list(split)}")
        if not 0 < self.keep <= 1:
            raise ConfigError(f"queries.keep must be in (0, 1], got {self.keep}")
        if min(self.starts, self.batch_size, self.epochs) <= 0:
            raise ConfigError("queries.starts, queries.batch_size and queries.epochs must be positive")


@dataclass
class QuerySet:
    """Train / validation / test queries ``(·, d+1)`` and their full-data losses ``f(P, w, q)``."""

    train: Tensor
    val: Tensor
    test: Tensor
    f_train: Tensor
    f_val: Tensor
    f_test: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def trajectory_plan(n: int, recipe: QueryRecipe) -> dict[str, int]:
    """Steps per epoch, snapshots kept per epoch, and the number of starts needed to fill the split."""
    steps = math.ceil(n / recipe.batch_size)
    kept = max(1, int(recipe.keep * steps + 0.5))  # rounded half up
    per_start = kept * recipe.epochs
    needed = math.ceil(sum(recipe.split) / per_start)
    return {"steps_per_epoch": steps, "kept_per_epoch": kept, "per_start": per_start,
            "starts": max(recipe.starts, needed)}


def adam_trajectory_queries(
    problem: DataProblem, recipe: QueryRecipe, progress: Progress = no_progress
) -> tuple[Tensor, dict[str, Any]]:
    """The pool of kept snapshots ``(starts * epochs * kept_per_epoch, d+1)`` and a plan/info dict."""
    plan = trajectory_plan(problem.n, recipe)
    starts, steps, kept = plan["starts"], plan["steps_per_epoch"], plan["kept_per_epoch"]
    k = problem.loss.n_params(problem.x.shape[1])
    gen = generator("queries", recipe.seed)
    q = (recipe.init_std * torch.randn(starts, k, generator=gen, dtype=problem.x.dtype)).requires_grad_(True)
    opt = torch.optim.Adam([q], lr=recipe.lr)
    snaps = torch.empty(starts, recipe.epochs, steps, k, dtype=problem.x.dtype)
    n, bs = problem.n, recipe.batch_size
    # every epoch's minibatches as (steps, bs) index blocks; the last one is padded with weight-0 rows
    filled = torch.zeros(steps * bs, dtype=problem.x.dtype)
    filled[:n] = 1.0
    filled = filled.view(steps, bs)
    scale = filled * (n / filled.sum(-1, keepdim=True))  # unbiased minibatch estimates of f(P, w, q)
    for epoch in progress(range(recipe.epochs), "query trajectories (epochs)"):
        batches = []
        for _ in range(starts):  # each start has its own row order; summaries of all its batches at once
            idx = torch.randperm(n, generator=gen)
            idx = torch.cat([idx, idx[: steps * bs - n]]).view(steps, bs)
            batches.append(problem.loss.summarize(problem.x[idx], problem.y[idx], problem.w[idx] * scale))
        summaries = tuple(torch.stack(parts) for parts in zip(*batches))  # (starts, steps, ...)
        for step in range(steps):
            f = problem.loss.value_of(tuple(t[:, step] for t in summaries), q.unsqueeze(1))
            opt.zero_grad(set_to_none=True)
            f.sum().backward()
            opt.step()
            snaps[:, epoch, step] = q.detach()
    pick = torch.rand(starts, recipe.epochs, steps, generator=gen).argsort(-1)[..., :kept]
    pool = snaps.gather(2, pick.unsqueeze(-1).expand(-1, -1, -1, k)).reshape(-1, k)
    if not bool(torch.isfinite(pool).all()):
        raise RuntimeError("query trajectories diverged (non-finite parameters); lower queries.lr")
    info = {**plan, "starts_requested": recipe.starts, "pool": len(pool), "snapshots": starts * recipe.epochs * steps}
    return pool, info


def make_query_set(problem: DataProblem, recipe: QueryRecipe, progress: Progress = no_progress) -> QuerySet:
    """Sample the pool (:func:`adam_trajectory_queries`), shuffle, split, and compute ``f(P, w, q)``."""
    t0 = time.perf_counter()
    pool, info = adam_trajectory_queries(problem, recipe, progress)
    perm = torch.randperm(len(pool), generator=generator("queries-split", recipe.seed))
    n_tr, n_va, n_te = recipe.split
    chosen = pool[perm[: n_tr + n_va + n_te]]
    f = evaluate(problem.loss, problem.x, problem.y, problem.w, chosen)
    if not bool((f > 0).all()):
        raise RuntimeError("a query has a non-positive full-data loss; the relative error is undefined")
    info.update(seconds=time.perf_counter() - t0, f_min=float(f.min()), f_max=float(f.max()))
    tr, va = slice(0, n_tr), slice(n_tr, n_tr + n_va)
    te = slice(n_tr + n_va, n_tr + n_va + n_te)
    return QuerySet(chosen[tr], chosen[va], chosen[te], f[tr], f[va], f[te], info)


def cache_key(data_key: str, problem: DataProblem, recipe: QueryRecipe) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "data": data_key, "n": problem.n, "loss": problem.loss.describe(),
                       "recipe": asdict(recipe), "dtype": str(problem.x.dtype)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_or_make_query_set(
    problem: DataProblem, recipe: QueryRecipe, cache_dir: Path | None, data_key: str,
    progress: Progress = no_progress,
) -> QuerySet:
    """:func:`make_query_set`, cached under ``cache_dir`` (``None``: no cache). ``info['cached']`` says
    whether the set came from the cache; ``info['cache_file']`` where it lives."""
    if cache_dir is None:
        qs = make_query_set(problem, recipe, progress)
        qs.info["cached"] = False
        return qs
    folder = Path(cache_dir) / CACHE_SUBDIR
    name = f"{data_key.split(':')[0]}_{problem.loss.name}_{cache_key(data_key, problem, recipe)}.pt"
    path = folder / name
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            qs = QuerySet(**{k: blob[k] for k in ("train", "val", "test", "f_train", "f_val", "f_test")},
                          info=dict(blob["info"]))
            qs.info.update(cached=True, cache_file=str(path))
            log.info("queries: loaded %s from the cache %s", qs.sizes(), path)
            return qs
        except Exception as e:  # a corrupt/foreign file: rebuild it
            log.warning("queries: ignoring unreadable cache file %s (%s)", path, e)
    qs = make_query_set(problem, recipe, progress)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"train": qs.train, "val": qs.val, "test": qs.test, "f_train": qs.f_train, "f_val": qs.f_val,
                    "f_test": qs.f_test, "info": qs.info}, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    qs.info.update(cached=False, cache_file=str(path))
    if qs.info["starts"] > recipe.starts:
        log.warning("queries: %d starts gave too few snapshots for the split %s; used %d starts",
                    recipe.starts, list(recipe.split), qs.info["starts"])
    log.info("queries: built %s in %.1fs -> %s", qs.sizes(), qs.info["seconds"], path)
    return qs
