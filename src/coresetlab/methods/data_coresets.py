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

import hashlib
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from coresetlab.errors import ConfigError
from coresetlab.methods.autocl import loss_ratio_error

if TYPE_CHECKING:
    from coresetlab.methods.queries import QuerySet

log = logging.getLogger("coresetlab")

Progress = Callable[[Iterable[Any], str], Iterable[Any]]

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def no_progress(it: Iterable[Any], desc: str) -> Iterable[Any]:
    return it


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from ``parts`` (run seed, method, size, rep): independent of the grid."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: Any) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def with_intercept(x: Tensor) -> Tensor:
    """``[x | 1]``: the design matrix of a query ``q = (a, b)`` (``x a + b = [x | 1] q``)."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


# ---------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------


class _SoftplusSum(torch.autograd.Function):
    """``out[..., j] = Σ_p u[..., p] softplus(zt[..., p, :] · q[..., j, :])`` with a lean backward.

    The backward never forms ``(..., m, Q)`` products elementwise: with ``s = σ(zt·q)`` saved from
    the forward pass, ``∂/∂zt_p = u_p Σ_j s_pj g_j q_j = u_p (s @ (g ⊙ q))_p`` is one batched matmul.
    This halves the passes over the ``m × Q`` terms, which dominate learned logistic coresets.
    """

    @staticmethod
    def forward(ctx, zt: Tensor, u: Tensor, q: Tensor) -> Tensor:  # type: ignore[override]
        m = zt @ q.transpose(-1, -2)  # (..., M, Q)
        soft = torch.nn.functional.softplus(m)
        out = (u.unsqueeze(-2) @ soft).squeeze(-2)
        need_zq = ctx.needs_input_grad[0] or ctx.needs_input_grad[2]
        ctx.save_for_backward(zt, u, q, torch.sigmoid(m) if need_zq else None,
                              soft if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        zt, u, q, sig, soft = ctx.saved_tensors
        gz = gu = gq = None
        if ctx.needs_input_grad[0]:
            gz = ((sig @ (g.unsqueeze(-1) * q)) * u.unsqueeze(-1)).sum_to_size(zt.shape)
        if ctx.needs_input_grad[1]:
            gu = (soft @ g.unsqueeze(-1)).squeeze(-1).sum_to_size(u.shape)
        if ctx.needs_input_grad[2]:
            gq = (((sig * u.unsqueeze(-1)).transpose(-1, -2) @ zt) * g.unsqueeze(-1)).sum_to_size(q.shape)
        return gz, gu, gq


def softplus_sum(zt: Tensor, u: Tensor, q: Tensor) -> Tensor:
    """``Σ_p u_p log(1 + exp(zt_p · q_j))`` for every query: ``zt (..., M, k), u (..., M), q (..., Q, k) -> (..., Q)``."""
    if torch.is_grad_enabled() and (zt.requires_grad or u.requires_grad or q.requires_grad):
        return _SoftplusSum.apply(zt, u, q)
    return (u.unsqueeze(-2) @ torch.nn.functional.softplus(zt @ q.transpose(-1, -2))).squeeze(-2)



class DataLoss(ABC):
    """A loss ``f(P, w, q) = Σ_p w(p) f(p, q) (+ a query-only regulariser)`` over weighted sets.

    All methods are batched: leading dimensions of ``x``/``y``/``w`` (sets) and of ``q`` (queries)
    broadcast against each other. ``q`` has ``d + 1`` entries: weights ``a`` and intercept ``b``.
    """

    name: str = "loss"
    task: str = "regression"
    default_bound: str = "leverage"
    # True when an evaluation materialises every (point, query) term: padded batches are then split by
    # coreset size and queries are chunked (logistic). False for a per-set summary (the linear moments).
    pairwise_cost: bool = False

    def n_params(self, d: int) -> int:
        return d + 1

    @abstractmethod
    def value(self, x: Tensor, y: Tensor, w: Tensor, q: Tensor) -> Tensor:
        """``f(P, w, q)`` for every query: ``x (..., m, d), y/w (..., m), q (..., Q, d+1) -> (..., Q)``."""

    @abstractmethod
    def minimize(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """``argmin_q f(P, w, q)`` for every set of the batch: ``-> (..., d+1)``."""

    def summarize(self, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, ...]:
        """What :meth:`value_of` needs of a (batch of) weighted set(s): by default the set itself."""
        return (x, y, w)

    def value_of(self, summary: tuple[Tensor, ...], q: Tensor) -> Tensor:
        """:meth:`value` from a :meth:`summarize` result (e.g. precomputed minibatch moments)."""
        return self.value(*summary, q)

    def sensitivity(self, x: Tensor, y: Tensor, w: Tensor, bound: str = "auto") -> Tensor:
        """Sensitivity upper bounds ``s(p)`` of the points of one set ``x (n, d)`` (``bound``: see subclasses)."""
        bound = self.default_bound if bound == "auto" else bound
        if bound == "uniform":
            return torch.ones_like(w)
        if bound == "leverage":
            return leverage_sensitivity(x, y, w)
        if bound == "near_convex":
            self._check_labels(y, "the near-convex logistic bound")
            return near_convex_logistic_sensitivity(x, y, w, reg=getattr(self, "reg", 1.0))
        raise ConfigError(f"unknown sensitivity bound '{bound}'; choose auto, uniform, leverage or near_convex")

    def check_data(self, y: Tensor) -> None:
        """Raise :class:`ConfigError` when ``y`` does not suit the loss (non-finite; non ±1 labels)."""
        if not bool(torch.isfinite(y).all()):
            raise ConfigError(f"the {self.name} loss needs finite targets")

    def valid(self, y: Tensor, w: Tensor) -> Tensor:
        """Per set (last dim = points): may the minimiser of this coreset exist? Default: always."""
        return torch.ones(y.shape[:-1], dtype=torch.bool, device=y.device)

    def _check_labels(self, y: Tensor, what: str) -> None:
        if not bool(((y == 1) | (y == -1)).all()):
            raise ConfigError(f"{what} needs labels in {{-1, +1}}; this data set has real-valued targets "
                              "(use the linear-regression loss, or a classification data set such as htru2)")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class LinearRegressionLoss(DataLoss):
    """``f_linear(P, w, q) = Σ_p w(p) (xᵀa + b − y)²`` (a sum, AutoCL §4.1).

    Evaluated through the weighted second-moment matrix ``G = Σ w z zᵀ`` of ``z = [x, 1, y]``:
    ``f = q̃ᵀ G q̃`` with ``q̃ = [a, b, −1]`` -- an exact identity that makes every evaluation O(d²)
    per query after one pass over the data (use float64 for large sets).
    """

    name = "linear"
    task = "regression"
    default_bound = "leverage"

    @staticmethod
    def moments(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """``G = Σ_p w(p) z_p z_pᵀ`` with ``z = [x, 1, y]``: ``(..., d+2, d+2)``."""
        z = torch.cat([with_intercept(x), y.unsqueeze(-1)], dim=-1)
        return (z * w.unsqueeze(-1)).transpose(-1, -2) @ z

    @staticmethod
    def quadratic(g: Tensor, q: Tensor) -> Tensor:
        """``q̃ᵀ G q̃`` for every query ``q (..., Q, d+1)`` (``q̃ = [q, −1]``)."""
        qt = torch.cat([q, -torch.ones_like(q[..., :1])], dim=-1)
        return ((qt @ g) * qt).sum(-1)

    def value(self, x: Tensor, y: Tensor, w: Tensor, q: Tensor) -> Tensor:
        return self.quadratic(self.moments(x, y, w), q)

    def summarize(self, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, ...]:
        return (self.moments(x, y, w),)

    def value_of(self, summary: tuple[Tensor, ...], q: Tensor) -> Tensor:
        return self.quadratic(summary[0], q)

    def minimize(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """Weighted least squares ``argmin_q Σ w (zᵀq − y)²`` by a (batched, rank-revealing) lstsq."""
        sw = w.clamp(min=0).sqrt().unsqueeze(-1)
        a = with_intercept(x) * sw
        b = y.unsqueeze(-1) * sw
        return torch.linalg.lstsq(a, b, driver="gelsd" if a.device.type == "cpu" else None).solution.squeeze(-1)


class LogisticRegressionLoss(DataLoss):
    """``f_logistic(P, w, q) = (reg/2)‖a‖² + Σ_p w(p) log(1 + exp(−y (xᵀa + b)))``, labels ``y ∈ {−1, +1}``.

    AutoCL §4.1 uses ``reg = 1``; the intercept ``b`` is not regularised.
    """

    name = "logistic"
    task = "classification"
    default_bound = "near_convex"
    pairwise_cost = True

    def __init__(self, reg: float = 1.0, newton_iters: int = 100, newton_tol: float = 1e-12) -> None:
        if reg <= 0:
            raise ConfigError(f"logistic loss: reg must be > 0 (the minimiser may not exist otherwise), got {reg}")
        self.reg, self.newton_iters, self.newton_tol = float(reg), int(newton_iters), float(newton_tol)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "reg": self.reg}

    def value(self, x: Tensor, y: Tensor, w: Tensor, q: Tensor) -> Tensor:
        zt = -y.unsqueeze(-1) * with_intercept(x)  # margin of p for q is -zt·q
        a = q[..., :-1]
        return softplus_sum(zt, w, q) + 0.5 * self.reg * (a * a).sum(-1)

    def check_data(self, y: Tensor) -> None:
        super().check_data(y)
        self._check_labels(y, "the logistic loss")

    def valid(self, y: Tensor, w: Tensor) -> Tensor:
        """Both classes carry weight (else the intercept runs off to infinity: no minimiser)."""
        pos = ((y > 0) & (w > 0)).any(-1)
        neg = ((y < 0) & (w > 0)).any(-1)
        return pos & neg

    def minimize(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """Batched damped Newton (Armijo backtracking) on the strictly convex objective, in float64."""
        dtype = x.dtype
        x, y, w = x.double(), y.double(), w.double()
        z = with_intercept(x)
        k = z.shape[-1]
        reg = torch.full((k,), self.reg, dtype=z.dtype)
        reg[-1] = 0.0
        q = torch.zeros(*z.shape[:-2], k, dtype=z.dtype)

        def objective(qq: Tensor) -> Tensor:
            t = (z @ qq.unsqueeze(-1)).squeeze(-1)
            return (w * torch.nn.functional.softplus(-y * t)).sum(-1) + 0.5 * (reg * qq * qq).sum(-1)

        obj = objective(q)
        eye = torch.eye(k, dtype=z.dtype)
        done = torch.zeros(obj.shape, dtype=torch.bool)
        for _ in range(self.newton_iters):
            t = (z @ q.unsqueeze(-1)).squeeze(-1)
            s = torch.sigmoid(-y * t)  # d/dt softplus(-y t) = -y s
            grad = reg * q - ((w * y * s).unsqueeze(-1) * z).sum(-2)
            h = w * s * (1.0 - s)
            hess = (z * h.unsqueeze(-1)).transpose(-1, -2) @ z + torch.diag_embed(reg) + 1e-12 * eye
            step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
            decrement = (grad * step).sum(-1)  # squared Newton decrement (>= 0)
            done = done | (decrement <= self.newton_tol * (1.0 + obj.abs()))
            if bool(done.all()):
                break
            alpha = torch.ones_like(obj)
            accepted = done.clone()
            for _ in range(30):  # Armijo backtracking, per set of the batch
                cand = q - alpha.unsqueeze(-1) * step
                cand_obj = objective(cand)
                ok = (~accepted) & (cand_obj <= obj - 1e-4 * alpha * decrement)
                q = torch.where(ok.unsqueeze(-1), cand, q)
                obj = torch.where(ok, cand_obj, obj)
                accepted = accepted | ok
                if bool(accepted.all()):
                    break
                alpha = torch.where(accepted, alpha, alpha * 0.5)
            done = done | ~accepted  # no decrease possible: at the optimum to machine precision
        return q.to(dtype)


# ---------------------------------------------------------------------------------------------------
# sensitivities and sampling
# ---------------------------------------------------------------------------------------------------


def leverage_scores(a: Tensor) -> Tensor:
    """Statistical leverage scores ``‖U_i‖²`` of the rows of ``a (n, k)``, U an orthonormal basis of
    its column space (rank-revealing SVD); they lie in [0, 1] and sum to ``rank(a)``."""
    u, s, _ = torch.linalg.svd(a.double(), full_matrices=False)
    tol = s.max() * max(a.shape) * torch.finfo(torch.float64).eps
    u = u[:, s > tol]
    return (u * u).sum(-1).to(a.dtype)


def leverage_sensitivity(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Sensitivity of the squared loss (Maalouf, Statman & Feldman, KDD 2020): the leverage scores of
    ``diag(√w) [X | 1 | y]`` -- for every query, ``w(p)(zᵀq̃)² <= ‖U_p‖² Σ w (zᵀq̃)²``; total = rank."""
    z = torch.cat([with_intercept(x), y.unsqueeze(-1)], dim=-1)
    return leverage_scores(z * w.clamp(min=0).sqrt().unsqueeze(-1))


def near_convex_logistic_sensitivity(x: Tensor, y: Tensor, w: Tensor, reg: float = 1.0) -> Tensor:
    """Sensitivity bound for ℓ2-regularised logistic regression of Tukan, Maalouf & Feldman (NeurIPS 2020,
    "Coresets for near-convex functions", logistic-regression instance of their framework), in the
    per-class form of the authors' implementation, for ``f = (reg/2)‖a‖² + Σ w log(1 + e^{−y(xᵀa+b)})``:

        s(p) = (32 / reg) · W_c · ( 2 w(p) / W_c + ‖U_c(p)‖² ),

    where ``c`` is the class of ``p``, ``W_c = Σ_{p' ∈ c} w(p')`` and ``U_c`` is an orthonormal basis of
    the column space of ``diag(√w) [X_c | 1]`` (the rows of class ``c``), i.e. ``‖U_c(p)‖²`` is the
    leverage score of ``p`` within its class. It mixes a uniform term (``64 w(p)/reg``) with the
    class-size-scaled leverage score. The constant 32/reg cancels in the sampling probabilities and
    weights, but is kept so that ``Σ s`` is the bound's total sensitivity.
    """
    s = torch.empty_like(w)
    z = with_intercept(x)
    for label in (-1.0, 1.0):
        idx = (y == label).nonzero().squeeze(-1)
        if idx.numel() == 0:
            continue
        wc = w[idx]
        total = wc.sum()
        lev = leverage_scores(z[idx] * wc.clamp(min=0).sqrt().unsqueeze(-1))
        s[idx] = (32.0 / reg) * total * (2.0 * wc / total + lev)
    return s


def sample_coresets(
    s: Tensor, w: Tensor, size: int, reps: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``reps`` i.i.d. sensitivity-sampling coresets of ``size`` points: ``(idx (reps, size), u (reps, size))``.

    Each point is drawn with probability ``s(p)/Σs`` (with replacement) and weighted
    ``w(p) Σs / (size · s(p))``, so ``E[Σ_j u_j f(p_j, q)] = Σ_p w(p) f(p, q)`` for every query.
    Uniform sampling is ``s ≡ 1`` (weights ``Σw/size``).
    """
    if bool((s < 0).any()) or not bool(torch.isfinite(s).all()) or float(s.sum()) <= 0:
        raise ValueError("sensitivities must be finite, non-negative and not all zero")
    total = s.sum()
    idx = torch.multinomial(s / total, size * reps, replacement=True, generator=gen).view(reps, size)
    return idx, w[idx] * total / (size * s[idx])


# ---------------------------------------------------------------------------------------------------
# batches of coresets
# ---------------------------------------------------------------------------------------------------


@dataclass
class DataProblem:
    """The input set P (``x (n, d)``, ``y (n,)``, weights ``w (n,)``) and its loss."""

    loss: DataLoss
    x: Tensor
    y: Tensor
    w: Tensor

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def from_arrays(cls, loss: DataLoss, x: Any, y: Any, dtype: torch.dtype = torch.float64) -> DataProblem:
        xt = torch.as_tensor(x, dtype=dtype)
        yt = torch.as_tensor(y, dtype=dtype)
        loss.check_data(yt)
        return cls(loss, xt, yt, torch.ones(len(yt), dtype=dtype))


@dataclass
class CoresetBatch:
    """Weighted coresets of possibly different sizes, padded to ``M = max size`` (padding: u = 0)."""

    method: str
    x: Tensor  # (B, M, d)
    y: Tensor  # (B, M)
    u: Tensor  # (B, M)
    sizes: Tensor  # (B,) long
    reps: Tensor  # (B,) long
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.sizes.numel())

    def to(self, dtype: torch.dtype) -> CoresetBatch:
        return CoresetBatch(self.method, self.x.to(dtype), self.y.to(dtype), self.u.to(dtype), self.sizes,
                            self.reps, self.info)

    @staticmethod
    def pack(method: str, parts: Sequence[tuple[int, int, Tensor, Tensor, Tensor]]) -> CoresetBatch:
        """From ``(size, rep, x (m, d), y (m,), u (m,))`` parts (``m`` may vary)."""
        big = max(p[2].shape[0] for p in parts)
        d = parts[0][2].shape[1]
        ref = parts[0][2]
        x = ref.new_zeros(len(parts), big, d)
        y = ref.new_zeros(len(parts), big)
        u = ref.new_zeros(len(parts), big)
        for i, (_, _, xi, yi, ui) in enumerate(parts):
            x[i, : len(xi)], y[i, : len(yi)], u[i, : len(ui)] = xi, yi, ui
        sizes = torch.tensor([p[0] for p in parts], dtype=torch.long)
        reps = torch.tensor([p[1] for p in parts], dtype=torch.long)
        return CoresetBatch(method, x, y, u, sizes, reps)


Buckets = list[tuple[slice, int]]


def size_buckets(sizes: Tensor) -> Buckets:
    """Contiguous runs of rows with equal size: ``[(rows, size), ...]`` (rows are ordered by size)."""
    out: Buckets = []
    values = sizes.tolist()
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out.append((slice(start, i), int(values[start])))
            start = i
    return out


def batch_value(loss: DataLoss, x: Tensor, y: Tensor, u: Tensor, q: Tensor, buckets: Buckets | None = None) -> Tensor:
    """``loss.value`` of a padded batch of coresets ``(B, M, ·)``; with ``buckets`` (and a loss whose cost
    grows with points × queries, ``loss.pairwise_cost``) each run of equal-size coresets is evaluated
    on its own points only, skipping the padding. ``q`` is shared ``(Q, k)`` or per coreset ``(B, Q, k)``."""
    if not buckets or not loss.pairwise_cost or len(buckets) == 1:
        return loss.value(x, y, u, q)
    per_set = q.dim() == x.dim()
    return torch.cat([loss.value(x[r, :m], y[r, :m], u[r, :m], q[r] if per_set else q) for r, m in buckets])


def evaluate(
    loss: DataLoss, x: Tensor, y: Tensor, w: Tensor, q: Tensor, buckets: Buckets | None = None,
    max_elems: int = 1 << 23,
) -> Tensor:
    """:func:`batch_value` without gradients; for a ``pairwise_cost`` loss chunked over the queries so that
    at most ``max_elems`` point×query terms are materialised at once (``x (..., m, d)``, ``q (..., Q, k)`` -> ``(..., Q)``)."""
    chunk = max(1, max_elems // max(1, math.prod(x.shape[:-1])))
    with torch.no_grad():
        if q.shape[-2] <= chunk or not loss.pairwise_cost:
            return batch_value(loss, x, y, w, q, buckets)
        return torch.cat([batch_value(loss, x, y, w, q[..., i: i + chunk, :], buckets)
                          for i in range(0, q.shape[-2], chunk)], -1)


# ---------------------------------------------------------------------------------------------------
# measures
# ---------------------------------------------------------------------------------------------------


def err_avg(loss: DataLoss, batch: CoresetBatch, queries: Tensor, f_full: Tensor) -> Tensor:
    """Err_avg = mean over the (test) queries of ``|1 − f(C, u, q) / f(P, w, q)|`` for every coreset: ``(B,)``.

    ``f_full`` holds ``f(P, w, q)`` for the same queries (query constants, computed once).
    """
    f_c = evaluate(loss, batch.x, batch.y, batch.u, queries.to(batch.x.dtype), size_buckets(batch.sizes))
    return loss_ratio_error(f_c, f_full.to(f_c.dtype)).mean(-1)


def err_opt(loss: DataLoss, batch: CoresetBatch, problem: DataProblem, f_opt: float | Tensor) -> Tensor:
    """Err_opt = ``|1 − f(P, q*_C) / f(P, q*_P)|`` with ``q*_C`` the minimiser on the weighted coreset and
    ``f_opt = f(P, w, q*_P)`` the optimal full-data loss: ``(B,)``."""
    q_c = loss.minimize(batch.x, batch.y, batch.u).to(problem.x.dtype)
    f_at = evaluate(loss, problem.x, problem.y, problem.w, q_c)
    return loss_ratio_error(f_at, torch.as_tensor(f_opt, dtype=f_at.dtype))


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

    def __init__(self, name: str = "sensitivity", bound: str = "auto", reps: int = 100, max_redraws: int = 1000) -> None:
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
