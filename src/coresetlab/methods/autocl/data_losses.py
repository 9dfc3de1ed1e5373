"""Losses of the AutoCL data-coreset experiments on batches of weighted sets and queries (AutoCL §4.1).

Part of :mod:`coresetlab.methods.autocl.data_coresets` (see its docstring for the batching and
padding conventions); split out so that the query maker can import it without an import circle.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from coresetlab.errors import ConfigError

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
