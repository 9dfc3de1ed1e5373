"""AutoCL: "A Unified Approach to Coreset Learning" (Maalouf, Eini, Mussay, Feldman, Osadchy).

The learned coreset minimises, over a training set of queries q, the relative loss error of
Definition 5 / Algorithm 2:

    | 1 - f(C, u, q) / f(P, w, q) |  +  λ | Σ w - Σ u |

For model compression (§4.2.1) the "coreset" C is a small network and the query is the data batch:
λ = 0 and the loss is ``|1 - CE(small) / CE(parent)|``.
"""

from __future__ import annotations

import torch


def loss_ratio_error(coreset_loss, full_loss):
    """``|1 - coreset_loss / full_loss|`` elementwise (Algorithm 2's per-query error).

    Works on tensors (differentiable) and on plain floats.
    """
    return abs(1.0 - coreset_loss / full_loss)


def coreset_objective(
    coreset_loss: torch.Tensor,
    full_loss: torch.Tensor,
    lam: float = 0.0,
    sum_w: torch.Tensor | float | None = None,
    sum_u: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Mean over queries of :func:`loss_ratio_error` plus ``λ |Σw − Σu|`` (Algorithm 2's objective).

    ``coreset_loss`` and ``full_loss`` hold one value per query (same shape). With ``lam == 0`` the
    weight term is dropped (as for model compression).
    """
    obj = loss_ratio_error(coreset_loss, full_loss).mean()
    if lam:
        if sum_w is None or sum_u is None:
            raise ValueError("lam > 0 needs sum_w and sum_u")
        obj = obj + lam * torch.as_tensor(sum_w - sum_u).abs()
    return obj
