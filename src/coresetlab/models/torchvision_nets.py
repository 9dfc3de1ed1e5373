"""The ImageNet-family networks of Dubey et al. (2018) from torchvision, and their CIFAR-10 proxies.

``torchvision_net(arch, ...)`` builds AlexNet, VGG-16, ResNet-18/50/101 or SqueezeNet 1.0:

* ``proxy=None`` — torchvision's ImageNet architecture unchanged (224×224 inputs). ``weights`` loads a
  user's pretrained state dict (a local ``.pth`` holding torchvision's key names) or names a torchvision
  weight enum (``IMAGENET1K_V1`` / ``AlexNet_Weights.IMAGENET1K_V1``; needs the internet the first time).
* ``proxy="cifar10"`` — the same architecture adapted to 32×32 inputs (our documented choices; parameter
  counts beside the ImageNet originals in ``conf/model/tv_*.yaml``, pinned by tests):

  - AlexNet: stem conv 11×11/4 → 5×5/1 (pad 2); the three 3×3/2 max-pools then give 32→15→7→3, so the
    last max-pool works; adaptive pool to 3×3 (identity at 32×32); classifier 2304 → ``hidden`` → ``hidden``
    → 10 (dense layers keep most of the parameters, as in the ImageNet net).
  - VGG-16: the fifth max-pool is dropped so the last map is 2×2 (no 1×1 map stretched to 7×7), adaptive
    pool to 2×2, classifier 2048 → ``hidden`` → ``hidden`` → 10; ``batch_norm`` (BN after every conv) so a
    short CPU schedule trains it.
  - ResNet-18/50/101: CIFAR stem (3×3 conv, stride 1, no max-pool), ``fc`` to 10 classes.
  - SqueezeNet 1.0: stem conv 7×7/2 → 3×3/1 (pad 1); the three ceil-mode max-pools give 32→16→8→4;
    final 1×1 conv to 10 classes.

AlexNet, VGG-16 and SqueezeNet are returned as one ``nn.Sequential`` (``features``, pooling, ``flatten``,
``classifier``) with torchvision's parameter names, so torchvision state dicts load and the Dubey
pipeline sees a chain (cached-prefix evaluation, activation-based pruning across layers). ResNets are
torchvision's ``ResNet`` (not a chain): their blocks' internal widths are the pruning pairs.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from coresetlab.errors import ConfigError, DataError

ARCHS = ("alexnet", "vgg16", "resnet18", "resnet50", "resnet101", "squeezenet1_0")
PROXIES = (None, "cifar10")


def _alexnet(num_classes: int, proxy: str | None, hidden: int) -> nn.Module:
    from torchvision.models import alexnet

    net = alexnet(num_classes=num_classes)
    if proxy is None:
        if hidden != 4096:
            net.classifier[1] = nn.Linear(256 * 6 * 6, hidden)
            net.classifier[4] = nn.Linear(hidden, hidden)
            net.classifier[6] = nn.Linear(hidden, num_classes)
        return nn.Sequential(OrderedDict(features=net.features, avgpool=net.avgpool, flatten=nn.Flatten(),
                                         classifier=net.classifier))
    net.features[0] = nn.Conv2d(3, 64, kernel_size=5, stride=1, padding=2)
    classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(256 * 3 * 3, hidden), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes),
    )
    return nn.Sequential(OrderedDict(features=net.features, avgpool=nn.AdaptiveAvgPool2d(3), flatten=nn.Flatten(),
                                     classifier=classifier))


def _vgg16(num_classes: int, proxy: str | None, hidden: int, batch_norm: bool) -> nn.Module:
    from torchvision.models import vgg16, vgg16_bn

    net = (vgg16_bn if batch_norm else vgg16)(num_classes=num_classes)
    side = 7
    if proxy is not None:
        net.features = net.features[:-1]  # drop the fifth max-pool: 32×32 -> 2×2 last map
        side = 2
    if proxy is not None or hidden != 4096:
        net.classifier = nn.Sequential(
            nn.Linear(512 * side * side, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(hidden, num_classes),
        )
        for m in net.classifier:
            if isinstance(m, nn.Linear):  # torchvision's VGG init
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
    return nn.Sequential(OrderedDict(features=net.features, avgpool=nn.AdaptiveAvgPool2d(side), flatten=nn.Flatten(),
                                     classifier=net.classifier))


def _resnet(arch: str, num_classes: int, proxy: str | None) -> nn.Module:
    from torchvision import models

    net = getattr(models, arch)(num_classes=num_classes)
    if proxy is not None:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    return net


def _squeezenet(num_classes: int, proxy: str | None) -> nn.Module:
    from torchvision.models import squeezenet1_0

    net = squeezenet1_0(num_classes=num_classes)
    if proxy is not None:
        net.features[0] = nn.Conv2d(3, 96, kernel_size=3, stride=1, padding=1)
        nn.init.kaiming_uniform_(net.features[0].weight)
        nn.init.zeros_(net.features[0].bias)
    return nn.Sequential(OrderedDict(features=net.features, classifier=net.classifier, flatten=nn.Flatten()))


def _load_weights(model: nn.Module, arch: str, weights: str, proxy: str | None, num_classes: int) -> None:
    if any(p.is_meta for p in model.parameters()):
        return  # preflight builds models on the meta device: nothing to load
    path = Path(weights).expanduser()
    if path.suffix in (".pth", ".pt") or path.exists():
        if not path.is_file():
            raise DataError(f"model.weights: no file {path} (a state dict with torchvision's key names)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    else:
        if proxy is not None or num_classes != 1000:
            raise ConfigError("model.weights: torchvision's ImageNet weights need proxy=null and num_classes=1000")
        from torchvision.models import get_model_weights

        enum = get_model_weights(arch)
        try:
            w = enum[weights.split(".")[-1]]
        except KeyError:
            raise ConfigError(f"model.weights: unknown {weights!r} for {arch}; choose a local .pth or one of "
                              f"{[e.name for e in enum]}") from None
        state = w.get_state_dict(progress=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"model.weights {weights}: does not fit {arch} (proxy={proxy}): "
                          f"{str(e).splitlines()[0]}") from None


def torchvision_net(
    arch: str,
    num_classes: int = 1000,
    proxy: str | None = None,
    weights: str | None = None,
    hidden: int | None = None,
    batch_norm: bool = False,
    name: str | None = None,
) -> nn.Module:
    """Build ``arch`` (see the module docstring). ``hidden``: width of the two hidden dense layers of
    AlexNet / VGG-16 (default 4096 for ImageNet, 2048 for the proxies); ``batch_norm``: VGG-16 with BN."""
    if arch not in ARCHS:
        raise ConfigError(f"model.arch: unknown {arch!r}; choose one of {', '.join(ARCHS)}")
    if proxy not in PROXIES:
        raise ConfigError(f"model.proxy: unknown {proxy!r}; choose null (ImageNet) or cifar10")
    if hidden is not None and int(hidden) < 1:
        raise ConfigError(f"model.hidden must be >= 1, got {hidden}")
    hidden = int(hidden or (4096 if proxy is None else 2048))
    if arch == "alexnet":
        model = _alexnet(num_classes, proxy, hidden)
    elif arch == "vgg16":
        model = _vgg16(num_classes, proxy, hidden, batch_norm)
    elif arch == "squeezenet1_0":
        model = _squeezenet(num_classes, proxy)
    else:
        model = _resnet(arch, num_classes, proxy)
    if weights:
        _load_weights(model, arch, str(weights), proxy, num_classes)
    model.name = name or (arch if proxy is None else f"{arch}-{proxy}")
    return model
