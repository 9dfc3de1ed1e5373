"""Neuron Table 1 / Fig. 3 recipe pieces: reweighting placement, from-scratch baseline, honest errors,
structure-preserving fine-tuning, distillation (pure functions and tiny models, seconds)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coresetlab.errors import ConfigError, DataError
from coresetlab.lit.finetune import distillation_loss, epochs_to_tolerance
from coresetlab.methods.neuron import coreset as nc
from coresetlab.methods.neuron import sparsify as sp
from coresetlab.methods.neuron.scratch import FromScratch, scratch_mlp
from coresetlab.methods.shared import mlp_surgery as ms
from coresetlab.models.mlp import MLP
from coresetlab.models.utils import count_params


def _mlp(hidden=(30, 20), act="relu", seed=0):
    torch.manual_seed(seed)
    m = MLP(in_features=16, hidden=hidden, num_classes=4, activation=act).double()
    with torch.no_grad():
        for layer in m.layers:
            layer.bias.normal_()
    return m


def _compress(model, reweight, order="top_down", hidden=(8, 6)):
    return ms.compress_mlp(model, list(hidden), nc.NeuronSelector(method="coreset"), order=order,
                           generator=torch.Generator().manual_seed(3), reweight=reweight)[0]


@pytest.mark.parametrize("hidden", [(8, 20), (30, 6)])
def test_reweight_incoming_is_the_same_function_under_relu(hidden):
    """One pruned layer (Table 1 prunes the first): the same neurons, the same function, scales moved."""
    model = _mlp()
    x = 3 * torch.randn(200, 16, dtype=torch.float64)
    out = _compress(model, "outgoing", hidden=hidden)
    inc = _compress(model, "incoming", hidden=hidden)
    torch.testing.assert_close(inc(x), out(x), rtol=1e-10, atol=1e-10)
    none = _compress(model, "none", hidden=hidden)
    assert not torch.allclose(none(x), out(x))  # without reweighting the function changes
    # the scales really moved: same kept rows, incoming rows scaled, outgoing columns unscaled
    i = 0 if hidden[0] < 30 else 1
    ratio_in = inc.layers[i].weight / none.layers[i].weight
    ratio_b = inc.layers[i].bias / none.layers[i].bias
    torch.testing.assert_close(ratio_in, ratio_in[:, :1].expand_as(ratio_in))
    torch.testing.assert_close(ratio_b, ratio_in[:, 0])
    assert not torch.allclose(ratio_in[:, 0], torch.ones_like(ratio_b))
    torch.testing.assert_close(inc.layers[i + 1].weight, none.layers[i + 1].weight)
    torch.testing.assert_close(out.layers[i].weight, none.layers[i].weight)


def test_reweight_incoming_needs_positive_homogeneity():
    with pytest.raises(ConfigError, match="positively homogeneous"):
        _compress(_mlp(act="sigmoid"), "incoming")
    with pytest.raises(ConfigError, match="reweight"):
        _compress(_mlp(), "sideways")
    model = _mlp()
    s = nc.NeuronSample(indices=torch.tensor([0, 1]), scale=torch.tensor([1.0, -1.0], dtype=torch.float64), m=2)
    with pytest.raises(ConfigError, match="positive"):
        ms.prune_pair(model.layers[0], model.layers[1], s, "incoming")


def test_from_scratch_builds_the_pruned_width():
    parent = MLP(in_features=784, hidden=(300, 100), num_classes=10)
    hidden = ms.hidden_widths_for_compression(parent.widths, 0.9, [0])
    state = torch.random.get_rng_state()
    a = FromScratch().build(parent, hidden, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert a.widths == [784, 28, 100, 10] and count_params(a) == 25890 and a.activation == "relu"
    b, c = scratch_mlp(parent, hidden, 5), scratch_mlp(parent, hidden, 6)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)  # seeded
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    assert not any(torch.equal(a.layers[0].weight, parent.layers[0].weight[:28]) for _ in [0])  # not the parent's
    with pytest.raises(ConfigError):
        scratch_mlp(parent, [28], 0)


def test_non_finite_sensitivities_raise():
    g = torch.Generator().manual_seed(0)
    P = torch.randn(10, 5, generator=g, dtype=torch.float64)
    W = torch.randn(3, 10, generator=g, dtype=torch.float64)
    for bad in (math.nan, math.inf):
        Wb = W.clone()
        Wb[1, 4] = bad
        with pytest.raises(DataError, match="non-finite"):
            nc.sensitivity(P, Wb)
        Pb = P.clone()
        Pb[2, 0] = bad
        with pytest.raises(DataError, match="non-finite"):
            nc.select_neurons("coreset", Pb, W, 4, generator=g)
    # all-zero bounds: the layer's output is 0 on the ball, the uniform distribution is exact
    s = nc.sensitivity(P, torch.zeros_like(W))
    torch.testing.assert_close(s, torch.full((10,), 0.1, dtype=torch.float64))


@pytest.mark.parametrize("method", ["svd", "l1", "corenet"])
def test_freeze_structure_keeps_function_and_structure(method):
    from coresetlab.methods.neuron.corenet import CoreNet

    model = _mlp(hidden=(24, 12))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, dtype=torch.float64)
    if method == "corenet":
        small, kept = CoreNet(variant="corenet").compress(model, 0.3, x, None, g)
    else:
        small, kept = sp.compress_linear_layers(model, 0.3, method, g)
    before = small(x).detach()
    sp.freeze_structure(small, method)
    torch.testing.assert_close(small(x), before, rtol=1e-6, atol=1e-8)
    zeros = [(layer.weight == 0) for layer in small.layers]
    ranks = [int(torch.linalg.matrix_rank(layer.weight)) for layer in small.layers]
    opt = torch.optim.Adam([p for p in small.parameters() if p.requires_grad], lr=0.05, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(small(x), torch.arange(32) % 4).backward()
        opt.step()
    assert not torch.allclose(small(x), before)  # it did train
    for layer, z, r in zip(small.layers, zeros, ranks):
        if method == "svd":
            assert int(torch.linalg.matrix_rank(layer.weight)) == r
        else:
            assert torch.all(layer.weight[z] == 0)


def test_distillation_loss_and_convergence_epochs():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    y = torch.arange(8) % 10
    torch.testing.assert_close(distillation_loss(s, t, y, 0.0, 4.0), F.cross_entropy(s, y))
    assert float(distillation_loss(s, s, y, 1.0, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(s, t, y, 1.0, 4.0)) > 0.01
    assert epochs_to_tolerance([0.90, 0.975, 0.979, 0.98, 0.9795], 0.002) == 3
    assert epochs_to_tolerance([0.5, 0.4], 0.0, "min") == 2 and epochs_to_tolerance([], 0.1) == 0


def test_fig2_abs_gaussian_panel_has_non_negative_outgoing_weights():
    from coresetlab.tasks.neuron.approx import synthetic_layer

    g = torch.Generator().manual_seed(0)
    P, w = synthetic_layer("abs_gaussian", 500, 7, g, {"mean": 0.0, "std": 1.0})
    assert P.shape == (500, 8) and bool((P < 0).any())  # incoming weights stay N(0, 1)
    assert bool((w >= 0).all()) and abs(float(w.mean()) - math.sqrt(2 / math.pi)) < 0.1  # |N(0, 1)|
    with pytest.raises(ConfigError, match="abs_gaussian"):
        synthetic_layer("laplace", 5, 2, g, {})
