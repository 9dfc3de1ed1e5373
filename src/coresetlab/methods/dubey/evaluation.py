"""Fast evaluation on in-memory tensors with cached activations (the AP and rank searches evaluate the
network many times; only the part after the layer being searched is re-run).

For a chain model (:func:`.layers.flat_chain`) the input of layer ``name`` is computed once and the
searches re-run the chain from ``name`` on; for a torchvision ResNet (:func:`.layers.stage_chain`) the
input of the residual block holding ``name``. Other architectures fall back to full forward passes
(correct, just slower).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from coresetlab.methods.dubey.layers import get_module, replace_module, stage_chain


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


@torch.inference_mode()
def predict(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """``argmax`` predictions of ``fn`` over ``x`` in batches."""
    return torch.cat([fn(x[s]).argmax(1) for s in _batches(len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on in-memory tensors."""
    was = model.training
    model.eval()
    try:
        return float((predict(model, x, batch_size) == y).float().mean())
    finally:
        model.train(was)


@contextmanager
def swapped(model: nn.Module, replacements: dict[str, nn.Module]) -> Iterator[nn.Module]:
    """Temporarily replace sub-modules by name (no copy of the model); restored on exit."""
    old = {name: get_module(model, name) for name in replacements}
    try:
        for name, m in replacements.items():
            replace_module(model, name, m)
        yield model
    finally:
        for name, m in old.items():
            replace_module(model, name, m)


class SuffixEvaluator:
    """Accuracy of ``model`` on ``(x, y)`` re-running only the chain from layer ``start`` (or, in a ResNet,
    from the residual block holding ``start``) on.

    ``SuffixEvaluator(model, x, y, start)`` computes the activations entering ``start`` once (with the
    model as it is now). ``accuracy(model)`` then evaluates the current model — whose modules at or
    after ``start`` may have been swapped — from those cached activations.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: str, batch_size: int = 2000):
        self.y, self.batch_size, self.start = y, batch_size, start
        chain = stage_chain(model)
        names = [n for n, _ in chain] if chain is not None else []
        self.index = _stage_of(names, start)
        if self.index is None:
            self.cached = x
            return
        model.eval()
        prefix = [m for _, m in chain[: self.index]]
        with torch.inference_mode():
            self.cached = torch.cat([_run(prefix, x[s]) for s in _batches(len(x), batch_size)])

    def accuracy(self, model: nn.Module) -> float:
        if self.index is None:
            return accuracy(model, self.cached, self.y, self.batch_size)
        chain = stage_chain(model)
        assert chain is not None and _stage_of([n for n, _ in chain], self.start) == self.index
        suffix = [m for _, m in chain[self.index:]]
        was = model.training
        model.eval()
        try:
            pred = predict(lambda t: _run(suffix, t), self.cached, self.batch_size)
        finally:
            model.train(was)
        return float((pred == self.y).float().mean())


def _stage_of(names: list[str], start: str) -> int | None:
    """Index of the step that is ``start`` or contains it (``layer3.2`` contains ``layer3.2.conv1``)."""
    for i, n in enumerate(names):
        if start == n or start.startswith(n + "."):
            return i
    return None


def _run(mods: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for m in mods:
        x = m(x)
    return x


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has run."""


@torch.inference_mode()
def layer_output_stat(
    model: nn.Module, name: str, x: torch.Tensor, reduce: str, batch_size: int = 2000
) -> torch.Tensor:
    """Mean over samples of a per-filter statistic of layer ``name``'s output (one entry per filter).

    ``reduce='max'``: the response max-pooled over space (activation-based pruning, §3.2);
    ``reduce='fro'``: its Frobenius norm over space, ``‖A^f‖_F`` (importance, Eq. 6). For a linear layer
    the spatial extent is 1 (``max`` is the value itself, ``fro`` its magnitude).
    """
    if reduce not in ("max", "fro"):
        raise ValueError(f"reduce must be 'max' or 'fro', got {reduce!r}")
    total: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        o = out.reshape(out.shape[0], out.shape[1], -1)
        total.append((o.amax(2) if reduce == "max" else o.norm(dim=2)).sum(0))
        raise _Stop  # the rest of the forward pass is not needed

    was = model.training
    model.eval()
    handle = get_module(model, name).register_forward_hook(hook)
    try:
        for s in _batches(len(x), batch_size):
            try:
                model(x[s])
            except _Stop:
                pass
    finally:
        handle.remove()
        model.train(was)
    return torch.stack(total).sum(0) / len(x)
