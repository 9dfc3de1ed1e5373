"""CNN spine: VGG counts, channel surgery, BN folding, cost measurement, LR schedules, network slimming."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from coresetlab.measure import count_flops, latency_ms, network_cost
from coresetlab.methods.shared.channel_surgery import (
    chain_groups,
    conv_out_channels,
    fold_all_bn,
    fold_bn,
    prune_chain,
)
from coresetlab.methods.slimming import (
    NetworkSlimming,
    add_bn_l1_subgradient,
    bn_gammas,
    global_threshold,
    slimming_masks,
)
from coresetlab.models import count_params
from coresetlab.models.vgg import VGG, VGG_CFGS

TINY = [8, "M", 12, 12, "M", 16]  # two pools: 8×8 inputs end at 2×2 before the AvgPool2d(2), like VGG at 32×32


def _tiny(seed: int = 0, cfg=TINY) -> VGG:
    """A small VGG with random BN statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    m = VGG(cfg=cfg, name="tiny")
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.uniform_(0.3, 1.5)
                bn.bias.uniform_(-0.3, 0.3)
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
        m.classifier.weight.normal_()
    return m.eval()


def _x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# --- VGG -------------------------------------------------------------------------------------------
def test_vgg_parameter_counts_are_pinned():
    assert count_params(VGG("vgg19")) == 20_035_018
    slim = VGG("vgg19_slim70")
    assert count_params(slim) == 2_366_600
    assert slim.widths == [49, 64, 128, 128, 256, 254, 234, 198, 114, 41, 24, 11, 14, 13, 19, 104]
    assert round(100 * (1 - 2_366_600 / 20_035_018), 2) == 88.19
    # 70 % of the conv channels removed (AutoCL Table 1 / Table 3's compression ratio)
    assert abs(1 - sum(slim.widths) / sum(VGG("vgg19").widths) - 0.70) < 1e-3


def test_flops_are_pinned():
    # 2 FLOPs per multiply-add of convs + linear; Liu et al. 2017 give 7.97e8 for VGG-19 on CIFAR
    assert count_flops(VGG("vgg19"), (3, 32, 32)) == 796_272_640
    assert count_flops(VGG("vgg19_slim70"), (3, 32, 32)) == 416_652_184
    assert count_flops(nn.Linear(7, 5), (7,)) == 2 * 7 * 5


# --- channel surgery ----------------------------------------------------------------------------------
def test_chain_groups_of_vgg():
    m = _tiny()
    groups = chain_groups(m)
    assert [g.conv for g in groups] == ["features.0", "features.4", "features.7", "features.11"]
    assert [g.bn for g in groups] == ["features.1", "features.5", "features.8", "features.12"]
    assert [g.consumers for g in groups] == [["features.4"], ["features.7"], ["features.11"], ["classifier"]]


def test_keeping_every_channel_is_exact_in_any_order():
    m = _tiny()
    x = _x()
    keep = [torch.randperm(w, generator=torch.Generator().manual_seed(i)) for i, w in enumerate(m.widths)]
    p = prune_chain(m, keep)
    assert p is not m and p.cfg == m.cfg
    torch.testing.assert_close(p(x), m(x), rtol=1e-5, atol=1e-5)


def test_pruning_dead_channels_is_exact_and_rebuilds_the_cfg():
    m = _tiny()
    dead = {0: [1, 5], 1: [0], 2: [3, 4, 11], 3: [2, 7, 15]}  # channels whose BN output is 0 (γ = β = 0)
    with torch.no_grad():
        for i, chans in dead.items():
            bn = m.get_submodule(chain_groups(m)[i].bn)
            bn.weight[chans] = 0.0
            bn.bias[chans] = 0.0
    keep = [[c for c in range(w) if c not in dead.get(i, [])] for i, w in enumerate(m.widths)]
    p = prune_chain(m, keep)
    assert conv_out_channels(p) == [6, 11, 9, 13]
    assert p.cfg == [6, "M", 11, 9, "M", 13] and p.classifier.in_features == 13
    torch.testing.assert_close(p(_x()), m(_x()), rtol=1e-5, atol=1e-5)
    # the pruned network is an ordinary VGG of its cfg: its weights load into a fresh one
    fresh = VGG(cfg=p.cfg).eval()
    fresh.load_state_dict(p.state_dict())
    torch.testing.assert_close(fresh(_x()), p(_x()))


def test_pruning_live_channels_changes_the_function():
    m = _tiny()
    p = prune_chain(m, {1: list(range(6))})
    assert conv_out_channels(p) == [8, 6, 12, 16]
    assert not torch.allclose(p(_x()), m(_x()), atol=1e-3)


def test_consumer_scale_equals_scaling_the_channel_output():
    """ReLU is positively homogeneous: scaling the consumer's input slice by s = scaling BN's γ and β by s."""
    m = _tiny()
    s = torch.linspace(0.5, 2.0, 12)
    p = prune_chain(m, {2: list(range(12))}, scales={2: s})
    ref = _tiny()
    with torch.no_grad():
        bn = ref.get_submodule(chain_groups(ref)[2].bn)
        bn.weight.mul_(s)
        bn.bias.mul_(s)
    torch.testing.assert_close(p(_x()), ref(_x()), rtol=1e-4, atol=1e-5)


class _FlatNet(nn.Module):
    """conv -> BN -> ReLU -> flatten (4 spatial positions per channel) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6), nn.Linear(24, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_linear_consumer_with_spatial_positions():
    torch.manual_seed(0)
    net = _FlatNet().eval()
    with torch.no_grad():
        net.bn.weight[[1, 4]] = 0.0
        net.bn.bias[[1, 4]] = 0.0
    x = torch.randn(3, 3, 2, 2)
    p = prune_chain(net, [[0, 2, 3, 5]])
    assert p.fc.in_features == 16 and p.conv.out_channels == 4 and p.conv.bias.shape == (4,)
    torch.testing.assert_close(p(x), net(x), rtol=1e-5, atol=1e-6)


def test_surgery_rejects_bad_plans():
    m = _tiny()
    with pytest.raises(ValueError, match="at least one"):
        prune_chain(m, {0: []})
    with pytest.raises(ValueError, match="out of range"):
        prune_chain(m, {0: [0, 8]})
    with pytest.raises(ValueError, match="distinct"):
        prune_chain(m, {0: [1, 1]})
    with pytest.raises(ValueError, match="layer index"):
        prune_chain(m, {9: [0]})


def test_bn_folding_is_exact():
    m = _tiny()
    conv, bn = m.features[0], m.features[1]
    x = _x()
    torch.testing.assert_close(fold_bn(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
    folded = fold_all_bn(m)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in folded.modules())
    torch.testing.assert_close(folded(x), m(x), rtol=1e-5, atol=1e-5)


# --- cost measurement -----------------------------------------------------------------------------------
def test_network_cost_reports_params_flops_latency():
    m = _tiny()
    m.train()
    c = network_cost(m, (3, 8, 8), {1: (1, 2), 8: (0, 1)})
    assert c["params"] == count_params(m) and c["flops"] == count_flops(m, (3, 8, 8)) > 0
    assert c["latency_b1_ms"] > 0 and c["latency_b8_ms"] > 0 and c["threads"] >= 1 and c["device"] == "cpu"
    assert m.training  # measuring restores the mode
    with pytest.raises(ValueError):
        latency_ms(m, (3, 8, 8), 1, reps=0)


# --- schedules --------------------------------------------------------------------------------------------
def _lrs(sched_kwargs, steps, lightning_epoch_steps: int | None = None):
    from coresetlab.lit.schedules import StepwiseLR

    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sch = StepwiseLR(opt, **sched_kwargs)
    out = []
    for t in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if lightning_epoch_steps and (t + 1) % lightning_epoch_steps == 0:
            sch.step()  # Lightning's per-epoch call must not change the schedule
    return out, sch, opt


def test_stepwise_multistep_equals_epoch_multisteplr():
    spe = 3
    got, _, _ = _lrs(dict(kind="multistep", epochs=8, steps_per_epoch=spe, milestones=[0.5, 0.75]), 8 * spe, spe)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref_s = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[4, 6], gamma=0.1)
    ref = []
    for _ in range(8):
        ref += [opt.param_groups[0]["lr"]] * spe
        opt.step()
        ref_s.step()
    assert got == pytest.approx(ref)


def test_stepwise_onecycle_shape_and_resume():
    kw = dict(kind="onecycle", epochs=4, steps_per_epoch=5, pct_start=0.25, div_factor=10, final_div_factor=100)
    lrs, sch, _ = _lrs(kw, 20, 5)
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 5
    assert lrs[-1] < 0.002 and all(a >= b for a, b in zip(lrs[5:], lrs[6:]))
    # resume: a new scheduler loaded from the state continues where the first one stopped
    _, sch2, opt2 = _lrs(kw, 0)
    half, sch_half, _ = _lrs(kw, 12)
    sch2.load_state_dict(sch_half.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[12])


def test_stepwise_needs_steps_per_epoch():
    from coresetlab.errors import ConfigError

    with pytest.raises(ConfigError, match="steps_per_epoch"):
        _lrs(dict(kind="onecycle", epochs=2, steps_per_epoch=None), 1)
    with pytest.raises(ConfigError, match="kind"):
        _lrs(dict(kind="cosine", epochs=2, steps_per_epoch=3), 1)


# --- network slimming -------------------------------------------------------------------------------------
def test_global_threshold_is_the_authors_rule():
    g = [torch.tensor([0.1, 0.5, 0.3]), torch.tensor([0.2, 0.9, 0.05, 0.7])]
    # sorted: .05 .1 .2 .3 .5 .7 .9 ; index int(7 * 0.5) = 3 -> 0.3; keep |γ| > 0.3
    assert global_threshold(g, 0.5) == pytest.approx(0.3)
    masks, thr, guarded = slimming_masks(g, 0.5)
    assert [m.tolist() for m in masks] == [[False, True, False], [False, True, False, True]] and guarded == []


def test_slimming_guard_keeps_the_top_channel_of_an_emptied_layer():
    g = [torch.tensor([0.01, 0.02, 0.015]), torch.tensor([0.8, 0.9, 0.7, 0.6])]
    masks, _, guarded = slimming_masks(g, 0.5)
    assert guarded == [0] and masks[0].tolist() == [False, True, False]
    masks, _, guarded = slimming_masks(g, 0.5, min_channels=2)
    assert masks[0].tolist() == [False, True, True]


def test_slim_chain_prunes_the_smallest_gammas_globally():
    m = _tiny()
    method = NetworkSlimming(percent=0.5)
    pruned, info = method.prune(m)
    gam = torch.cat(bn_gammas(m))
    assert sum(info["widths_after"]) == int((gam > info["threshold"]).sum())
    assert info["widths_after"] == conv_out_channels(pruned) and info["widths_before"] == m.widths
    assert pruned(_x()).shape == (4, 10) and pruned.cfg[1] == "M"
    assert 0.45 <= info["channels_removed"] <= 0.55


def test_bn_l1_subgradient_and_callback():
    from coresetlab.lit.sparsity import BNSparsity

    m = _tiny()
    m(_x()).sum().backward()
    bn = m.features[1]
    before = bn.weight.grad.clone()
    add_bn_l1_subgradient(m, 1e-2)
    torch.testing.assert_close(bn.weight.grad, before + 1e-2 * torch.sign(bn.weight.detach()))

    class _Mod:
        model = m

    BNSparsity(1e-2).on_before_optimizer_step(None, _Mod(), None)  # type: ignore[arg-type]
    torch.testing.assert_close(bn.weight.grad, before + 2e-2 * torch.sign(bn.weight.detach()))
    assert m.features[0].weight.grad is not None  # convs untouched by the term (no crash on non-BN modules)


def test_vgg_cfgs_unchanged():
    assert VGG_CFGS["vgg19_slim70"] == [49, 64, "M", 128, 128, "M", 256, 254, 234, 198, "M", 114, 41, 24, 11, "M",
                                        14, 13, 19, 104]


def test_phase_budget_draws_fresh_images_each_epoch_and_sizes_the_schedule():
    """``train_images`` gives every epoch of a phase that many distinct random training images, and the
    one-cycle schedule is sized to that epoch (not to the whole split)."""
    from omegaconf import OmegaConf

    from coresetlab.data.common import TensorBatchDataset
    from coresetlab.errors import ConfigError
    from coresetlab.tasks.cnn.common import phase_cfg, phase_loader

    class DM:
        ds = TensorBatchDataset(torch.arange(100).float().view(100, 1), torch.arange(100))

        def dataset(self, split):
            return self.ds

        def loader(self, split, bs):
            return "whole-split"

    node = OmegaConf.create({"batch_size": 8, "train_images": 30, "epochs": 2,
                             "scheduler": {"_target_": "coresetlab.lit.schedules.StepwiseLR", "steps_per_epoch": None}})
    loader = phase_loader(DM(), node, seed=0)
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    assert [len(e) for e in epochs] == [30, 30] and all(len(set(e.tolist())) == 30 for e in epochs)
    assert set(epochs[0].tolist()) != set(epochs[1].tolist())  # a fresh draw each epoch
    assert phase_cfg(DM(), node).scheduler.steps_per_epoch == 4  # ceil(30 / 8)
    assert phase_loader(DM(), OmegaConf.merge(node, {"train_images": None}), seed=0) == "whole-split"
    with pytest.raises(ConfigError):
        phase_loader(DM(), OmegaConf.merge(node, {"train_images": 0}), seed=0)


def test_cifar_resnet_parameter_counts_are_pinned():
    from coresetlab.models.resnet_cifar import CifarResNet

    assert count_params(CifarResNet(56)) == 853_018  # He et al. 2016 Table 6: 0.85M
    assert count_params(CifarResNet(20)) == 269_722  # 0.27M
    half = CifarResNet(56, mid_widths=[w // 2 for w in CifarResNet(56).mid_widths])
    assert count_params(half) < 0.55 * 853_018
    import torch

    assert half(torch.randn(2, 3, 32, 32)).shape == (2, 10)
