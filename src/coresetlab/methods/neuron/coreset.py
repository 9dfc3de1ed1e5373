"""Neuron coresets: data-independent neuron selection (Mussay et al., ICLR 2020).

*Data-Independent Neural Pruning via Coresets* (B. Mussay, M. Osadchy, V. Braverman, S. Zhou,
D. Feldman, ICLR 2020; arXiv:1907.04018). Notation of the paper:

* a neuron ``p`` of layer ``i`` is the vector ``[incoming weights | bias]`` (a row of ``[W_i | b_i]``);
  it sees the extended input ``[x; 1]`` and outputs ``φ(pᵀ[x; 1])``;
* the ``k`` neurons of layer ``i+1`` give every ``p`` its outgoing weights ``w_1(p) … w_k(p)``
  (the column ``p`` of ``W_{i+1}``);
* ``β`` bounds the norm of the (extended) input of layer ``i``: the guarantee holds for every
  ``x`` in the ball ``B_β``.

**Algorithm 1** (CORESET, one neuron of the next layer) and **Algorithm 2** (CORESET PER LAYER, all
``k`` neurons at once): every neuron gets the sensitivity bound

    s(p) = max_j |w_j(p)| · sup_{|t| ≤ β‖p‖} |φ(t)|,

``pr(p) = s(p) / Σ_q s(q)``; ``m`` neurons are drawn i.i.d. with replacement from ``pr``; the coreset
``C`` is the set of distinct neurons drawn and the new outgoing weights are

    u_j(q) = Σ_{draws of q} w_j(q) / (m · pr(q)),

so for a fixed ``m`` ``Σ_{q∈C} u_j(q) φ(qᵀx)`` is an unbiased estimate of ``Σ_p w_j(p) φ(pᵀx)``
for every ``x`` and ``j`` (the per-layer coreset: one set ``C`` for all ``j``, Algorithm 2). The
factor applied to a kept neuron's outgoing weights is the sample's ``scale``; which weighting that is
(e.g. for the draw-until-``k``-distinct mode) is decided by :mod:`coresetlab.methods.shared.sampling`,
and nothing here assumes one.

*Corollary 8* (negative weights, monotonic activations): for weights of both signs and a monotonic
``φ: R → R`` the sensitivity is ``s(p) = sup_{x ∈ B_β} |w(p) φ(pᵀx)|``; the proof (Appendix A.3)
splits the sum into its positive and negative parts, so sampling ``∝ |w(p)| · sup|φ|`` and keeping
the signed ``w`` in ``u`` is the same importance-sampling estimator applied to both parts, and we use
``|w_j(p)|`` directly. Since ``|pᵀx| ≤ β‖p‖`` on the ball, ``sup_x |φ(pᵀx)| = sup_{|t| ≤ β‖p‖} |φ(t)|``
(the factor ``φ(β‖p‖)`` of Theorem 7 for non-negative non-decreasing ``φ``). We evaluate it at
``t ∈ {−r, 0, r}`` (``r = β‖p‖``), which is exact for monotonic activations (Corollary 8) and also
for the non-monotonic Gaussian of Table 2 and for activations monotone on each side of 0 (GELU:
``|gelu(−t)| < gelu(t)``). For non-negative non-decreasing ``φ`` this is exactly ``|φ(β‖p‖)|``, the
authors' code; ``bound="endpoint"`` selects that literal formula. *Corollary 9* (coreset per layer,
Algorithm 2): one set ``C`` for all ``k`` next-layer neurons, with ``s(p) = max_j`` of the per-neuron
sensitivities -- the ``max_j |w_j(p)|`` above.

**β (default 1.0).** For positively homogeneous activations (ReLU) ``φ(β‖p‖) = β φ(‖p‖)`` and β
cancels in ``pr``: the coreset does not depend on it. For saturating activations it matters; the
tasks set it from the layer's inputs (the largest ``‖[x; 1]‖`` seen) or from the config.

Size modes: ``"m"`` draws ``m`` points (the paper: ``|C| ≤ m``), ``"distinct"`` draws until ``k``
distinct neurons were drawn (as the authors' code does, to hit a target width). The latter is
sampled exactly and without a loop over draws by an exponential race (see
:func:`draw_until_distinct`).

Baselines under the same interface (:func:`select_neurons`): ``uniform`` (Algorithm 1 with
``pr = 1/n``, reweighted) and ``percentile`` (the top-k neurons by ``‖p‖``, unweighted: ``u = w``).
Everything is vectorised: no Python loop over neurons or draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from coresetlab.errors import ConfigError, DataError
from coresetlab.methods.shared.mlp_surgery import neuron_points  # noqa: F401  (re-exported)
from coresetlab.methods.shared.sampling import (  # noqa: F401  (re-exported)
    SIZE_MODES,
    WEIGHTINGS,
    WeightedSample,
    draw_m,
    draw_until_distinct,
    importance_sample,
)

NeuronSample = WeightedSample  # a neuron selection
sample_neurons = importance_sample  # Algorithm 2, lines 3-6

Activation = Callable[[torch.Tensor], torch.Tensor]

METHODS = ("coreset", "uniform", "percentile")
BOUNDS = ("sup", "endpoint")


def soft_clipping(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft clipping ``(1/α) log((1 + e^{αx}) / (1 + e^{α(x−1)}))`` (Klimek & Perelstein, 2018)."""
    return (F.softplus(alpha * x) - F.softplus(alpha * (x - 1.0))) / alpha


def binary_step(x: torch.Tensor) -> torch.Tensor:
    """Heaviside step ``1[x ≥ 0]`` (not differentiable; fine for coreset evaluation)."""
    return (x >= 0).to(x.dtype)


def gaussian(x: torch.Tensor) -> torch.Tensor:
    """Gaussian activation ``exp(−x²)``."""
    return torch.exp(-x * x)


#: The activations of the paper's Table 2 (plus tanh, GELU and identity, the other MLP choices), by name.
NEURON_ACTIVATIONS: dict[str, Activation] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "binary_step": binary_step,
    "softplus": F.softplus,
    "soft_clipping": soft_clipping,
    "gaussian": gaussian,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "identity": lambda x: x,
}


def get_activation(activation: str | Activation) -> Activation:
    """An activation callable from a name of :data:`NEURON_ACTIVATIONS` (or the callable itself)."""
    if callable(activation):
        return activation
    try:
        return NEURON_ACTIVATIONS[activation]
    except KeyError:
        raise ConfigError(
            f"unknown activation '{activation}', choose one of {', '.join(NEURON_ACTIVATIONS)}"
        ) from None


def activation_bound(activation: str | Activation, radius: torch.Tensor, bound: str = "sup") -> torch.Tensor:
    """``sup_{|t| ≤ r} |φ(t)|`` per radius (``bound="sup"``, Corollary 8) or ``|φ(r)|`` (``"endpoint"``).

    The supremum is taken over ``t ∈ {−r, 0, r}``: exact for activations monotone on each side of 0.
    """
    phi = get_activation(activation)
    r = radius.to(torch.float64)
    if bound == "endpoint":
        return phi(r).abs()
    if bound != "sup":
        raise ConfigError(f"bound must be 'sup' or 'endpoint', got '{bound}'")
    cand = torch.stack([phi(r).abs(), phi(-r).abs(), phi(torch.zeros_like(r)).abs()])
    return cand.amax(dim=0)


def sensitivity(
    points: torch.Tensor,
    out_weights: torch.Tensor,
    activation: str | Activation = "relu",
    beta: float = 1.0,
    bound: str = "sup",
    normalize: bool = True,
) -> torch.Tensor:
    """Neuron sensitivities of Algorithm 2 (line 1): ``s(p) = max_j |w_j(p)| · sup_{|t|≤β‖p‖} |φ(t)|``.

    ``points``: ``(n, d+1)`` neurons ``[W_i | b_i]``; ``out_weights``: ``(k, n)`` next-layer weights
    (``W_{i+1}``; a 1-D ``(n,)`` vector is one next neuron, Algorithm 1). Returns ``(n,)`` float64,
    normalised to sum to 1 (the sampling distribution ``pr``) unless ``normalize=False``.

    Raises :class:`~coresetlab.errors.DataError` if any sensitivity is not finite (NaN/Inf weights, or
    an activation bound that overflows): there is no meaningful distribution to sample from, and a
    silent fallback would hide a diverged model. If every bound is 0 the uniform distribution is
    returned, and this is exact, not an approximation: ``s(p) = 0`` means ``w_j(p) φ(pᵀx) = 0`` for
    every ``j`` and every ``x`` of the ball (the bound is the supremum, see :func:`activation_bound`),
    so the layer's output is identically 0 there and every selection, with any weights, reproduces it.
    """
    if beta <= 0:
        raise ConfigError(f"beta (input-norm bound) must be > 0, got {beta}")
    w = out_weights.reshape(1, -1) if out_weights.dim() == 1 else out_weights
    if w.shape[1] != points.shape[0]:
        raise ValueError(f"out_weights has {w.shape[1]} columns for {points.shape[0]} neurons")
    wmax = w.detach().abs().amax(dim=0).to(torch.float64)
    radius = beta * points.detach().to(torch.float64).norm(dim=1)
    s = wmax * activation_bound(activation, radius, bound)
    bad = ~torch.isfinite(s)
    if bool(bad.any()):
        raise DataError(
            f"non-finite neuron sensitivities for {int(bad.sum())} of {len(s)} neurons (NaN/Inf in the layer's "
            "weights or an overflowing activation bound): cannot build a coreset of this layer"
        )
    if not normalize:
        return s
    total = s.sum()
    if not torch.isfinite(total):
        raise DataError(f"the sum of the neuron sensitivities overflows ({float(total)}): cannot normalise")
    if total <= 0:
        return torch.full_like(s, 1.0 / len(s))  # exact: the layer's output is identically 0 on the ball
    return s / total


def top_k_by_norm(points: torch.Tensor, size: int) -> NeuronSample:
    """``percentile`` baseline: the ``size`` neurons with the largest ``‖p‖``, weights unchanged."""
    if not 1 <= size <= points.shape[0]:
        raise ConfigError(f"cannot keep {size} of {points.shape[0]} neurons")
    idx = torch.topk(points.detach().norm(dim=1), k=int(size)).indices.sort().values
    return NeuronSample(indices=idx, scale=torch.ones(len(idx), dtype=torch.float64), m=0, probs=None)


def select_neurons(
    method: str,
    points: torch.Tensor,
    out_weights: torch.Tensor,
    size: int,
    *,
    size_mode: str = "distinct",
    activation: str | Activation = "relu",
    beta: float = 1.0,
    bound: str = "sup",
    generator: torch.Generator | None = None,
    weighting: str = "inclusion",
) -> NeuronSample:
    """Select (and reweight) neurons of a layer with ``method`` in :data:`METHODS`.

    ``coreset``: Algorithm 2 (Algorithm 1 if ``out_weights`` is 1-D); ``uniform``: Algorithm 1/2 with
    ``pr = 1/n`` (reweighted); ``percentile``: top-``size`` by ``‖p‖`` (unweighted). ``weighting`` of the
    sampled ones: see :mod:`coresetlab.methods.shared.sampling` (``inclusion``: unbiased ``1/π``).
    """
    n = points.shape[0]
    if method == "coreset":
        probs = sensitivity(points, out_weights, activation, beta, bound)
        return sample_neurons(probs, size, size_mode, generator, weighting)
    if method == "uniform":
        probs = torch.full((n,), 1.0 / n, dtype=torch.float64)
        return sample_neurons(probs, size, size_mode, generator, weighting)
    if method == "percentile":
        return top_k_by_norm(points, size)
    raise ConfigError(f"unknown neuron selection method '{method}', choose one of {', '.join(METHODS)}")


@dataclass
class NeuronSelector:
    """A configured neuron-selection rule (the ``coreset_method`` of neuron-pruning experiments).

    ``__call__(points, out_weights, size, activation, generator)`` -> :class:`NeuronSample`.
    ``beta=None`` lets the caller pass the layer's input-norm bound (``beta_override``).
    """

    method: str = "coreset"
    size_mode: str = "distinct"
    beta: float | None = 1.0
    bound: str = "sup"
    name: str | None = None
    weighting: str = "inclusion"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown neuron selection method '{self.method}', choose one of {', '.join(METHODS)}")
        if self.size_mode not in SIZE_MODES:
            raise ConfigError(f"size_mode must be one of {SIZE_MODES}, got '{self.size_mode}'")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got '{self.weighting}'")
        if self.bound not in BOUNDS:
            raise ConfigError(f"bound must be one of {BOUNDS}, got '{self.bound}'")
        self.name = self.name or f"neuron_{self.method}"

    def __call__(
        self,
        points: torch.Tensor,
        out_weights: torch.Tensor,
        size: int,
        activation: str | Activation = "relu",
        generator: torch.Generator | None = None,
        beta_override: float | None = None,
    ) -> NeuronSample:
        beta = beta_override if self.beta is None and beta_override is not None else (self.beta or 1.0)
        return select_neurons(
            self.method, points, out_weights, size, size_mode=self.size_mode, activation=activation,
            beta=float(beta), bound=self.bound, generator=generator, weighting=self.weighting,
        )


def layer_outputs(points: torch.Tensor, x: torch.Tensor, activation: str | Activation = "relu") -> torch.Tensor:
    """``φ(P [x; 1])`` for a batch ``x`` of shape ``(N, d)``: the ``(N, n)`` outputs of the neurons."""
    phi = get_activation(activation)
    return phi(x @ points[:, :-1].T + points[:, -1])


def estimate(acts: torch.Tensor, out_weights: torch.Tensor, sample: NeuronSample | None = None) -> torch.Tensor:
    """``Σ_p w_j(p) φ(pᵀx)`` (``sample=None``) or its coreset estimate ``Σ_{q∈C} u_j(q) φ(qᵀx)``.

    ``acts``: ``(N, n)`` neuron outputs; ``out_weights``: ``(k, n)`` or ``(n,)``. Returns ``(N, k)``
    (or ``(N,)``).
    """
    w = out_weights.to(acts.dtype)
    if sample is not None:
        acts, w = acts[:, sample.indices], sample.reweight(w)
    return acts @ (w if w.dim() == 1 else w.T)
