"""Filter coresets of one layer (Dubey, Chatterjee, Ahuja, ECCV 2018, §3.3–3.5 and supplement §1).

Every function takes the layer matrix ``W ∈ R^{d×N}`` (columns = filters, bias row included; see
:mod:`.layers`) and a rank ``r`` and returns ``(Ŵ, D)`` with ``Ŵ ∈ R^{d×r}`` (coreset filters) and the
decompression matrix ``D ∈ R^{r×N}`` so that ``W ≈ Ŵ D``:

* :func:`coreset_k` — Coreset-K (§3.3): truncated SVD ``W = UΣVᵀ``, ``Ŵ = U′Σ′``, ``D = V′ᵀ``.
* :func:`coreset_s` — Coreset-S (§3.4): structured sparse PCA (Jenatton et al. 2010) with the standard
  scikit-learn implementation, sparsity ``λ`` on ``D``; a filter whose column of ``D`` is all zero
  is rebuilt as exactly zero and can be dropped.
* :func:`coreset_a` — Coreset-A (§3.5, Eq. 6–7): activation-weighted low-rank approximation
  ``min ‖I ⊙ (W − ŴD)‖_F²`` with the per-filter importance tiled into ``I``, solved by the EM
  algorithm of Srebro & Jaakkola (2003), :func:`weighted_low_rank_em`.
* :func:`svd_weight_only` — the SVD baseline (Denton et al. 2014): truncated SVD of the weights
  without the bias (the bias stays dense).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from coresetlab.errors import DataError


def _lra(a: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors ``(U′Σ′, V′ᵀ)`` of ``a`` in Frobenius norm (Eckart–Young).

    For tall matrices (``d ≥ N``, every layer with more coordinates than filters) the right singular
    vectors come from the ``N × N`` Gram matrix, ``V′`` = top eigenvectors of ``aᵀa`` and
    ``U′Σ′ = a V′`` — the same factors as the SVD, several times cheaper (it runs in every EM step).
    """
    m, n = a.shape
    if m >= n:
        _, vecs = torch.linalg.eigh(a.T @ a)  # ascending eigenvalues
        v = vecs[:, -rank:].flip(1)
        return a @ v, v.T
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    return u[:, :rank] * s[:rank], vh[:rank]


def coreset_k(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coreset-K (§3.3): ``Ŵ = U′Σ′`` (the ``rank`` leading scaled left singular vectors), ``D = V′ᵀ``.

    At ``rank = min(d, N)`` the reconstruction ``ŴD`` equals ``W`` up to round-off.
    """
    _check_rank(w, rank)
    w_hat, d = _lra(w.double(), rank)
    return w_hat.to(w.dtype), d.to(w.dtype)


def svd_weight_only(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The classical SVD baseline: ``W`` here is the weight part only (no bias row)."""
    return coreset_k(w, rank)


def _check_rank(w: torch.Tensor, rank: int) -> None:
    if not 1 <= rank <= min(w.shape):
        raise ValueError(f"rank must be in [1, {min(w.shape)}] for a {tuple(w.shape)} matrix, got {rank}")


# -- Coreset-A --------------------------------------------------------------------------------------------
def filter_importance(activation_norms: torch.Tensor) -> torch.Tensor:
    """Eq. 6: ``i(f) = mean_s ‖A^f(s)‖_F`` normalised over the layer's filters (sums to 1).

    ``activation_norms`` is either the per-sample norms ``(S, N)`` or their mean ``(N,)``.

    Raises :class:`~coresetlab.errors.DataError` when a norm is NaN/Inf or negative (a diverged model or
    overflowing activations: there is no meaningful importance, and a silent fallback would hide it).
    If every filter's response is exactly zero on the data, the weighted objective of Eq. 7 is zero for
    every factorisation, so uniform importance (Coreset-K) is returned: exact, not an approximation.
    """
    m = activation_norms.mean(0) if activation_norms.ndim == 2 else activation_norms
    bad = ~torch.isfinite(m)
    if bool(bad.any()):
        raise DataError(f"non-finite filter activation norms for {int(bad.sum())} of {len(m)} filters (NaN/Inf "
                        "in the layer's weights or inputs): cannot compute Coreset-A's importance (Eq. 6)")
    if bool((m < 0).any()):
        raise DataError(f"negative filter activation norms ({int((m < 0).sum())} of {len(m)}): not norms")
    total = m.sum()
    if not torch.isfinite(total):
        raise DataError(f"the sum of the filter activation norms overflows ({float(total)}): cannot normalise")
    if total <= 0:
        return torch.full_like(m, 1.0 / len(m))  # exact: the layer outputs zero on every sample (see above)
    return m / total


def weighted_objective(a: torch.Tensor, weights: torch.Tensor, x: torch.Tensor) -> float:
    """``Σ_ij w_ij (a_ij − x_ij)²`` — the weighted low-rank objective of Srebro & Jaakkola (2003)."""
    return float((weights * (a - x) ** 2).sum())


@dataclass
class EMResult:
    w_hat: torch.Tensor
    d: torch.Tensor
    objective: list[float] = field(default_factory=list)  # weighted objective after init and each step
    iterations: int = 0


def weighted_low_rank_em(
    a: torch.Tensor, weights: torch.Tensor, rank: int, max_iter: int = 100, rel_tol: float = 1e-6,
    init: torch.Tensor | None = None,
) -> EMResult:
    """Weighted rank-``rank`` approximation ``min_X Σ w_ij (a_ij − X_ij)²`` by EM (Srebro & Jaakkola 2003, §3).

    Weights are rescaled to ``[0, 1]`` (max 1; the minimiser is scale invariant). Each step fills the
    down-weighted entries with the current estimate and takes the unweighted optimum,
    ``X ← LRA_r(w ⊙ a + (1 − w) ⊙ X)``, which never increases the weighted objective (an EM step for
    the Gaussian model with missing-data weights). Initialised at the unweighted SVD (Coreset-K) unless
    ``init`` is given, so Coreset-A is never worse than Coreset-K on the weighted objective.
    """
    _check_rank(a, rank)
    a64, w64 = a.double(), weights.double().expand_as(a)
    wmax = float(w64.max())
    if wmax <= 0:
        raise ValueError("importance weights must have a positive entry")
    w64 = w64 / wmax
    if init is None:
        p, q = _lra(a64, rank)
        x = p @ q
    else:
        x = init.double()
        p, q = _lra(x, rank)
        x = p @ q
    hist = [weighted_objective(a64, w64, x)]
    it = 0
    if bool((w64 == 1).all()):  # unweighted: the SVD is already optimal
        return EMResult(p.to(a.dtype), q.to(a.dtype), hist, 0)
    for it in range(1, max_iter + 1):  # noqa: B007
        p, q = _lra(w64 * a64 + (1 - w64) * x, rank)
        x = p @ q
        hist.append(weighted_objective(a64, w64, x))
        if hist[-2] - hist[-1] <= rel_tol * max(hist[-2], 1e-300):
            break
    return EMResult(p.to(a.dtype), q.to(a.dtype), [h * wmax for h in hist], it)


def importance_weights(importance: torch.Tensor, d: int) -> torch.Tensor:
    """The importance matrix ``I ∈ R^{d×N}`` (Eq. 7): filter ``n``'s importance tiled down column ``n``.

    The objective ``‖I ⊙ (W − ŴD)‖_F²`` has entry weights ``I²``; this returns those weights.
    """
    return (importance[None, :] ** 2).expand(d, -1)


def coreset_a(
    w: torch.Tensor, importance: torch.Tensor, rank: int, max_iter: int = 100, rel_tol: float = 1e-6
) -> EMResult:
    """Coreset-A (§3.5): ``min ‖I ⊙ (W − ŴD)‖_F²`` by :func:`weighted_low_rank_em`; uniform importance
    reproduces Coreset-K."""
    if importance.shape != (w.shape[1],):
        raise ValueError(f"importance must have one entry per filter ({w.shape[1]}), got {tuple(importance.shape)}")
    return weighted_low_rank_em(w, importance_weights(importance, w.shape[0]), rank, max_iter, rel_tol)


# -- Coreset-S --------------------------------------------------------------------------------------------
def coreset_s(
    w: torch.Tensor, rank: int, alpha: float, ridge_alpha: float = 0.01, max_iter: int = 1000, tol: float = 1e-6,
    method: str = "cd", seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coreset-S (§3.4): sparse decompression ``D`` by scikit-learn's ``SparsePCA`` with ``alpha = λ``.

    The filters are the features and the ``d`` weight coordinates the samples, so ``components_`` is
    ``D ∈ R^{r×N}`` and its L1 penalty zeroes whole filter columns as ``λ`` grows. ``SparsePCA`` centres
    each feature; fitting the symmetrised rows ``[W; −W]`` (mean exactly zero, same objective up to a
    factor 2) keeps the factorisation uncentred, so a zero column rebuilds its filter *and* bias as
    exactly zero. Components that came out all zero are removed (the returned rank may be smaller);
    the coreset filters are then refitted by least squares, ``Ŵ = argmin ‖W − ŴD‖_F``.
    """
    from sklearn.decomposition import SparsePCA

    _check_rank(w, rank)
    x = w.detach().double().cpu().numpy()
    spca = SparsePCA(
        n_components=rank, alpha=float(alpha), ridge_alpha=float(ridge_alpha), max_iter=int(max_iter),
        tol=float(tol), method=method, random_state=int(seed),
    )
    spca.fit(np.vstack([x, -x]))
    comps = spca.components_
    comps = comps[np.abs(comps).sum(1) > 0]
    d = torch.from_numpy(np.ascontiguousarray(comps))
    if d.shape[0] == 0:
        return torch.zeros(w.shape[0], 0, dtype=w.dtype), torch.zeros(0, w.shape[1], dtype=w.dtype)
    w_hat = torch.linalg.lstsq(d.T, w.double().T).solution.T
    return w_hat.to(w.dtype), d.to(w.dtype)


def zero_columns(d: torch.Tensor) -> torch.Tensor:
    """Indices of filters whose column of ``D`` is all zero (Coreset-S drops them)."""
    return torch.nonzero((d == 0).all(0)).flatten()
