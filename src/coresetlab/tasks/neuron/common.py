"""Shared plumbing of the neuron-coreset tasks (Mussay et al., ICLR 2020): data, parents, selectors.

Not a task itself (no ``run``); imported by ``coresetlab.tasks.neuron_*``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron.coreset import NeuronSelector

log = logging.getLogger("coresetlab")


def generator(ctx, offset: int = 0) -> torch.Generator:
    """A generator seeded from the run's seed (``offset`` separates independent streams)."""
    return torch.Generator().manual_seed(int(ctx.seed) * 1_000_003 + int(offset))


def setup_data(cfg: DictConfig, ctx):
    """The configured DataModule, set up."""
    with ctx.stage("data"):
        dm = instantiate(cfg.dataset)
        dm.setup()
    return dm


def flat(dm, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a split with images flattened to ``(N, d)`` (the first ``limit`` rows if given)."""
    ds = dm.dataset(split)
    x, y = ds.x.flatten(1), ds.y
    if limit is not None:
        x, y = x[: int(limit)], y[: int(limit)]
    return x, y


def parent_mlp(cfg: DictConfig, ctx, dm, model_cfg: DictConfig | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The trained parent MLP from the shared parent cache (``cfg.task.parent`` is its recipe)."""
    from coresetlab.lit import get_parent

    model_cfg = model_cfg if model_cfg is not None else cfg.model
    if not str(model_cfg.get("_target_", "")).endswith("MLP"):
        raise ConfigError(f"neuron pruning needs an MLP model (conf/model), got {model_cfg.get('_target_')}")
    with ctx.stage("parent"):
        parent, info = get_parent(ctx, dm, model_cfg, cfg.task.parent)
    parent.eval()
    for p in parent.parameters():
        p.requires_grad_(False)
    return parent, info


def parent_extra(info: dict[str, Any]) -> dict[str, Any]:
    """The parent-cache fields worth keeping in results.json."""
    return {k: info[k] for k in ("key", "dir", "cached", "fit", "test_acc", "val_acc") if k in info}


def selectors(cfg: DictConfig) -> dict[str, NeuronSelector]:
    """Neuron selectors by label: ``cfg.task.methods`` (label -> coreset_method config) if set, else the
    single ``cfg.coreset_method`` labelled by its ``name``."""
    methods = cfg.task.get("methods")
    if methods:
        out = {str(k): instantiate(v) for k, v in methods.items()}
    else:
        cm = cfg.coreset_method
        if "_target_" not in cm:
            raise ConfigError("choose a neuron selection: coreset_method=neuron_coreset|neuron_uniform|neuron_percentile")
        out = {str(cm.name): instantiate(cm)}
    for label, sel in out.items():
        if not isinstance(sel, NeuronSelector):
            raise ConfigError(f"method '{label}' is not a neuron selector (coresetlab.methods.neuron.coreset.NeuronSelector)")
    return out


@torch.no_grad()
def layer_input_betas(model: nn.Module, x: torch.Tensor, batch: int = 5000) -> dict[int, float]:
    """``β_i = max ‖[a_i(x); 1]‖`` over ``x`` of the input ``a_i`` of every linear layer ``i``."""
    best: dict[int, float] = {}
    for start in range(0, len(x), batch):
        h = x[start:start + batch].flatten(1)
        for i, layer in enumerate(model.layers):
            norm = float(torch.sqrt(h.square().sum(1) + 1.0).max())
            best[i] = max(best.get(i, 0.0), norm)
            h = layer(h)
            if i < len(model.layers) - 1:
                h = model.act(h)
    return best


def finetune(ctx, model: nn.Module, dm, ft_cfg: DictConfig, phase: str) -> dict[str, Any]:
    """Fine-tune ``model`` (in place) until the validation loss stops improving.

    ``ft_cfg``: ``epochs`` (maximum), ``patience`` (epochs without a new best ``monitor``; null = run
    all epochs), ``batch_size``, ``optimizer`` (``_partial_``), ``monitor``/``mode`` (default
    ``val_loss``/``min``). The best-validation weights are kept. Returns ``epochs_run``, ``best_epoch``
    and ``epochs_to_best`` (= best_epoch + 1, the "epochs to convergence" of Figure 4).
    """
    from coresetlab.lit import ClassifierModule
    from coresetlab.lit.training import fit_module

    epochs = int(ft_cfg.epochs)
    if epochs <= 0:
        return {"epochs_run": 0, "best_epoch": -1, "epochs_to_best": 0}
    monitor, mode = ft_cfg.get("monitor", "val_loss"), ft_cfg.get("mode", "min")
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    module = ClassifierModule(model, instantiate(ft_cfg.optimizer), None)
    patience = ft_cfg.get("patience")
    fit = fit_module(ctx, module, dm.loader("train", int(ft_cfg.batch_size)), dm.loader("val"), phase, epochs,
                     monitor=monitor, mode=mode, patience=None if patience is None else int(patience))
    model.eval()
    return {"epochs_run": fit["epochs"], "best_epoch": int(fit["best_epoch"]),
            "epochs_to_best": int(fit["best_epoch"]) + 1}
