"""Dubey et al. on the ImageNet-family networks: dataset=imagenet, torchvision nets and their CIFAR-10 proxies,
exact full-rank factorisation, real serialised sizes, and the experiments (issue 13)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from tests.conftest import load_results
from torch import nn

from coresetlab.errors import DataError
from coresetlab.methods.dubey.compress import CoresetConfig, factor_layer
from coresetlab.methods.dubey.evaluation import SuffixEvaluator, accuracy, swapped
from coresetlab.methods.dubey.layers import (
    channel_pairs,
    compressible_layers,
    get_module,
    prune_outputs,
    replace_module,
    stage_chain,
)
from coresetlab.methods.dubey.serialize import load_model, save_model
from coresetlab.models import count_params
from coresetlab.models.torchvision_nets import torchvision_net

# (ImageNet original, CIFAR-10 proxy) parameter counts; the model configs' comments state the same numbers
COUNTS = {
    "alexnet": (61_100_840, 11_388_746),
    "vgg16": (138_357_544, 23_136_330),  # ImageNet: plain VGG-16; proxy: with BN (conf/model/tv_vgg16.yaml)
    "resnet18": (11_689_512, 11_173_962),
    "resnet50": (25_557_032, 23_520_842),
    "resnet101": (44_549_160, 42_512_970),
    "squeezenet1_0": (1_248_424, 729_034),
}
EXPERIMENTS = ["alexnet_dubey", "vgg16_dubey", "resnet18_dubey", "resnet50_dubey", "resnet101_dubey",
               "squeezenet_dubey"]


def _proxy(arch: str) -> nn.Module:
    return torchvision_net(arch, num_classes=10, proxy="cifar10", batch_norm=arch == "vgg16")


@pytest.mark.parametrize("arch", list(COUNTS))
def test_parameter_counts_imagenet_and_proxy(arch, repo):
    with torch.device("meta"):
        imagenet, proxy = torchvision_net(arch), _proxy(arch)
    assert (count_params(imagenet), count_params(proxy)) == COUNTS[arch]
    text = (repo / "conf" / "model" / f"tv_{arch}.yaml").read_text()
    assert f"{COUNTS[arch][0]:,}" in text and f"{COUNTS[arch][1]:,}" in text


def _random_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics so an exactness test can fail through them."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))


def _factorise_all(model: nn.Module, kind: str) -> int:
    n = 0
    for name in compressible_layers(model):
        layer = get_module(model, name)
        rank = min(layer.weight.reshape(layer.weight.shape[0], -1).shape) + 1  # full rank (capped by factor_layer)
        replace_module(model, name, factor_layer(layer, CoresetConfig(kind=kind), rank).module)
        n += 1
    return n


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_0", pytest.param("alexnet", marks=pytest.mark.slow),
                                  pytest.param("vgg16", marks=pytest.mark.slow),
                                  pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("resnet101", marks=pytest.mark.slow)])
def test_full_rank_factorisation_is_exact(arch):
    """Every conv/linear layer of the proxy as Ŵ·D at full rank (Coreset-K) computes the same function;
    residual shapes stay consistent (the forward pass runs) and every layer became two."""
    torch.manual_seed(0)
    model = _proxy(arch).eval()
    _random_bn(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        n = _factorise_all(model, "k")
        out = model(x)
    assert n == len([m for m in _proxy(arch).modules() if isinstance(m, nn.Conv2d | nn.Linear)])
    assert compressible_layers(model) == []  # nothing left dense
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))


def test_serialised_size_is_the_file_and_decodes_exactly(tmp_path):
    torch.manual_seed(0)
    cfg = {"_target_": "coresetlab.models.torchvision_nets.torchvision_net", "arch": "squeezenet1_0",
           "num_classes": 10, "proxy": "cifar10", "weights": None}
    model = _proxy("squeezenet1_0").eval()
    for name in ("features.0", "features.3.squeeze", "classifier.1"):
        layer = get_module(model, name)
        replace_module(model, name, factor_layer(layer, CoresetConfig(kind="k"), 4).module)
    size = save_model(model, tmp_path / "m.dcnn", cfg)
    assert size.file_bytes == os.path.getsize(tmp_path / "m.dcnn")
    loaded, _ = load_model(tmp_path / "m.dcnn")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))


def test_resnet_block_pairs_prune_internal_widths_only():
    """AP on a ResNet prunes block-internal widths (conv1 → conv2, and conv2 → conv3 in bottlenecks);
    the pruned network still runs and its block outputs keep their widths."""
    for arch, expect in (("resnet18", {"layer1.0.conv1": "layer1.0.conv2"}),
                         ("resnet50", {"layer1.0.conv1": "layer1.0.conv2", "layer1.0.conv2": "layer1.0.conv3"})):
        with torch.device("meta"):
            pairs = channel_pairs(_proxy(arch))
        for k, v in expect.items():
            assert pairs[k][0] == v
        assert "conv1" not in pairs and not any(k.endswith("conv3") or "downsample" in k for k in pairs)
    model = _proxy("resnet18").eval()
    pairs = channel_pairs(model)
    prune_outputs(model, pairs["layer2.1.conv1"], "layer2.1.conv1", torch.arange(0, 128, 2))
    assert model.layer2[1].conv1.out_channels == 64 and model.layer2[1].conv2.in_channels == 64
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_resnet_suffix_evaluation_matches_the_full_forward():
    """AP and the rank search re-run a ResNet only from the residual block holding the searched layer
    (stage_chain); with that layer swapped for a pruned or factorised one the accuracy equals a full
    forward pass, and the cached input is the block's, not the image's."""
    torch.manual_seed(0)
    model = _proxy("resnet18").eval()
    chain = stage_chain(model)
    assert chain is not None and [n for n, _ in chain][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1.0"]
    assert [n for n, _ in chain][-3:] == ["avgpool", "flatten", "fc"]
    x = torch.randn(48, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    y[24:] = (y[24:] + 1) % 10  # half right: accuracy 0.5
    for start, stage in (("layer3.1.conv2", "layer3.1"), ("layer2.0.downsample.0", "layer2.0"), ("fc", "fc"),
                         ("conv1", "conv1")):
        ev = SuffixEvaluator(model, x, y, start, batch_size=16)
        assert ev.index is not None and chain[ev.index][0] == stage
        assert (ev.cached.shape == x.shape) == (start == "conv1")
        small = factor_layer(get_module(model, start), CoresetConfig(kind="k"), rank=3).module
        with swapped(model, {start: small}):
            assert ev.accuracy(model) == accuracy(model, x, y, batch_size=16)
        assert ev.accuracy(model) == accuracy(model, x, y, batch_size=16) == 0.5


def test_imagenet_root_missing_names_the_layout(tmp_path):
    from coresetlab.data.imagenet import ImageNetDataModule

    with pytest.raises(DataError, match=r"train/<class>"):
        ImageNetDataModule(tmp_path / "nowhere").setup()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_compose_proxy_and_imagenet(compose, name):
    from hydra.utils import instantiate

    cfg = compose(f"+experiment={name}", "profile=smoke")
    assert cfg.model.proxy == "cifar10" and cfg.model.num_classes == 10 and cfg.dataset.name == "cifar10"
    assert cfg.coreset_method.coreset.layers  # smoke: a few layers only
    real = compose(f"+experiment={name}", "dataset=imagenet")
    assert real.model.proxy is None and real.model.num_classes == 1000
    assert real.coreset_method.coreset.layers is None
    with torch.device("meta"):
        assert count_params(instantiate(real.model)) == COUNTS[real.model.arch][0] + (
            8448 if real.model.arch == "vgg16" else 0)  # VGG-16 with BN (the proxy choice; batch_norm=false: plain)


def _synthetic_imagefolder(root, n_classes=3, per_class=6):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in range(n_classes):
            d = root / split / f"n0000{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                base = torch.zeros(3, 1, 1)
                base[c] = 1.0  # class = dominant colour, so the task is learnable
                img = (0.6 * base + 0.4 * torch.rand(3, 40, 48, generator=g)).clamp(0, 1)
                Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(d / f"{i}.JPEG")


def test_synthetic_imagefolder_end_to_end(run_cli, tmp_path):
    """dataset=imagenet on a generated ImageFolder: ResNet-18 (ImageNet architecture, 3 classes) at 64×64
    trained, AP + Coreset-K and SVD, written and decoded; test = the val/ folder."""
    _synthetic_imagefolder(tmp_path)
    _, run_dir = run_cli(
        "+experiment=resnet18_dubey", "profile=smoke", "dataset=imagenet", f"dataset.root={tmp_path}",
        "dataset.image_size=64", "dataset.val_size=3", "dataset.num_workers=0", "model.num_classes=3",
        "torch_threads=1", "+task.eval_precision=bf16", env={"CORESETLAB_CACHE": str(tmp_path / "cache")},
    )
    r = load_results(run_dir)
    assert r["status"] == "ok" and r["dataset"] == "imagenet" and r["model"] == "tv_resnet18"
    m = r["metrics"]
    assert m["parent_params"] == 11_689_512 - 1000 * 513 + 3 * 513
    variants = {row["variant"] for row in r["table"] if row.get("table") == "variants"}
    assert variants == {"parent", "ap_k", "svd"}
    for v in ("ap_k", "svd"):
        assert os.path.getsize(r["extra"]["variants"][v]["file"]["path"]) == m[f"{v}_bytes"]
        assert 0.0 <= m[f"{v}_test_acc"] <= 1.0 and m[f"{v}_params"] <= m["parent_params"]
        # an fp32 file decodes bit-identically (BN buffers included), so its accuracy is the coreset model's
        assert r["extra"]["variants"][v]["file_lossless"] is True
        assert m[f"{v}_coreset_test_acc"] == m[f"{v}_test_acc"]
    assert m["parent_bytes"] == os.path.getsize(run_dir / "models" / "parent.dcnn")


def test_identical_tensors_compares_every_parameter_and_buffer():
    from coresetlab.tasks.dubey.pipeline import identical_tensors

    a = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    b = copy.deepcopy(a)
    assert identical_tensors(a, b)
    b[1].running_mean += 1e-7  # a buffer, not a parameter
    assert not identical_tensors(a, b)
    assert not identical_tensors(a, torch.nn.Sequential(torch.nn.Linear(4, 3)))
