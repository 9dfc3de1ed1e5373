"""Filter coresets and the channel baselines (methods/structured): exactness at full size, unbiasedness of the
consumer-side reweighting on a conv layer, equal budgets, L1 selection, configs, the worst-case search."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.structured import (
    FilterCoreset,
    L1Filter,
    UniformChannels,
    filter_sensitivity,
    worst_case_conv,
)
from coresetlab.methods.structured.filter_coreset import interval_sup, sample_channels
from coresetlab.models.resnet_cifar import CifarResNet
from coresetlab.models.vgg import VGG

torch.set_num_threads(1)


def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in model.modules():
            if isinstance(b, nn.BatchNorm2d):
                n = b.num_features
                b.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                b.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                b.weight.copy_(0.2 + torch.rand(n, generator=g))
                b.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model.eval()


def _seq() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.Flatten(), nn.Linear(12 * 8 * 8, 5))


MODELS = {
    "vgg": (lambda: VGG(cfg=[8, "M", 16, "M", 16, 16]), (3, 8, 8)),  # 2×2 maps before the pool, as at 32×32
    "sequential": (_seq, (3, 16, 16)),
    "resnet20": (lambda: CifarResNet(20), (3, 8, 8)),
}
METHODS = [FilterCoreset, UniformChannels, L1Filter]


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.__name__)
def test_full_size_is_exact_and_smaller_below(arch, cls):
    build, shape = MODELS[arch]
    torch.manual_seed(1)
    model = _random_bn(build())
    x = torch.randn(4, *shape)
    with torch.no_grad():
        y = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full, info = cls(keep=1.0).prune(model, x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(full(x), y, atol=1e-5, rtol=1e-5)
    assert info["params_after"] == info["params_before"] and info["groups"]
    small, info = cls(keep=0.5).prune(model, x, torch.Generator().manual_seed(0))
    assert info["params_after"] < info["params_before"]
    assert all(g["width_after"] == max(1, round(0.5 * g["width_before"])) for g in info["groups"])
    with torch.no_grad():
        assert small(x).shape == y.shape
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # input untouched
    if arch == "resnet20":  # only the blocks' internal convs: the stage channels are coupled
        assert {g["layer"] for g in info["groups"]} == {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
        assert small.mid_widths == [8] * 3 + [16] * 3 + [32] * 3


def test_same_architecture_across_methods():
    model = _random_bn(VGG(cfg=[10, "M", 7, 5]))
    x = torch.randn(2, 3, 4, 4)
    widths = {cls.__name__: cls(keep=0.3).prune(model, x, torch.Generator().manual_seed(3))[0].widths
              for cls in METHODS}
    assert len(set(map(tuple, widths.values()))) == 1 and widths["L1Filter"] == [3, 2, 2]


def test_l1_keeps_largest_filters():
    model = _random_bn(VGG(cfg=[6, 4]))
    with torch.no_grad():
        model.features[0].weight.mul_(torch.tensor([1.0, 5, 0.1, 3, 0.2, 4]).view(-1, 1, 1, 1))
    norms = model.features[0].weight.abs().sum((1, 2, 3))
    small, _ = L1Filter(keep=0.5).prune(model)
    w = small.features[0].weight
    assert torch.equal(w, model.features[0].weight[torch.topk(norms, 3).indices.sort().values])


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5, "x"])
@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.__name__)
def test_bad_keep_is_a_config_error(cls, keep):
    with pytest.raises(ConfigError):
        cls(keep=keep)


def test_configs_instantiate(compose):
    for name, cls in [("filter_coreset", FilterCoreset), ("channel_uniform", UniformChannels), ("l1_filter", L1Filter)]:
        m = instantiate(compose(f"coreset_method={name}", "coreset_method.keep=0.25").coreset_method)
        assert isinstance(m, cls) and m.name == name and m.keep == 0.25 and m.validate() is m
    with pytest.raises(ConfigError):
        FilterCoreset(weighting="bogus")


def test_sensitivity_bound_holds_and_relu_sup():
    torch.manual_seed(0)
    conv, bn, cons = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Conv2d(6, 4, 3, padding=1)
    _random_bn(nn.Sequential(bn))
    beta = 2.0
    s = filter_sensitivity(conv, bn, [cons], beta, normalize=False)
    x = torch.randn(64, 3, 5, 5)
    x = beta * x / x.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # whole input in the ball: every patch too
    with torch.no_grad():
        a = torch.relu(bn.eval()(conv(x)))
        for p in range(6):  # contribution of channel p to every consumer output and position
            contrib = nn.functional.conv2d(a[:, p:p + 1], cons.weight[:, p:p + 1], padding=1)
            assert float(contrib.abs().max()) <= float(s[p]) + 1e-6
    lo, hi = torch.tensor([-3.0, -1.0, 0.5]), torch.tensor([-2.0, 2.0, 1.5])
    assert torch.allclose(interval_sup("relu", lo, hi), torch.tensor([0.0, 2.0, 1.5]))
    assert torch.allclose(interval_sup("gelu", torch.tensor([-1.0]), torch.tensor([-0.5])), torch.tensor([0.17]), atol=1e-3)


@torch.no_grad()
def test_reweighted_consumer_is_unbiased_on_a_conv_layer():
    """8 channels, k = 4: over many draws the mean reweighted consumer pre-activation equals the full one --
    inclusion weighting (draw until 4 distinct, 4000 draws) and counts weighting (Algorithm 2, m = 6 i.i.d.
    draws, where it is unbiased; with "distinct" it is biased, see methods/shared/sampling.py) -- and
    without the reweighting it is far off."""
    torch.manual_seed(0)
    conv, bn, cons = nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 3, padding=1, bias=False)
    _random_bn(nn.Sequential(bn))
    x = torch.randn(2, 2, 6, 6)
    a = torch.relu(bn(conv(x))).double()
    w = cons.weight.double()
    z = nn.functional.conv2d(a, w, padding=1)
    probs = filter_sensitivity(conv, bn, [cons], beta=3.0)
    assert float(probs.max() / probs.min()) > 5  # far from uniform: a wrong weighting shows
    # the estimate is linear in the per-channel factors c_p = 1{p kept}·scale_p: mean z̃ = Σ_p mean(c_p) z_p
    zp = torch.stack([nn.functional.conv2d(a[:, p:p + 1], w[:, p:p + 1], padding=1) for p in range(8)])
    g = torch.Generator().manual_seed(0)
    for weighting, mode, size, draws in [("inclusion", "distinct", 4, 4000), ("counts", "m", 6, 2000)]:
        c = torch.zeros(8, dtype=torch.float64)
        c_raw = torch.zeros(8, dtype=torch.float64)
        for _ in range(draws):
            sm = sample_channels(probs, size, mode, weighting, g)
            c[sm.indices] += sm.scale
            c_raw[sm.indices] += 1.0
        mean = c / draws
        assert float((mean - 1).abs().max()) < 0.1, (weighting, mean)
        est = (mean.view(-1, 1, 1, 1, 1) * zp).sum(0)
        assert float((est - z).norm() / z.norm()) < 0.03, weighting
        plain = ((c_raw / draws).view(-1, 1, 1, 1, 1) * zp).sum(0)  # the kept channels, not reweighted
        assert float((plain - z).norm() / z.norm()) > 0.3


def test_worst_case_conv_runs_and_coreset_is_exact_at_full_size():
    torch.manual_seed(0)
    conv, bn, cons = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1)
    _random_bn(nn.Sequential(bn))
    g = torch.Generator().manual_seed(0)
    res = worst_case_conv(conv, bn, cons, 0.5, beta=2.0, steps=10, generator=g, input_shape=(3, 6, 6), restarts=4)
    assert set(res) == {"filter_coreset", "channel_uniform", "l1_filter"} and all(v > 0 for v in res.values())
    full = worst_case_conv(conv, bn, cons, 1.0, methods=["filter_coreset", "l1"], beta=2.0, steps=5, generator=g,
                           input_shape=(3, 6, 6), restarts=2)
    assert max(full.values()) < 1e-12
    lin = nn.Linear(8 * 4 * 4, 3)
    out = worst_case_conv(conv, bn, lin, 0.5, methods=["uniform"], beta=1.0, steps=5, generator=g,
                          input_shape=(3, 4, 4), restarts=2, normalizer="output")
    assert out["channel_uniform"] > 0


def test_conv_layer_errors_with_data_bounds_the_data_errors():
    """The ascent starts from the worst data points, so its worst case can never be below the data maximum."""
    from coresetlab.methods.structured.worst_case_conv import conv_layer_errors

    torch.manual_seed(1)
    conv, bn, cons = nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1)
    _random_bn(nn.Sequential(bn))
    data = torch.relu(torch.randn(20, 4, 4, 4))
    beta = float(data.flatten(1).norm(dim=1).max())
    g = torch.Generator().manual_seed(0)
    res = conv_layer_errors(conv, bn, cons, 0.5, beta=beta, steps=5, generator=g, input_shape=(4, 4, 4),
                            restarts=2, data=data, init_top=3)
    for r in res.values():
        assert 0 < r["err_avg"] <= r["err_max_data"] <= r["err_worst"] + 1e-12
        assert r["worst_over_avg"] == pytest.approx(r["err_worst"] / r["err_avg"])
    with pytest.raises(ValueError):
        conv_layer_errors(conv, bn, cons, 0.5, beta=beta, steps=1, input_shape=(4, 5, 5), data=data)
