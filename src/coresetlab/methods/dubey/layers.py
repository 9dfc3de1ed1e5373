"""Layer algebra shared by the Dubey et al. (ECCV 2018) pipeline: weight matrices, factorised layers, surgery.

Convention (paper §3.3, with the bias appended as in the supplement): a layer with ``N`` filters of
``d = C·h·w (+1 with bias)`` coordinates is the matrix ``W ∈ R^{d×N}`` whose *columns* are the filters
(the issue writes the transpose ``N × (C h w + 1)``). A rank-``r`` coreset is ``W ≈ Ŵ D`` with
``Ŵ ∈ R^{d×r}`` (the ``r`` coreset filters) and the decompression matrix ``D ∈ R^{r×N}``; column ``n`` of
``D`` rebuilds filter ``n``. :class:`Factorized` runs that product as two real layers — a convolution
with ``r`` filters (``Ŵ``, its last row as bias) followed by a 1×1 recombination (``Dᵀ``), or two thin
linears — so parameter count and speed are genuine.

Everything here is generic over ``nn.Conv2d`` / ``nn.Linear`` (any kernel, stride, padding) so that the
same code compresses LeNet-5 and the ImageNet-family networks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Compressible = nn.Conv2d | nn.Linear


class Factorized(nn.Module):
    """``mix(basis(x))``: ``basis`` has ``r`` outputs (the coreset filters Ŵ), ``mix`` maps them to ``N``.

    For a convolution, ``basis`` is a conv with the original kernel/stride/padding and ``mix`` a 1×1
    conv; for a linear layer both are ``nn.Linear``. The bias lives in ``basis`` (Dubey et al.: bias
    appended to each filter) or, for the weight-only SVD baseline, in ``mix``.
    """

    def __init__(self, basis: Compressible, mix: Compressible) -> None:
        super().__init__()
        self.basis, self.mix = basis, mix

    @property
    def rank(self) -> int:
        return n_outputs(self.basis)

    @property
    def out_channels(self) -> int:
        return n_outputs(self.mix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.basis(x))


LayerLike = nn.Conv2d | nn.Linear | Factorized


def n_outputs(m: nn.Module) -> int:
    """Number of filters / output units of a conv, linear or factorised layer."""
    return m.out_channels if isinstance(m, Factorized | nn.Conv2d) else m.out_features


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- weight matrices ---------------------------------------------------------------------------------------
def weight_matrix(layer: Compressible, with_bias: bool = True) -> torch.Tensor:
    """``W ∈ R^{d×N}``: column ``n`` is filter ``n`` flattened (C, h, w order), plus its bias as last row."""
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    if with_bias and layer.bias is not None:
        w = torch.cat([w, layer.bias.detach()[:, None]], dim=1)
    return w.T.contiguous()


def dense_matrix(m: LayerLike) -> torch.Tensor:
    """The ``d × N`` matrix a (possibly factorised) layer applies, bias row included (tests, analysis)."""
    if not isinstance(m, Factorized):
        return weight_matrix(m)
    w_hat = weight_matrix(m.basis)  # d × r
    d = weight_matrix(m.mix, with_bias=False)  # r × N
    out = w_hat @ d
    if m.mix.bias is not None:  # weight-only factorisation: bias kept dense
        out = torch.cat([out, m.mix.bias.detach()[None]], dim=0)
    return out


def _like(layer: Compressible, n_in: int, n_out: int, bias: bool, one_by_one: bool = False) -> Compressible:
    """A fresh layer of ``layer``'s kind with new in/out sizes (1×1 kernel when ``one_by_one``)."""
    if isinstance(layer, nn.Linear):
        return nn.Linear(n_in, n_out, bias=bias)
    if one_by_one:
        return nn.Conv2d(n_in, n_out, 1, bias=bias)
    if layer.groups != 1:
        raise NotImplementedError("grouped/depthwise convolutions are not factorised")
    return nn.Conv2d(
        n_in, n_out, layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        bias=bias, padding_mode=layer.padding_mode,
    )


def _n_in(layer: Compressible) -> int:
    return layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features


@torch.no_grad()
def set_from_matrix(layer: Compressible, w: torch.Tensor) -> None:
    """Write a ``d × N`` matrix (bias row last iff ``layer`` has a bias) into ``layer``'s parameters."""
    n = w.shape[1]
    body = w[:-1] if layer.bias is not None else w
    layer.weight.copy_(body.T.reshape(n, *layer.weight.shape[1:]))
    if layer.bias is not None:
        layer.bias.copy_(w[-1])


def factorize(
    layer: Compressible, w_hat: torch.Tensor, d: torch.Tensor, bias: torch.Tensor | None = None
) -> Factorized:
    """Build the two-layer replacement of ``layer`` for ``W ≈ Ŵ D`` (Ŵ: d×r, D: r×N).

    With ``bias=None``, ``Ŵ``'s last row is the basis bias (``W`` included the bias row); otherwise
    ``Ŵ`` covers the weight only and ``bias`` (length N) is added by the recombination layer.
    """
    r, n = d.shape
    has_basis_bias = bias is None and layer.bias is not None
    basis = _like(layer, _n_in(layer), r, bias=has_basis_bias)
    mix = _like(layer, r, n, bias=bias is not None, one_by_one=True)
    dtype = layer.weight.dtype
    set_from_matrix(basis, w_hat.to(dtype))
    with torch.no_grad():
        mix.weight.copy_(d.T.reshape(mix.weight.shape).to(dtype))
        if bias is not None:
            mix.bias.copy_(bias.to(dtype))
    return Factorized(basis, mix)


def factorized_params(d: int, n: int, rank: int) -> int:
    """Parameters of :class:`Factorized` at ``rank`` for a ``d × N`` layer matrix (bias row counted in ``d``):
    ``Ŵ`` has ``d·r`` (its last row is the basis bias) and ``D`` has ``r·N``, so ``r·(d + N)``. At rank 1 a
    layer therefore keeps at least ``(d + N) / (d·N)`` of its parameters (LeNet-5 conv1: 46/520 = 8.8 %)."""
    return int(rank) * (int(d) + int(n))


def break_even_rank(d: int, n: int) -> int:
    """Largest rank ``r`` whose factorisation has fewer parameters than the dense ``d × N`` layer."""
    return max(0, math.ceil(d * n / (d + n)) - 1)


# -- module tree helpers -----------------------------------------------------------------------------------
def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module at dotted path ``name`` (works inside Sequential/ModuleList/attributes)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def compressible_layers(model: nn.Module) -> list[str]:
    """Names of the ``nn.Conv2d`` / ``nn.Linear`` layers in registration order (not inside factorised ones)."""
    out: list[str] = []

    def walk(m: nn.Module, prefix: str) -> None:
        for name, child in m.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, Compressible):
                out.append(full)
            elif not isinstance(child, Factorized):
                walk(child, full + ".")

    walk(model, "")
    return out


# -- structural channel surgery (activation-based pruning, Coreset-S filter dropping) ----------------------
def _take_outputs(m: Compressible, keep: torch.Tensor) -> Compressible:
    new = _like(m, _n_in(m), len(keep), bias=m.bias is not None)
    with torch.no_grad():
        new.weight.copy_(m.weight[keep])
        if m.bias is not None:
            new.bias.copy_(m.bias[keep])
    return new


def _take_inputs(m: Compressible, keep: torch.Tensor, spatial: int) -> Compressible:
    n_in = len(keep) * (spatial if isinstance(m, nn.Linear) else 1)
    new = _like(m, n_in, n_outputs(m), bias=m.bias is not None)
    with torch.no_grad():
        if isinstance(m, nn.Linear):
            cols = (keep[:, None] * spatial + torch.arange(spatial)).reshape(-1)
            new.weight.copy_(m.weight[:, cols])
        else:
            new.weight.copy_(m.weight[:, keep])
        if m.bias is not None:
            new.bias.copy_(m.bias)
    return new


def keep_outputs(m: LayerLike, keep: torch.Tensor) -> LayerLike:
    """A copy of ``m`` producing only the outputs ``keep`` (for a factorised layer: rows of the mix)."""
    if isinstance(m, Factorized):
        return Factorized(m.basis, _take_outputs(m.mix, keep))
    return _take_outputs(m, keep)


def keep_inputs(m: LayerLike, keep: torch.Tensor, spatial: int = 1) -> LayerLike:
    """A copy of ``m`` reading only input channels ``keep``; a linear layer fed by a flattened
    ``C × spatial`` map drops the ``spatial`` consecutive columns of each removed channel."""
    if isinstance(m, Factorized):
        return Factorized(_take_inputs(m.basis, keep, spatial), m.mix)
    return _take_inputs(m, keep, spatial)


def keep_batchnorm(bn: nn.BatchNorm2d | nn.BatchNorm1d, keep: torch.Tensor) -> nn.Module:
    new = type(bn)(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(bn, name) is not None:
                getattr(new, name).copy_(getattr(bn, name)[keep])
        for name in ("running_mean", "running_var"):
            if getattr(bn, name) is not None:
                getattr(new, name).copy_(getattr(bn, name)[keep])
    return new


def flat_chain(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model as an ordered list of (name, module) when it is a (nested) ``nn.Sequential`` chain.

    Nested plain ``nn.Sequential`` containers are expanded; anything else (a conv, a factorised layer, a
    residual block) is one step. Returns ``None`` for models that are not chains (e.g. ResNets): callers
    then fall back to full forward passes.
    """
    if not isinstance(model, nn.Sequential):
        return None
    out: list[tuple[str, nn.Module]] = []

    def walk(seq: nn.Sequential, prefix: str) -> None:
        for name, child in seq.named_children():
            if isinstance(child, nn.Sequential):
                walk(child, f"{prefix}{name}.")
            else:
                out.append((f"{prefix}{name}", child))

    walk(model, "")
    return out


_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


def stage_chain(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model's forward pass as an ordered list of (name, module) steps, for suffix re-evaluation.

    A chain (:func:`flat_chain`) is returned as is. A torchvision ``ResNet`` becomes its forward order
    with every residual block one step: ``conv1, bn1, relu, maxpool, layer1.0, …, layer4.k, avgpool,
    flatten, fc`` (``flatten`` is an ``nn.Flatten``, the ``torch.flatten(x, 1)`` of ``ResNet.forward``).
    ``None`` for anything else (callers fall back to full forward passes).
    """
    chain = flat_chain(model)
    if chain is not None:
        return chain
    from torchvision.models import ResNet

    if type(model).forward is not ResNet.forward:
        return None
    out: list[tuple[str, nn.Module]] = []
    for name in _RESNET_STAGES:
        m = getattr(model, name)
        if name.startswith("layer"):
            out.extend((f"{name}.{i}", block) for i, block in m.named_children())
        else:
            out.append((name, m))
    out += [("flatten", nn.Flatten()), ("fc", model.fc)]
    return out


_PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Softplus,
                 nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout,
                 nn.Dropout2d, nn.Identity, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d, nn.LocalResponseNorm)


def channel_pairs(model: nn.Module) -> dict[str, tuple[str, list[str], int]]:
    """For every layer whose outputs feed exactly one next conv/linear layer through channel-wise modules:
    ``{producer: (consumer, [in-between batch norms], spatial)}``.

    ``spatial`` is how many flattened features one channel becomes at the consumer (``h·w`` when a conv
    map is flattened into a linear layer, else 1; channel-major flattening as ``nn.Flatten`` does).
    The last layer (the classifier) has no consumer, so its outputs are never pruned. Only chains
    (see :func:`flat_chain`) are analysed; other models get the pairs inside their residual blocks
    (:func:`block_pairs`).
    """
    chain = flat_chain(model)
    if chain is None:
        return block_pairs(model)
    pairs: dict[str, tuple[str, list[str], int]] = {}
    i = 0
    while i < len(chain):
        name, m = chain[i]
        if isinstance(m, Compressible | Factorized):
            bns: list[str] = []
            j = i + 1
            while j < len(chain) and isinstance(chain[j][1], _PASS_THROUGH):
                if isinstance(chain[j][1], nn.BatchNorm1d | nn.BatchNorm2d):
                    bns.append(chain[j][0])
                j += 1
            if j < len(chain) and isinstance(chain[j][1], Compressible | Factorized):
                n_ch = n_outputs(m)
                cons = chain[j][1]
                first = cons.basis if isinstance(cons, Factorized) else cons
                spatial = _n_in(first) // n_ch if isinstance(first, nn.Linear) else 1
                if spatial * n_ch == _n_in(first):
                    pairs[name] = (chain[j][0], bns, spatial)
            i = j if j > i + 1 else i + 1
        else:
            i += 1
    return pairs


def block_pairs(model: nn.Module) -> dict[str, tuple[str, list[str], int]]:
    """Pruning pairs inside residual blocks (torchvision ``BasicBlock`` / ``Bottleneck``, the CIFAR ResNets):
    a block with ``conv1 → bn1 → ReLU → conv2 (→ bn2 → ReLU → conv3)`` has internal widths that only its
    next conv reads, so ``conv1`` (and ``conv2`` before a ``conv3``) can lose filters; the block's output
    width (added to the shortcut) never changes, so residual shapes stay consistent."""
    pairs: dict[str, tuple[str, list[str], int]] = {}
    for prefix, m in model.named_modules():
        convs = [getattr(m, f"conv{i}", None) for i in (1, 2, 3)]
        bns = [getattr(m, f"bn{i}", None) for i in (1, 2, 3)]
        if not all(isinstance(c, Compressible | Factorized) for c in convs[:2]) or not isinstance(bns[0], nn.BatchNorm2d):
            continue
        p = f"{prefix}." if prefix else ""
        pairs[f"{p}conv1"] = (f"{p}conv2", [f"{p}bn1"], 1)
        if isinstance(convs[2], Compressible | Factorized) and isinstance(bns[1], nn.BatchNorm2d):
            pairs[f"{p}conv2"] = (f"{p}conv3", [f"{p}bn2"], 1)
    return pairs


def prune_outputs(model: nn.Module, pair: tuple[str, list[str], int], producer: str, keep: torch.Tensor) -> None:
    """Genuinely remove outputs of ``producer`` not in ``keep`` and the consumer's matching inputs."""
    consumer, bns, spatial = pair
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    replace_module(model, producer, keep_outputs(get_module(model, producer), keep))
    for bn in bns:
        replace_module(model, bn, keep_batchnorm(get_module(model, bn), keep))
    replace_module(model, consumer, keep_inputs(get_module(model, consumer), keep, spatial))


def filter_bank(layer: nn.Module) -> torch.Tensor:
    """The filters of a conv layer as ``(n, C, h, w)`` (Dubey et al. supp. Figs 8–10, conv1 before / after
    Coreset-S). A factorised layer gives its coreset filters Ŵ (``basis``, the complete Coreset-S
    representation), ordered by the L2 norm of their decompression weights (the ``mix`` column of each),
    largest first — our stand-in for the paper's "ordered ... on the basis of their eigenvalues"."""
    if isinstance(layer, Factorized):
        if not isinstance(layer.basis, nn.Conv2d):
            raise ValueError("filter_bank: the factorised layer is not a convolution")
        mix = layer.mix.weight.detach().reshape(layer.mix.weight.shape[0], -1)  # (N, r)
        order = torch.argsort(mix.norm(dim=0), descending=True, stable=True)
        return layer.basis.weight.detach()[order].clone()
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(f"filter_bank: {type(layer).__name__} is not a convolution")
    return layer.weight.detach().clone()
