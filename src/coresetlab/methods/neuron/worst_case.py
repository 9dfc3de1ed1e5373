"""Worst-case inputs for a compressed layer: projected gradient ascent over the ball ``‖x‖ ≤ β``.

The neuron-coreset guarantee (Mussay et al., ICLR 2020, Theorem 7 / Algorithm 2) holds for *every*
input of the ball ``B_β``, adversarial ones included. To check it empirically we maximise the error
``|z(x) − z̃(x)|`` between the full and the compressed layer output over ``‖x‖ ≤ β`` by projected
(normalised) gradient ascent from several restarts -- random points of the sphere of radius ``β`` and
optional given starts (e.g. the test images with the largest error) -- all restarts in one batch.
The search gives a lower bound on the true worst case (the problem is non-concave).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from coresetlab.errors import ConfigError

ErrorFn = Callable[[torch.Tensor], torch.Tensor]  # (B, d) -> (B,) errors, differentiable


def project_ball(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Euclidean projection of each row of ``x`` onto ``{‖x‖ ≤ β}``."""
    norm = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x * (beta / norm).clamp(max=1.0)


def random_sphere(n: int, dim: int, beta: float, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` points uniformly distributed on the sphere of radius ``β`` in ``R^dim``."""
    g = torch.randn(n, dim, generator=generator, dtype=dtype)
    return beta * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class WorstCase:
    """Result of :func:`worst_case_search`: the best error, its input, and the best per restart."""

    value: float
    x: torch.Tensor
    per_restart: torch.Tensor


def worst_case_search(
    error_fn: ErrorFn,
    dim: int,
    beta: float,
    restarts: int = 8,
    steps: int = 200,
    lr: float = 0.5,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> WorstCase:
    """Maximise ``error_fn`` over ``‖x‖ ≤ β`` by projected normalised gradient ascent.

    Step ``t`` moves every restart by ``η_t β g/‖g‖`` (``η_t`` cosine-decayed from ``lr`` to
    ``lr/100``) and projects back onto the ball. ``restarts`` random sphere points are used, plus the
    rows of ``init`` (projected) if given. The best value seen along every path is kept.
    """
    if beta <= 0 or restarts < 0 or steps < 0:
        raise ConfigError(f"worst-case search needs beta > 0, restarts >= 0, steps >= 0 (got {beta}, {restarts}, {steps})")
    starts = [random_sphere(restarts, dim, beta, generator, dtype)] if restarts else []
    if init is not None:
        starts.append(project_ball(init.reshape(len(init), -1).to(dtype), beta))
    if not starts:
        raise ConfigError("worst-case search needs at least one start (restarts or init)")
    x = torch.cat(starts).detach()
    with torch.no_grad():
        best_val = error_fn(x).detach().clone()
    best_x = x.clone()
    for t in range(steps):
        eta = lr / 100 + 0.5 * (lr - lr / 100) * (1 + math.cos(math.pi * t / max(1, steps)))
        x.requires_grad_(True)
        val = error_fn(x)
        (grad,) = torch.autograd.grad(val.sum(), x)
        with torch.no_grad():
            better = val.detach() > best_val
            best_val = torch.where(better, val.detach(), best_val)
            best_x[better] = x.detach()[better]
            step = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            x = project_ball(x.detach() + eta * beta * step, beta)
    with torch.no_grad():
        val = error_fn(x)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_x[better] = x[better]
    i = int(best_val.argmax())
    return WorstCase(value=float(best_val[i]), x=best_x[i].detach(), per_restart=best_val.detach())
