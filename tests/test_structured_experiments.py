"""Issue 12's CIFAR experiments: vgg19_filter_coreset, resnet56_filter_coreset, vgg16_neuron_coreset and
cifar_pruning_compare — configs in every profile, one shared parent per network, the VGG-16 dense head's counts,
the compare's own methods (slimming without sparsity phase, AutoCL at the same widths) on tiny networks, and
smoke runs end to end (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import load_results

REPO = Path(__file__).resolve().parents[1]
# The filter/uniform/L1 methods and their configs come from the "filter" branch (coresetlab.methods.structured).
FILTER_METHODS = all((REPO / "conf" / "coreset_method" / f"{n}.yaml").exists()
                     for n in ("filter_coreset", "channel_uniform", "l1_filter"))
needs_filter = pytest.mark.skipif(not FILTER_METHODS, reason="filter/uniform/L1 method configs not merged yet")
PROFILES = ("paper", "fast", "smoke")


def _parent_key(cfg) -> str:
    from coresetlab.lit.parents import parent_key, parent_recipe
    from coresetlab.tasks.cnn.common import with_steps_per_epoch

    return parent_key(parent_recipe(cfg.model, cfg.dataset, with_steps_per_epoch(cfg.task.parent, 45000), cfg.seed))


@needs_filter
@pytest.mark.parametrize("profile", PROFILES)
def test_filter_experiments_compose_and_share_parents(compose, profile):
    """Every experiment resolves in every profile, and each network has ONE cached parent across experiments."""
    vgg = [compose(f"+experiment={n}", f"profile={profile}") for n in ("vgg19_autocl", "vgg19_slimming",
                                                                        "vgg19_filter_coreset")]
    vgg.append(compose("+experiment=cifar_pruning_compare", f"profile={profile}", "model=vgg19"))
    res = [compose("+experiment=resnet56_filter_coreset", f"profile={profile}"),
           compose("+experiment=cifar_pruning_compare", f"profile={profile}", "model=resnet56",
                   "coreset_method=autocl_same_widths", "coreset_method.keep=0.3")]
    for cfg in vgg + res:
        OmegaConf.to_container(cfg, resolve=True)
    assert len({_parent_key(c) for c in vgg}) == 1 and len({_parent_key(c) for c in res}) == 1
    assert _parent_key(vgg[0]) != _parent_key(res[0])
    fc = vgg[2]
    assert fc.coreset_method.keep == 0.3 and fc.artefact == "structured/vgg19"
    assert OmegaConf.to_container(fc.task.finetune, resolve=True) == \
        OmegaConf.to_container(vgg[1].task.finetune, resolve=True)   # vgg19_slimming's fine-tune recipe
    assert res[0].coreset_method.keep == 0.5 and res[1].coreset_method.widths_from.keep == 0.3
    if profile == "paper":
        p = res[0].task.parent
        assert (p.epochs, p.batch_size, p.optimizer.lr, p.optimizer.weight_decay, p.scheduler.kind) == \
            (164, 128, 0.1, 1e-4, "multistep") and [round(f * 164) for f in p.scheduler.milestones] == [82, 123]
        assert res[0].dataset.augment is True


@pytest.mark.parametrize("profile", PROFILES)
def test_conv_worst_case_composes_on_the_shared_vgg19_parent(compose, profile):
    cfgs = [compose(f"+experiment={n}", f"profile={profile}") for n in ("conv_worst_case", "vgg19_autocl")]
    OmegaConf.to_container(cfgs[0], resolve=True)
    assert _parent_key(cfgs[0]) == _parent_key(cfgs[1])


@pytest.mark.parametrize("profile", PROFILES)
def test_vgg16_neuron_coreset_composes(compose, profile):
    cfg = compose("+experiment=vgg16_neuron_coreset", f"profile={profile}")
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.model.head == [950, 950] and cfg.task.compression.rate == 0.75
    other = compose("+experiment=vgg16_neuron_coreset", f"profile={profile}", "coreset_method=neuron_uniform")
    assert _parent_key(cfg) == _parent_key(other)   # coreset and uniform rows share the parent


def test_vgg16_head_counts_and_vgg19_unchanged():
    from coresetlab.methods.shared.mlp_surgery import hidden_widths_for_compression, params_of_widths
    from coresetlab.models import count_params
    from coresetlab.models.vgg import VGG

    head = VGG("vgg16", head=[950, 950])
    assert head.dense_params == 1_400_310 and count_params(head) == 16_119_222
    assert head.classifier.widths == [512, 950, 950, 10]
    hidden = hidden_widths_for_compression(head.classifier.widths, 0.75)
    assert hidden == [385, 385] and params_of_widths([512, *hidden, 10]) == 349_975
    plain = VGG("vgg19")
    assert count_params(plain) == 20_035_018 and isinstance(plain.classifier, torch.nn.Linear)
    assert "classifier.weight" in plain.state_dict() and plain.dense_params == 5_130


def _random_gammas(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.01
    return model.eval()


def test_slimming_without_sparsity_phase_on_resnet_and_vgg():
    from coresetlab.errors import ConfigError
    from coresetlab.methods.slimming import SlimmingNoSparsity
    from coresetlab.models.resnet_cifar import CifarResNet
    from coresetlab.models.vgg import VGG

    net = _random_gammas(CifarResNet(20))
    small, info = SlimmingNoSparsity(keep=0.5).validate().prune(net, None, None)
    assert abs(sum(small.mid_widths) - sum(net.mid_widths) / 2) <= 1 and small.mid_widths != [w // 2 for w in net.mid_widths]
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    kept = [torch.nonzero(b.bn1.weight.abs() > info["threshold"]).flatten() for b in
            (blk for layer in (net.layer1, net.layer2, net.layer3) for blk in layer)]
    blk, sblk = net.layer2[1], small.layer2[1]
    assert torch.equal(sblk.bn1.weight, blk.bn1.weight[kept[4]])   # the largest |γ| channels survive
    assert torch.equal(sblk.conv2.weight, blk.conv2.weight[:, kept[4]])
    vgg = _random_gammas(VGG("vgg11"))
    small_v, _ = SlimmingNoSparsity(keep=0.3).prune(vgg, None, None)
    assert abs(sum(small_v.widths) - 0.3 * sum(vgg.widths)) <= 1
    with pytest.raises(ConfigError, match="keep"):
        SlimmingNoSparsity(keep=0.0).validate()


def test_autocl_student_has_the_widths_of_the_given_pruning_and_fresh_weights():
    from coresetlab.methods.autocl.student import ReinitStudent
    from coresetlab.models.resnet_cifar import CifarResNet

    net = _random_gammas(CifarResNet(20))
    rule = {"_target_": "coresetlab.methods.slimming.SlimmingNoSparsity", "keep": 0.5}
    small, info = ReinitStudent(0.5, rule).validate().prune(net, None, generator=torch.Generator().manual_seed(0))
    ref, _ = ReinitStudent(0.5, rule).prune(net, None, generator=torch.Generator().manual_seed(0))
    pruned, _ = __import__("coresetlab.methods.slimming", fromlist=["x"]).SlimmingNoSparsity(0.5).prune(net)
    assert small.mid_widths == pruned.mid_widths and info["reinitialised"] is True
    assert not torch.equal(small.layer1[0].conv1.weight, pruned.layer1[0].conv1.weight)
    assert torch.equal(small.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)   # seeded by the generator
    assert all(float(b.running_var.mean()) == 1.0 for b in small.modules() if isinstance(b, torch.nn.BatchNorm2d))


def test_dense_head_neuron_coreset_surgery():
    """The task's surgery on a tiny VGG with a head: coreset widths, dense counts, betas of every dense layer."""
    from coresetlab.methods.neuron.coreset import NeuronSelector
    from coresetlab.methods.shared.mlp_surgery import compress_mlp
    from coresetlab.models.vgg import VGG
    from coresetlab.tasks.cnn.neuron_head import dense_params

    torch.manual_seed(0)
    net = VGG(cfg=[8, "M", 8, "M", 8, "M", 8, "M", 16], head=[40, 40]).eval()
    head, info = compress_mlp(net.classifier, [10, 10], NeuronSelector(method="coreset", beta=None),
                              generator=torch.Generator().manual_seed(0), betas={0: 3.0, 1: 5.0})
    assert head.widths == [16, 10, 10, 10] and [r["layer"] for r in info] == [1, 0]
    small = VGG(cfg=[8, "M", 8, "M", 8, "M", 8, "M", 16], head=[10, 10])
    small.load_state_dict({**{k: v for k, v in net.state_dict().items() if not k.startswith("classifier")},
                           **{f"classifier.{k}": v for k, v in head.state_dict().items()}})
    assert dense_params(net) == 17 * 40 + 41 * 40 + 41 * 10 and dense_params(small) == 17 * 10 + 11 * 10 + 11 * 10
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_wrong_method_kinds_stop_before_any_data(compose):
    from coresetlab.errors import ConfigError
    from coresetlab.tasks.cnn import filter_pruning, neuron_head

    cfg = compose("+experiment=vgg16_neuron_coreset", "profile=smoke", "model=vgg16")
    with pytest.raises(ConfigError, match="dense head"):
        neuron_head.run(cfg, ctx=None)
    cfg = compose("+experiment=vgg16_neuron_coreset", "profile=smoke", "coreset_method=network_slimming")
    with pytest.raises(ConfigError, match="not a neuron selector"):
        neuron_head.run(cfg, ctx=None)
    cfg.coreset_method = OmegaConf.create({"_target_": "coresetlab.methods.slimming.NetworkSlimming"})
    with pytest.raises(ConfigError, match="not a structured pruning method"):
        filter_pruning.build_method(cfg)   # NetworkSlimming.prune(model) lacks example_inputs / generator


# ---- end to end (slow: each run trains a smoke parent the first time) -------------------------------------------


@pytest.fixture(scope="module")
def smoke_runs(run_cli):
    out = {}
    specs = {"vgg16_neuron_coreset": ("+experiment=vgg16_neuron_coreset",)}
    if FILTER_METHODS:
        specs["vgg19_filter_coreset"] = ("+experiment=vgg19_filter_coreset",)
        specs["compare_r56_autocl"] = ("+experiment=cifar_pruning_compare", "model=resnet56",
                                       "coreset_method=autocl_same_widths", "coreset_method.keep=0.3")
    for name, ov in specs.items():
        _, run_dir = run_cli(*ov, "profile=smoke", "torch_threads=2")
        out[name] = load_results(run_dir)
    return out


@pytest.mark.slow
def test_vgg16_neuron_coreset_smoke(smoke_runs):
    r = smoke_runs["vgg16_neuron_coreset"]
    m = r["metrics"]
    assert r["status"] == "ok" and r["model"] == "vgg16_head950" and r["method"] == "neuron_coreset"
    assert (m["dense_params_before"], m["dense_params_after"]) == (1_400_310, 349_975)
    assert (m["head_width_l1"], m["head_width_l2"]) == (385, 385)
    assert r["params_before"] - r["params_after"] == 1_400_310 - 349_975 and m["compression_ratio"] == 0.0


@pytest.mark.slow
@needs_filter
def test_vgg19_filter_coreset_smoke(smoke_runs):
    r = smoke_runs["vgg19_filter_coreset"]
    m = r["metrics"]
    assert r["status"] == "ok" and r["model"] == "vgg19" and r["method"] == "filter_coreset" and m["keep"] == 0.3
    assert r["params_before"] == 20_035_018 and 0.05 < m["params_kept"] < 0.2
    assert 0.65 <= m["compression_ratio"] <= 0.75 and m["flops"] < m["flops_parent"]
    assert m["finetune_images"] == 128 and m["extra_train_images"] == 0 and m["latency_b1_ms"] > 0


@pytest.mark.slow
@needs_filter
def test_compare_autocl_run_reports_its_matching_as_extra_training(smoke_runs):
    r = smoke_runs["compare_r56_autocl"]
    m = r["metrics"]
    assert r["status"] == "ok" and r["model"] == "resnet56" and r["method"] == "autocl_student"
    assert m["keep"] == 0.3 and m["match_images"] == m["extra_train_images"] == 128 and m["finetune_images"] == 128
    assert r["params_after"] < 0.5 * r["params_before"] and "eps_test" in m
