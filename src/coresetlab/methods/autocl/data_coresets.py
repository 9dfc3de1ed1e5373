"""Data coresets for linear and logistic regression (AutoCL §4.1, Figures 1 and 2).

"A Unified Approach to Coreset Learning" (Maalouf, Eini, Mussay, Feldman, Osadchy; "AutoCL" here)
learns an (ε, μ)-coreset for the *average* loss over a distribution of queries (Definition 5): a
small weighted set (C, u) such that ``E_q |1 - f(C, u, q) / f(P, w, q)| <= ε``. Algorithm 2 fits
(C, u) by minibatch gradient descent on training queries:

    | 1 - f(C, u, q) / f(P, w, q) |  +  λ | Σ w - Σ u |.

This module holds the pure math, batched so that a whole experiment is a few tensor programs:

* losses on *batches of weighted sets and batches of queries* at once (:class:`LinearRegressionLoss`,
  :class:`LogisticRegressionLoss`): ``x (B, m, d), y (B, m), w (B, m), q (B, Q, d+1) -> (B, Q)``;
  a query is ``q = (a, b)`` (weights and intercept);
* their exact minimisers (closed-form weighted least squares; batched damped Newton for the
  ℓ2-regularised logistic loss, which agrees with scikit-learn's ``newton-cg``);
* sensitivity bounds: leverage scores of ``[X | 1 | y]`` for least squares (Maalouf, Statman &
  Feldman, KDD 2020, "Tight sensitivity bounds for smaller coresets") and the near-convex bound for
  logistic regression (Tukan, Maalouf & Feldman, NeurIPS 2020, "Coresets for near-convex
  functions"), see :func:`near_convex_logistic_sensitivity`;
* i.i.d. sensitivity sampling with weights ``Σs / (m s(p))`` (:func:`sample_coresets`);
* the learned coreset trainer, all repetitions and all sizes of an experiment in one padded batch
  (:func:`train_learned_coresets`);
* the measures Err_opt and Err_avg (:func:`err_opt`, :func:`err_avg`).

Padding convention: a batch of coresets of different sizes is stored as ``(B, M, ·)`` tensors with
``M = max size``; padded points carry weight 0 and therefore contribute exactly nothing (and receive
zero gradient, so Adam leaves them untouched).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from coresetlab.errors import ConfigError

# the losses and batches live in two modules of their own; re-exported here for one import path
from coresetlab.methods.autocl.data_losses import (  # noqa: F401
    DTYPES,
    DataLoss,
    LinearRegressionLoss,
    LogisticRegressionLoss,
    Progress,
    derive_seed,
    generator,
    leverage_scores,
    leverage_sensitivity,
    near_convex_logistic_sensitivity,
    no_progress,
    sample_coresets,
    softplus_sum,
    with_intercept,
)
from coresetlab.methods.autocl.data_problems import (  # noqa: F401
    Buckets,
    CoresetBatch,
    DataProblem,
    batch_value,
    err_avg,
    err_opt,
    evaluate,
    size_buckets,
)
from coresetlab.methods.autocl.objective import loss_ratio_error

if TYPE_CHECKING:
    from coresetlab.methods.autocl.queries import QuerySet

log = logging.getLogger("coresetlab")


# ---------------------------------------------------------------------------------------------------
# methods (``coreset_method`` options of data-coreset experiments)
# ---------------------------------------------------------------------------------------------------


class DataCoresetMethod(ABC):
    """A way to build ``reps`` coresets of every size; instantiated from ``conf/coreset_method/*_data.yaml``."""

    name: str
    reps: int

    @abstractmethod
    def build(
        self, problem: DataProblem, sizes: Sequence[int], seed: int, queries: QuerySet | None = None,
        progress: Progress = no_progress,
    ) -> CoresetBatch:
        """``len(sizes) * reps`` coresets, rows ordered by (size, rep)."""

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def _check_sizes(problem: DataProblem, sizes: Sequence[int]) -> None:
    bad = [m for m in sizes if not 0 < int(m) <= problem.n]
    if bad:
        raise ConfigError(f"coreset sizes {bad} are not in [1, n={problem.n}]")


class SamplingCoreset(DataCoresetMethod):
    """i.i.d. sampling baselines: ``bound=uniform`` (uniform sampling), ``leverage``, ``near_convex`` or
    ``auto`` (the loss's own bound: leverage for least squares, near-convex for logistic regression).

    A logistic coreset holding a single class (no minimiser) is redrawn.
    """

    BOUNDS = ("auto", "uniform", "leverage", "near_convex")

    def __init__(self, name: str = "sensitivity", bound: str = "auto", reps: int = 100, max_redraws: int = 1000) -> None:
        if bound not in self.BOUNDS:
            raise ConfigError(f"{name}: unknown sensitivity bound '{bound}'; choose one of {', '.join(self.BOUNDS)}")
        self.name, self.bound, self.reps, self.max_redraws = name, bound, int(reps), int(max_redraws)

    def build(self, problem, sizes, seed, queries=None, progress=no_progress) -> CoresetBatch:
        _check_sizes(problem, sizes)
        s = problem.loss.sensitivity(problem.x, problem.y, problem.w, self.bound)
        parts = []
        for m in sizes:
            gen = generator(seed, self.name, int(m))
            idx, u = sample_coresets(s, problem.w, int(m), self.reps, gen)
            for _ in range(self.max_redraws):
                bad = ~problem.loss.valid(problem.y[idx], u)
                if not bool(bad.any()):
                    break
                idx[bad], u[bad] = sample_coresets(s, problem.w, int(m), int(bad.sum()), gen)
            else:
                raise ConfigError(f"{self.name}: could not draw a size-{m} coreset holding both classes "
                                  f"in {self.max_redraws} tries; use larger sizes")
            parts += [(int(m), r, problem.x[idx[r]], problem.y[idx[r]], u[r]) for r in range(self.reps)]
        batch = CoresetBatch.pack(self.name, parts)
        bound = problem.loss.default_bound if self.bound == "auto" else self.bound
        batch.info = {"bound": bound, "total_sensitivity": float(s.sum())}
        return batch


class LearnedCoreset(DataCoresetMethod):
    """AutoCL's learned coreset (Definition 5, Algorithm 2); see :func:`train_learned_coresets`.

    ``reps`` repetitions per size; the initial coreset is a uniform random subset of the rows (without
    replacement) with weights ``Σw / m`` (redrawn if it holds a single class, for logistic regression).
    """

    def __init__(
        self, name: str = "learned", reps: int = 10, epochs: int = 10, lr: float = 0.01,
        queries_per_step: int = 25, lam: float = 1.0, learn_weights: bool = True, learn_targets: bool = True,
        clamp_weights: bool = True, dtype: str = "float64",
    ) -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"learned coreset: dtype must be one of {list(DTYPES)}, got {dtype}")
        self.name, self.reps, self.epochs, self.lr = name, int(reps), int(epochs), float(lr)
        self.queries_per_step, self.lam = int(queries_per_step), float(lam)
        self.learn_weights, self.learn_targets = bool(learn_weights), bool(learn_targets)
        self.clamp_weights, self.dtype = bool(clamp_weights), dtype

    def build(self, problem, sizes, seed, queries=None, progress=no_progress) -> CoresetBatch:
        if queries is None:
            raise ValueError("the learned coreset needs a query set")
        _check_sizes(problem, sizes)
        gens, parts = [], []
        for m in sizes:
            for r in range(self.reps):
                gen = generator(seed, self.name, int(m), r)
                for _ in range(1000):
                    idx = torch.randperm(problem.n, generator=gen)[: int(m)]
                    u = torch.full((int(m),), float(problem.w.sum()) / int(m), dtype=problem.x.dtype)
                    if bool(problem.loss.valid(problem.y[idx], u)):
                        break
                else:
                    raise ConfigError(f"learned coreset: no size-{m} subset with both classes found")
                parts.append((int(m), r, problem.x[idx], problem.y[idx], u))
                gens.append(gen)
        init = CoresetBatch.pack(self.name, parts)
        dt = DTYPES[self.dtype]
        return train_learned_coresets(
            problem.loss, init.to(dt), float(problem.w.sum()),
            queries.train.to(dt), queries.f_train.to(dt), queries.val.to(dt), queries.f_val.to(dt),
            generators=gens, epochs=self.epochs, lr=self.lr, queries_per_step=self.queries_per_step,
            lam=self.lam, learn_weights=self.learn_weights, learn_targets=self.learn_targets,
            clamp_weights=self.clamp_weights, progress=progress,
        )


def train_learned_coresets(
    loss: DataLoss, init: CoresetBatch, sum_w: float, train_q: Tensor, train_f: Tensor, val_q: Tensor,
    val_f: Tensor, *, generators: Sequence[torch.Generator], epochs: int, lr: float, queries_per_step: int,
    lam: float, learn_weights: bool, learn_targets: bool, clamp_weights: bool = True,
    progress: Progress = no_progress,
) -> CoresetBatch:
    """Algorithm 2 of AutoCL for a whole batch of coresets at once (one Adam over ``(B, M, ·)`` tensors).

    Every coreset ``b`` walks the training queries in its own random order (``generators[b]``), in
    minibatches of ``queries_per_step``; its objective is
    ``mean_q |1 − f(C_b, u_b, q) / f(P, w, q)| + lam |Σw − Σu_b|`` (the full-data losses ``train_f`` are
    query constants). Coreset points ``x`` are always learned, targets ``y`` if ``learn_targets``
    (labels of a classification loss stay ±1), weights ``u`` if ``learn_weights`` (clamped ≥ 0
    after each step if ``clamp_weights``). The objectives are summed over the batch: Adam's updates
    are per coordinate, so each coreset trains exactly as it would alone.

    After every epoch the validation Err_avg is computed; each coreset keeps its best epoch
    (epoch 0 = the initialisation). ``info`` holds ``best_epoch``, ``best_val_err`` and the per-epoch
    mean validation error.
    """
    mask = (torch.arange(init.x.shape[1]).unsqueeze(0) < init.sizes.unsqueeze(1)).to(init.u.dtype)  # 0 = padding
    x = init.x.clone().requires_grad_(True)
    y = init.y.clone().requires_grad_(learn_targets)
    u = init.u.clone().requires_grad_(learn_weights)
    params = [p for p in (x, y, u) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    n_b, n_q = len(init), train_q.shape[0]
    steps = math.ceil(n_q / queries_per_step)

    buckets = size_buckets(init.sizes)

    def val_error() -> Tensor:
        f_c = evaluate(loss, x.detach(), y.detach(), (u * mask).detach(), val_q, buckets)
        return loss_ratio_error(f_c, val_f).mean(-1)

    best_val = val_error()
    best = [t.detach().clone() for t in (x, y, u)]
    best_epoch = torch.zeros(n_b, dtype=torch.long)
    history = [float(best_val.mean())]
    for epoch in progress(range(1, epochs + 1), "learned coresets (epochs)"):
        order = torch.stack([torch.randperm(n_q, generator=g) for g in generators])  # (B, Q_train)
        for step in range(steps):
            idx = order[:, step * queries_per_step: (step + 1) * queries_per_step]
            f_c = batch_value(loss, x, y, u * mask, train_q[idx], buckets)  # (B, batch)
            obj = loss_ratio_error(f_c, train_f[idx]).mean(-1)
            if lam:
                obj = obj + lam * (sum_w - (u * mask).sum(-1)).abs()
            opt.zero_grad(set_to_none=True)
            obj.sum().backward()
            opt.step()
            if learn_weights and clamp_weights:
                with torch.no_grad():
                    u.clamp_(min=0.0)
        val = val_error()
        better = val < best_val
        with torch.no_grad():
            for keep, cur in zip(best, (x, y, u)):
                keep.copy_(torch.where(better.view(-1, *[1] * (cur.dim() - 1)), cur, keep))
        best_val = torch.where(better, val, best_val)
        best_epoch = torch.where(better, torch.full_like(best_epoch, epoch), best_epoch)
        history.append(float(val.mean()))
        if epoch % max(1, epochs // 10) == 0 or epoch == epochs:
            log.info("learned coresets: epoch %d/%d, mean validation Err_avg %.3g (best %.3g)", epoch, epochs,
                     history[-1], float(best_val.mean()))
    bx, by, bu = best
    out = CoresetBatch(init.method, bx, by, bu * mask, init.sizes, init.reps)
    out.info = {"best_epoch": best_epoch.tolist(), "best_val_err": best_val.tolist(), "val_history": history,
                "steps_per_epoch": steps}
    return out
