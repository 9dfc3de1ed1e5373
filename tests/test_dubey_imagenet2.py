"""Dubey et al. issue 13, part 2: Table 6 proxy (class subsets, fresh head), Figs 2/4 filter pruning, supp.
Figs 8–10 filter banks, Table 4's derived 'relative to AlexNet' column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import load_results
from torch import nn

from coresetlab.data.common import select_classes
from coresetlab.methods.dubey.layers import Factorized, filter_bank
from coresetlab.methods.dubey.pruning import n_keep, prune_filters
from coresetlab.report.plots_dubey_filters import filter_grid
from coresetlab.report.tables import relative_values
from coresetlab.tasks.dubey.domain_adaptation import fresh_head


def test_select_classes_remaps_in_given_order():
    y = torch.tensor([0, 5, 9, 5, 3, 7])
    idx, new = select_classes(y, [7, 5])
    assert idx.tolist() == [1, 3, 5] and new.tolist() == [1, 1, 0]


def _chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_prune_filters_removes_exactly_the_unkept_filters():
    model = _chain().eval()
    x = torch.randn(2, 3, 4, 4)
    pruned = prune_filters(model, {"0": torch.tensor([1, 4]), "2": torch.tensor([0, 2, 3])})
    assert pruned[0].out_channels == 2 and pruned[2].in_channels == 2 and pruned[5].in_features == 3 * 16
    ref = _chain().eval()  # same function as zeroing the removed filters (weights and biases)
    with torch.no_grad():
        for i, keep in ((0, [1, 4]), (2, [0, 2, 3])):
            drop = [j for j in range(ref[i].out_channels) if j not in keep]
            ref[i].weight[drop] = 0
            ref[i].bias[drop] = 0
    assert torch.allclose(pruned(x), ref(x), atol=1e-6)
    assert n_keep(64, 0.3) == 19 and n_keep(3, 0.01) == 1
    with pytest.raises(ValueError, match="no prunable outputs"):
        prune_filters(model, {"5": torch.tensor([0])})


def test_filter_bank_orders_coreset_filters_by_decompression_norm():
    basis, mix = nn.Conv2d(3, 3, 2), nn.Conv2d(3, 5, 1)
    with torch.no_grad():
        mix.weight.zero_()
        mix.weight[:, 0] = 0.1
        mix.weight[:, 1] = 3.0
        mix.weight[:, 2] = 1.0
    bank = filter_bank(Factorized(basis, mix))
    assert bank.shape == (3, 3, 2, 2)
    assert torch.equal(bank[0], basis.weight[1]) and torch.equal(bank[2], basis.weight[0])
    assert filter_bank(basis).shape == (3, 3, 2, 2)
    with pytest.raises(ValueError):
        filter_bank(nn.Linear(2, 2))
    grid = filter_grid(bank.numpy())
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3) and 0 <= grid.min() and grid.max() <= 1


def test_fresh_head_replaces_linear_and_factorised_heads():
    model = _chain()
    fresh_head(model, "5", 7, seed=0)
    assert isinstance(model[5], nn.Linear) and model[5].out_features == 7 and model[5].in_features == 64
    model[5] = Factorized(nn.Linear(64, 2), nn.Linear(2, 3))
    fresh_head(model, "5", 4, seed=0)
    assert isinstance(model[5], nn.Linear) and (model[5].in_features, model[5].out_features) == (64, 4)


def test_relative_values_divides_the_reference_mean():
    ok = pd.DataFrame({"experiment": ["alexnet_dubey", "alexnet_dubey", "squeezenet_dubey"],
                       "parent_bytes": [100.0, 300.0, 10.0], "ap_s_bytes": [None, None, 4.0]})
    part = ok[ok["experiment"] == "squeezenet_dubey"]
    rel = {"of": "ap_s_bytes", "where": {"experiment": "alexnet_dubey"}, "metric": "parent_bytes"}
    assert relative_values(ok, part, rel).tolist() == [50.0]
    assert relative_values(part, part, rel) is None   # no AlexNet run: no value (never a made-up one)


def test_domain_adaptation_composes(compose):
    cfg = compose("+experiment=domain_adaptation_dubey", "profile=smoke")
    assert list(cfg.dataset.classes) == [0, 1, 2, 3, 4] and list(cfg.task.target_classes) == [5, 6, 7, 8, 9]
    assert cfg.model.num_classes == 5 and cfg.model.name == "tv_alexnet"
    assert list(cfg.task.rows) == ["finetune", "scratch", "svd_ft", "prune_ft", "ap_s_ft"]
    plain = compose("+experiment=alexnet_dubey", "profile=smoke")
    assert "classes" not in plain.dataset and plain.model.num_classes == 10   # default cache keys unchanged
    assert {"ap_filter", "weight_filter", "l1_filter"} <= set(plain.task.sweep.variants)


@pytest.mark.slow
def test_domain_adaptation_smoke_run(run_cli):
    _, run_dir = run_cli("+experiment=domain_adaptation_dubey", "profile=smoke", "torch_threads=1")
    r = load_results(run_dir)
    rows = {row["row"]: row for row in r["table"] if row["table"] == "table6"}
    assert set(rows) == {"finetune", "scratch", "svd_ft", "prune_ft", "ap_s_ft"}
    assert rows["prune_ft"]["params"] < 0.2 * rows["finetune"]["params"]
    assert rows["finetune"]["params"] == rows["scratch"]["params"] == r["metrics"]["dense_params"]
    assert "[0,1,2,3,4->5,6,7,8,9]" in r["dataset"]


@pytest.mark.slow
def test_alexnet_filter_sweep_and_conv1_filters(run_cli):
    _, run_dir = run_cli("+experiment=alexnet_dubey", "profile=smoke", "torch_threads=1",
                         "coreset_method.variants=[s]", "coreset_method.coreset.layers=[features.0]",
                         "task.sweep.variants=[ap_filter,weight_filter,l1_filter]")
    r = load_results(run_dir)
    sweep = {row["variant"]: row for row in r["table"] if row["table"] == "sweep"}
    assert set(sweep) == {"ap_filter", "weight_filter", "l1_filter"}
    assert all(abs(s["filters_pruned"] - 0.5) < 0.01 and s["retained_fraction"] < 1 for s in sweep.values())
    f = r["extra"]["variants"]["s"]["filters"]
    assert f["compressed"] and np.load(run_dir / f["parent"]).shape == (64, 3, 5, 5)
    assert np.load(run_dir / f["after"]).shape[0] < 64


def test_bn_recalibration_restores_running_statistics_and_leaves_weights_alone():
    """recalibrate_bn: stale running statistics are replaced by the data's (cumulative average); learned
    parameters and the train/eval mode are untouched; a network without BN is a no-op."""
    import torch
    from torch import nn

    from coresetlab.methods.dubey.deep_compression import recalibrate_bn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    net.eval()
    net[1].running_mean.fill_(100.0)
    net[1].running_var.fill_(1e-3)
    x = torch.randn(64, 3, 8, 8) * 2 + 1
    before = {k: v.clone() for k, v in net.named_parameters()}
    assert recalibrate_bn(net, [x[:32], x[32:]]) == 1
    with torch.no_grad():
        h = net[0](x)
    torch.testing.assert_close(net[1].running_mean, h.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert not net.training and net[1].momentum == 0.1
    assert all(torch.equal(before[k], v) for k, v in net.named_parameters())
    with torch.no_grad():  # eval output now matches batch-statistics output
        net.train()
        y_train = net(x)
        net.eval()
        torch.testing.assert_close(net(x), y_train, atol=5e-2, rtol=5e-2)
    assert recalibrate_bn(nn.Sequential(nn.Linear(3, 2)), [torch.randn(4, 3)]) == 0
