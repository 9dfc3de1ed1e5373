"""Unit tests of the Figure-3 baselines (SVD, entry-wise sparsification, CoreNet) and the worst-case search."""

from __future__ import annotations

import math

import pytest
import torch

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron import corenet as cn
from coresetlab.methods.neuron import coreset as nc
from coresetlab.methods.neuron import sparsify as sp
from coresetlab.methods.neuron.worst_case import project_ball, worst_case_search
from coresetlab.models.mlp import MLP


def _mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(in_features=20, hidden=(24, 12), num_classes=5).double()


@pytest.mark.parametrize("kind", sp.ENTRY_METHODS)
def test_entry_sparsification_budget_and_unbiased(kind):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(15, 30, generator=g, dtype=torch.float64)
    p = sp.entry_probs(A, kind)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    S = sp.sparsify_entries(A, kind, 100, g)
    assert int((S != 0).sum()) == 100
    # unbiased up to the stopping rule: the mean of many estimates is close to A
    mean = torch.stack([sp.sparsify_entries(A, kind, 200, g) for _ in range(600)]).mean(0)
    assert float((mean - A).norm() / A.norm()) < 0.12


def test_svd_rank_and_params():
    A = torch.randn(40, 30, dtype=torch.float64)
    assert sp.svd_rank_for_budget((40, 30), 700) == 10
    B = sp.svd_truncate(A, 30)
    torch.testing.assert_close(B, A)
    assert int(torch.linalg.matrix_rank(sp.svd_truncate(A, 5))) == 5
    model, kept = sp.compress_linear_layers(_mlp(), 0.3, "svd")
    assert kept < 0.5 * sum(p.numel() for p in _mlp().parameters())


def test_compress_linear_layers_counts():
    model = _mlp()
    small, kept = sp.compress_linear_layers(model, 0.25, "l1", torch.Generator().manual_seed(0))
    nz = sum(int((layer.weight != 0).sum()) + layer.bias.numel() for layer in small.layers)
    assert kept == nz
    with pytest.raises(ConfigError):
        sp.compress_linear_layers(model, 0.0, "l2")
    with pytest.raises(ConfigError):
        sp.entry_probs(torch.ones(2, 2), "l3")


def test_empirical_sensitivity_normalised_per_sign():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(6, 9, generator=g, dtype=torch.float64)
    a = torch.rand(1, 9, generator=g, dtype=torch.float64)  # one point: sensitivities sum to 1 per sign
    s = cn.empirical_sensitivity(W, a)
    torch.testing.assert_close((s * (W > 0)).sum(1), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close((s * (W < 0)).sum(1), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)


def test_corenet_unbiased_and_budget():
    g = torch.Generator().manual_seed(2)
    W = torch.randn(8, 50, generator=g, dtype=torch.float64)
    s = cn.empirical_sensitivity(W, torch.rand(16, 50, generator=g, dtype=torch.float64))
    c = cn.sparsify_weight(W, s, budget=120, generator=g, candidates=3000)
    assert abs(float((c[:200] != 0).sum(dim=(1, 2)).double().mean()) - 120) < 6
    assert float((c.mean(0) - W).norm() / W.norm()) < 0.1


@pytest.mark.parametrize("variant", cn.VARIANTS)
def test_corenet_variants_run(variant):
    model = _mlp()
    g = torch.Generator().manual_seed(0)
    S, T = torch.randn(32, 20, dtype=torch.float64), torch.randn(32, 20, dtype=torch.float64)
    small, kept = cn.CoreNet(variant=variant, tau=3).compress(model, 0.3, S, T, g)
    total = sum(p.numel() for p in model.parameters())
    assert 0 < kept < 0.5 * total
    assert small(S).shape == (32, 5)
    with pytest.raises(ConfigError):
        cn.CoreNet(variant="corenet+++")


def test_worst_case_finds_known_maximum():
    """max over the unit ball of |aᵀx| is ‖a‖ at x = ±a/‖a‖."""
    a = torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64)
    res = worst_case_search(lambda x: (x @ a).abs(), 3, beta=2.0, restarts=4, steps=50,
                            generator=torch.Generator().manual_seed(0))
    assert math.isclose(res.value, 10.0, rel_tol=1e-3)
    assert float(res.x.norm()) <= 2.0 + 1e-9
    assert torch.all(project_ball(torch.randn(5, 3) * 10, 1.5).norm(dim=1) <= 1.5 + 1e-6)


def test_worst_case_beats_sampled_inputs_for_coreset():
    """Started from the worst of 100 sampled ball points, the ascent never loses them and climbs above."""
    g = torch.Generator().manual_seed(0)
    P = torch.randn(50, 11, generator=g, dtype=torch.float64)
    w = torch.randn(50, generator=g, dtype=torch.float64)
    s = nc.select_neurons("coreset", P, w, 10, generator=g)

    def err(x):
        acts = nc.layer_outputs(P, x)
        return (nc.estimate(acts, w) - nc.estimate(acts, w, s)).abs()

    xs = project_ball(torch.randn(100, 10, generator=g, dtype=torch.float64), 1.0)
    sampled = err(xs)
    res = worst_case_search(err, 10, 1.0, restarts=4, steps=40, init=xs[sampled.topk(4).indices], generator=g)
    assert float(res.x.norm()) <= 1.0 + 1e-9
    assert math.isclose(res.value, float(err(res.x[None])[0]), rel_tol=1e-9)  # the value is the input's error
    assert res.value >= float(sampled.max())  # the best start is kept
    assert res.value >= 1.1 * float(sampled.max())  # and the ascent improves on it (measured: +23 %)


def test_layer_fractions_budget():
    model = MLP(in_features=784, hidden=(200, 105), num_classes=10)
    total = sum(p.numel() for p in model.parameters())
    for f in (0.02, 0.1, 0.5):
        fr = sp.layer_fractions(model, f, dense_last=True)
        assert fr[-1] == 1.0
        kept = sum(fi * layer.weight.numel() + layer.bias.numel() for fi, layer in zip(fr, model.layers))
        assert abs(kept - f * total) < 1e-6 * total
    assert len(set(sp.layer_fractions(model, 0.1))) == 1
    small, kept = sp.compress_linear_layers(model, sp.layer_fractions(model, 0.1, True), "l2",
                                            torch.Generator().manual_seed(0))
    assert abs(kept / total - 0.1) < 0.01 and torch.equal(small.layers[-1].weight, model.layers[-1].weight)
