"""``coresetlab.prune`` on user models: torchvision resnet18 and a user-defined Sequential CNN."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import coresetlab
from coresetlab.errors import ConfigError

torch.set_num_threads(1)


def _randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in model.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.copy_(0.1 * torch.randn(b.num_features, generator=g))
                b.running_var.copy_(0.5 + torch.rand(b.num_features, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    model = _randomize_bn(torchvision.models.resnet18(weights=None))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
    return model, x, y


def test_resnet18_exact_at_full_size_smaller_below(resnet18):
    model, x, y = resnet18
    full, rep = coresetlab.prune(model, x, method="filter_coreset", keep=1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(full(x), y, atol=1e-5, rtol=1e-4)
    assert rep["params_after"] == rep["params_before"] and rep["flops_after"] == rep["flops_before"]
    small, rep = coresetlab.prune(model, x, method="filter_coreset", keep=0.5, generator=torch.Generator().manual_seed(0))
    assert rep["params_after"] < rep["params_before"] and rep["flops_after"] < rep["flops_before"]
    # the eight basic blocks' internal channels are pruned; the residual stages are coupled and stay
    assert [g["layer"] for g in rep["groups"]] == [f"layer{s}.{b}.conv1" for s in (1, 2, 3, 4) for b in (0, 1)]
    assert small.layer1[0].conv1.out_channels == 32 and small.layer1[0].conv2.in_channels == 32
    assert small.layer1[0].conv2.out_channels == 64 and small.fc.in_features == 512
    with torch.no_grad():
        assert small(x).shape == y.shape and torch.equal(model(x), y)  # the input model is untouched


def test_user_sequential_and_options():
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10)))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
    for method in ("filter_coreset", "uniform", "l1"):
        full, rep = coresetlab.prune(model, x, method=method, keep=1.0)
        with torch.no_grad():
            assert torch.allclose(full(x), y, atol=1e-5)
        small, rep = coresetlab.prune(model, x, method=method, keep=0.25, ignored_layers=["4"])
        assert [m.out_channels for m in small if isinstance(m, nn.Conv2d)] == [4, 32]
        assert rep["skipped"] == [{"layer": "4", "reason": "ignored_layers"}] and rep["backend"] == "chain"
        assert rep["flops_after"] < rep["flops_before"] and rep["params_after"] < rep["params_before"]
    _, rep = coresetlab.prune(model, x, keep=0.5, beta=4.0, weighting="counts")
    assert all(g["beta"] == 4.0 for g in rep["groups"])
    with pytest.raises(ConfigError):
        coresetlab.prune(model, x, method="bogus")
    with pytest.raises(ConfigError):
        coresetlab.prune(model, x, keep=0.0)
    with pytest.raises(ConfigError):
        coresetlab.prune(model, None)
    with pytest.raises(ConfigError):
        coresetlab.prune(model, x, ignored_layers=["nope"])
