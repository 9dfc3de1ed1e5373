"""Sensitivities, sampling and batches of weighted coresets with their error measures (AutoCL §4.1).

Part of :mod:`coresetlab.methods.autocl.data_coresets`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from coresetlab.methods.autocl.data_losses import DataLoss, Progress, no_progress, with_intercept  # noqa: F401
from coresetlab.methods.autocl.objective import loss_ratio_error

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

