"""Shared plumbing of the neuron-coreset tasks (Mussay et al., ICLR 2020): data, parents, selectors.

Not a task itself (no ``run``); imported by the tasks of ``coresetlab.tasks.neuron``.
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
from coresetlab.methods.neuron.scratch import FromScratch

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


def selectors(cfg: DictConfig, allow_scratch: bool = False) -> dict[str, NeuronSelector | FromScratch]:
    """Neuron selectors by label: ``cfg.task.methods`` (label -> coreset_method config) if set, else the
    single ``cfg.coreset_method`` labelled by its ``name``. ``allow_scratch``: the from-scratch
    baseline (:class:`~coresetlab.methods.neuron.scratch.FromScratch`) is accepted too."""
    methods = cfg.task.get("methods")
    if methods:
        out = {str(k): instantiate(v) for k, v in methods.items()}
    else:
        cm = cfg.coreset_method
        if "_target_" not in cm:
            raise ConfigError("choose a neuron selection: coreset_method=neuron_coreset|neuron_uniform|neuron_percentile"
                              + ("|from_scratch" if allow_scratch else ""))
        out = {str(cm.name): instantiate(cm)}
    kinds = (NeuronSelector, FromScratch) if allow_scratch else (NeuronSelector,)
    for label, sel in out.items():
        if not isinstance(sel, kinds):
            raise ConfigError(f"method '{label}' is not a neuron selector (coresetlab.methods.neuron.coreset.NeuronSelector"
                              + (" or coresetlab.methods.neuron.scratch.FromScratch)" if allow_scratch else ")"))
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


def _distill(ft_cfg: DictConfig) -> tuple[float, float]:
    d = ft_cfg.get("distill") or {}
    return float(d.get("alpha", 0.0) or 0.0), float(d.get("temperature", 4.0))


def distill_suffix(ft_cfg: DictConfig) -> str:
    """``"+distill"`` when the fine-tuning distils the parent (an extension, labelled in the method name)."""
    return "+distill" if int(ft_cfg.epochs) > 0 and _distill(ft_cfg)[0] > 0 else ""


def _scheduler(ft_cfg: DictConfig):
    """The ``_partial_`` LR scheduler of ``ft_cfg.scheduler``: null/``none``, a name of ``ft_cfg.schedulers``
    or an inline ``{_target_: ...}`` config."""
    sched = ft_cfg.get("scheduler")
    if sched is None or sched == "none":
        return None
    if isinstance(sched, str):
        named = ft_cfg.get("schedulers") or {}
        if sched not in named:
            raise ConfigError(f"unknown fine-tuning scheduler '{sched}', choose none or one of: {', '.join(named)}")
        sched = named[sched]
    if "_target_" not in sched:
        raise ConfigError("task.finetune.scheduler needs a _target_ (e.g. torch.optim.lr_scheduler.CosineAnnealingLR)")
    return instantiate(sched)


def finetune(ctx, model: nn.Module, dm, ft_cfg: DictConfig, phase: str, teacher: nn.Module | None = None,
             callbacks: tuple = ()) -> dict[str, Any]:
    """Fine-tune ``model`` (in place) on the training split, selecting on the validation split.

    ``ft_cfg``: ``epochs`` (maximum), ``patience`` (epochs without a new best ``monitor``; null = run
    all epochs), ``batch_size``, ``optimizer`` (``_partial_``), ``monitor``/``mode`` (default
    ``val_loss``/``min``), ``scheduler`` (optional ``_partial_`` LR scheduler, stepped per epoch;
    ``none``, a name of ``schedulers`` or an inline config; ``ReduceLROnPlateau`` steps on
    ``scheduler_monitor``, default ``val_loss``), ``distill``
    (``{alpha, temperature}``: knowledge distillation from ``teacher``, an extension; ``alpha = 0``
    = off) and ``converged_tol`` (validation-accuracy tolerance of ``epochs_to_tol``). The
    best-validation weights are kept. Returns ``epochs_run``, ``best_epoch`` (0-based),
    ``epochs_to_best`` (= best_epoch + 1, the "epochs to convergence" of Figure 4), ``epochs_to_tol``
    (epochs until the validation accuracy first came within ``converged_tol`` of its best) and
    ``val_acc_history`` / ``lr_history`` (per epoch; the LR as seen at validation, before the epoch's
    scheduler step).
    """
    from coresetlab.lit.finetune import EpochHistory, FineTuneModule, epochs_to_tolerance
    from coresetlab.lit.training import fit_module

    epochs = int(ft_cfg.epochs)
    if epochs <= 0:
        return {"epochs_run": 0, "best_epoch": -1, "epochs_to_best": 0, "epochs_to_tol": 0, "val_acc_history": [],
                "lr_history": []}
    monitor, mode = ft_cfg.get("monitor", "val_loss"), ft_cfg.get("mode", "min")
    alpha, temperature = _distill(ft_cfg)
    if alpha > 0 and teacher is None:
        raise ConfigError("task.finetune.distill.alpha > 0 needs the parent as teacher")
    scheduler = _scheduler(ft_cfg)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    module = FineTuneModule(model, instantiate(ft_cfg.optimizer), scheduler,
                            scheduler_monitor=str(ft_cfg.get("scheduler_monitor", "val_loss")),
                            teacher=teacher, alpha=alpha, temperature=temperature)
    history = EpochHistory()
    patience = ft_cfg.get("patience")
    fit = fit_module(ctx, module, dm.loader("train", int(ft_cfg.batch_size)), dm.loader("val"), phase, epochs,
                     monitor=monitor, mode=mode, patience=None if patience is None else int(patience),
                     callbacks=[history, *callbacks])
    model.eval()
    accs = [r["val_acc"] for r in history.rows if "val_acc" in r]
    return {"epochs_run": fit["epochs"], "best_epoch": int(fit["best_epoch"]),
            "epochs_to_best": int(fit["best_epoch"]) + 1,
            "epochs_to_tol": epochs_to_tolerance(accs, float(ft_cfg.get("converged_tol", 0.002))),
            "val_acc_history": [round(a, 5) for a in accs],
            "lr_history": [r["lr"] for r in history.rows if "lr" in r]}
