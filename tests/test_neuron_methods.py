"""Unit tests of the neuron-coreset algorithms and the MLP surgery (pure functions, seconds)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron import coreset as nc
from coresetlab.methods.shared import mlp_surgery as ms
from coresetlab.models.mlp import MLP
from coresetlab.models.utils import count_params


def _layer(n=40, d=12, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, d + 1, generator=g, dtype=torch.float64)
    W = torch.randn(k, n, generator=g, dtype=torch.float64)
    x = torch.randn(64, d, generator=g, dtype=torch.float64)
    return P, W, x


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softplus", "gaussian", "binary_step", "soft_clipping"])
def test_sensitivities_normalise_to_one(act):
    P, W, _ = _layer()
    s = nc.sensitivity(P, W, act, beta=2.0)
    assert s.shape == (P.shape[0],)
    assert torch.all(s >= 0)
    assert math.isclose(float(s.sum()), 1.0, rel_tol=1e-12)


def test_sensitivity_formula_relu():
    P, W, _ = _layer()
    s = nc.sensitivity(P, W, "relu", beta=3.0, normalize=False)
    expected = W.abs().amax(0) * 3.0 * P.norm(dim=1)
    torch.testing.assert_close(s, expected)
    # beta cancels for ReLU (positively homogeneous)
    torch.testing.assert_close(nc.sensitivity(P, W, "relu", 3.0), nc.sensitivity(P, W, "relu", 0.1))


def test_sup_bound_handles_gaussian():
    r = torch.tensor([0.0, 1.0, 5.0])
    torch.testing.assert_close(nc.activation_bound("gaussian", r), torch.ones(3, dtype=torch.float64))
    assert float(nc.activation_bound("gaussian", r, "endpoint")[2]) < 1e-6


def test_draw_until_distinct_hits_k_and_counts_sum_to_m():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(100, generator=g, dtype=torch.float64) ** 3
    p /= p.sum()
    for k in (1, 10, 50, 100):
        counts, m = nc.draw_until_distinct(p, k, g)
        assert int((counts > 0).sum()) == k and int(counts.sum()) == m and m >= k


def test_draw_until_distinct_matches_sequential_law():
    """Exponential race == sequential 'draw until k distinct' (compare E[m] and inclusion probs)."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    k, reps = 2, 20000
    race = torch.stack([nc.draw_until_distinct(p, k, g)[0] for _ in range(reps)])
    # sequential reference (vectorised over reps by drawing a long stream)
    stream = torch.multinomial(p.expand(reps, 4), 60, replacement=True, generator=g)
    onehot = nn.functional.one_hot(stream, 4).cumsum(1).clamp(max=1).sum(2)  # distinct so far
    stop = (onehot >= k).int().argmax(1)  # index of the draw that reached k distinct
    mask = torch.arange(60)[None, :] <= stop[:, None]
    seq = torch.zeros(reps, 4, dtype=torch.int64).scatter_add_(1, stream, mask.long())
    assert abs(race.sum(1).double().mean() - seq.sum(1).double().mean()) < 0.05
    torch.testing.assert_close((race > 0).double().mean(0), (seq > 0).double().mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(race.double().mean(0), seq.double().mean(0), atol=0.05, rtol=0)


def test_coreset_estimator_is_unbiased():
    """Mean over many draws of the coreset output ≈ the full output, for fixed inputs (m mode)."""
    P, W, x = _layer(n=30, k=4)
    acts = nc.layer_outputs(P, x, "relu")
    full = nc.estimate(acts, W)
    g = torch.Generator().manual_seed(3)
    reps, m = 4000, 10
    probs = nc.sensitivity(P, W, "relu")
    counts = torch.multinomial(probs.expand(reps, -1), m, replacement=True, generator=g)
    counts = torch.zeros(reps, len(probs), dtype=torch.float64).scatter_add_(1, counts, torch.ones(reps, m, dtype=torch.float64))
    u = counts[:, None, :] * W[None] / (m * probs)  # (reps, k, n): u_j(q), zero off the coreset
    draws = torch.einsum("bn,rkn->rbk", acts, u)
    z = (draws.mean(0) - full) / (draws.std(0) / math.sqrt(reps) + 1e-12)  # Monte-Carlo z-scores
    assert float(z.abs().max()) < 5.0  # entries share the draws: z-scores are correlated
    # one draw through the public API agrees with the formula
    s = nc.sample_neurons(probs, m, "m", g)
    manual = acts[:, s.indices] @ (W[:, s.indices] * s.scale).T
    torch.testing.assert_close(nc.estimate(acts, W, s), manual)


def test_coreset_error_shrinks_with_m_and_beats_uniform():
    P, W, x = _layer(n=300, d=20, k=1, seed=5)
    W = W * torch.linspace(0.01, 3, 300, dtype=torch.float64)  # heterogeneous outgoing weights
    acts = nc.layer_outputs(P, x)
    full = nc.estimate(acts, W)
    g = torch.Generator().manual_seed(0)

    def err(method, m):
        return sum(float((nc.estimate(acts, W, nc.select_neurons(method, P, W, m, size_mode="m", generator=g))
                          - full).abs().mean()) for _ in range(30)) / 30

    assert err("coreset", 400) < err("coreset", 25)
    assert err("coreset", 100) < err("uniform", 100)


def test_selectors_and_errors():
    P, W, _ = _layer()
    g = torch.Generator().manual_seed(0)
    s = nc.select_neurons("percentile", P, W, 7)
    assert s.size == 7 and torch.all(s.scale == 1)
    assert set(s.indices.tolist()) == set(torch.topk(P.norm(dim=1), 7).indices.tolist())
    u = nc.select_neurons("uniform", P, W, 9, generator=g)
    assert u.size == 9
    with pytest.raises(ConfigError):
        nc.select_neurons("magic", P, W, 3)
    with pytest.raises(ConfigError):
        nc.select_neurons("coreset", P, W, 1000)
    with pytest.raises(ConfigError):
        nc.NeuronSelector(method="coreset", size_mode="bogus")


# ---------------------------------------------------------------- surgery


def _mlp(hidden=(30, 20), act="relu", seed=0):
    torch.manual_seed(seed)
    m = MLP(in_features=16, hidden=hidden, num_classes=4, activation=act).double()
    with torch.no_grad():
        for layer in m.layers:
            layer.bias.normal_()  # non-trivial biases (the regression test needs them)
    return m


def test_surgery_exact_when_c_equals_p():
    model = _mlp()
    x = torch.randn(50, 16, dtype=torch.float64)
    for i in range(2):
        n = model.layers[i].out_features
        perm = torch.arange(n)
        full = nc.NeuronSample(indices=perm, scale=torch.ones(n, dtype=torch.float64), m=n)
        a, b = ms.prune_pair(model.layers[i], model.layers[i + 1], full)
        pruned = copy.deepcopy(model)
        pruned.layers[i], pruned.layers[i + 1] = a, b
        torch.testing.assert_close(pruned(x), model(x))
    # through compress_mlp: target widths equal to the current ones leave the network unchanged
    same, info = ms.compress_mlp(model, [30, 20], nc.NeuronSelector())
    assert info == [] and torch.equal(same(x), model(x))


def test_surgery_keeps_own_bias_regression():
    """Layer i keeps rows C of its *bias* (the authors' coreset.py used weight column 1 instead)."""
    model = _mlp()
    layer, nxt = model.layers[0], model.layers[1]
    idx = torch.tensor([2, 5, 11, 17])
    s = nc.NeuronSample(indices=idx, scale=torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64), m=7)
    a, b = ms.prune_pair(layer, nxt, s)
    torch.testing.assert_close(a.bias, layer.bias[idx])
    assert not torch.allclose(a.bias, layer.weight[idx, 1])
    torch.testing.assert_close(a.weight, layer.weight[idx])
    torch.testing.assert_close(b.weight, nxt.weight[:, idx] * s.scale)
    torch.testing.assert_close(b.bias, nxt.bias)
    # the pruned pair computes exactly the coreset estimate of the next layer's pre-activation
    x = torch.randn(8, 16, dtype=torch.float64)
    P = ms.layer_points(layer)
    est = nc.estimate(nc.layer_outputs(P, x), nxt.weight.detach(), s) + nxt.bias
    torch.testing.assert_close(b(torch.relu(a(x))), est.detach())


@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_compress_mlp_param_counts(order):
    model = _mlp(hidden=(30, 20))
    sel = nc.NeuronSelector(method="coreset")
    calls = []
    small, info = ms.compress_mlp(model, [10, 5], sel, order=order, generator=torch.Generator().manual_seed(0),
                                  finetune=lambda m, i: calls.append(i) or 3)
    assert small.widths == [16, 10, 5, 4]
    assert count_params(small) == ms.params_of_widths([16, 10, 5, 4]) == 17 * 10 + 11 * 5 + 6 * 4
    assert model.widths == [16, 30, 20, 4]  # input untouched
    assert calls == ([1, 0] if order == "top_down" else [0, 1])
    assert all(r["finetune_epochs"] == 3 for r in info)
    assert small(torch.randn(3, 16, dtype=torch.float64)).shape == (3, 4)


def test_widths_for_compression_lenet():
    assert ms.params_of_widths([784, 300, 100, 10]) == 266610
    assert ms.hidden_widths_for_compression([784, 300, 100, 10], 0.9, [0]) == [28, 100]
    w = ms.hidden_widths_for_compression([784, 200, 105, 10], 0.5)
    assert ms.params_of_widths([784, *w, 10]) <= 0.5 * ms.params_of_widths([784, 200, 105, 10])
    with pytest.raises(ConfigError):
        ms.hidden_widths_for_compression([784, 300, 100, 10], 0.999, [1])
