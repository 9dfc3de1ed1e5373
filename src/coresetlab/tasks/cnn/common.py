"""Pieces every CNN experiment uses: the shared parent, training phases, evaluation, cost, the record.

Every CNN record carries (flat ``metrics``): test/val accuracy and loss of the small network after
fine-tuning (``test_acc`` …) and before it (``*_before_ft``), the parent's (``parent_*``), errors
(``test_err``, ``parent_test_err``, ``delta_err`` = change of test error in fractions, the "+/−" column
of AutoCL Tables 2–3), ``compression_ratio`` (fraction of conv channels removed: Table 3's column),
FLOPs of one 32×32 image (``flops``, ``flops_parent``, ``flops_reduction``), CPU inference latency of
both networks at each measured batch size (``latency_b<B>_ms``, ``latency_parent_b<B>_ms``,
``speedup_b<B>``), and the small network's widths (``width_l01`` …). ``params_before``/``params_after``
are the two parameter counts; ``table`` holds one row per conv layer (Table 1).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from coresetlab.errors import ConfigError
from coresetlab.lit import ClassifierModule, evaluate, fit_module, get_parent
from coresetlab.measure import network_cost
from coresetlab.methods.shared.channel_surgery import conv_out_channels

log = logging.getLogger("coresetlab")


def with_steps_per_epoch(phase_cfg: DictConfig, n_train: int) -> DictConfig:
    """A resolved copy of a training-phase config whose ``scheduler.steps_per_epoch`` is filled in.

    :class:`coresetlab.lit.schedules.StepwiseLR` needs the number of optimizer steps per epoch:
    ``ceil(n_train / batch_size)`` (loaders keep the last partial batch). Other schedulers are left alone.
    """
    out = OmegaConf.create(OmegaConf.to_container(phase_cfg, resolve=True))
    sch = out.get("scheduler")
    if sch and "steps_per_epoch" in sch and sch.steps_per_epoch is None:
        sch.steps_per_epoch = math.ceil(int(n_train) / int(out.batch_size))
    return out


def validate_task(t: DictConfig, phases: tuple[str, ...]) -> None:
    """Check the measurement and the phases' schedules before any training (a typo must not cost a parent)."""
    from coresetlab.lit.schedules import KINDS

    m = t.measure
    if not len(m.batches) == len(m.warmup) == len(m.reps):
        raise ConfigError("task.measure: batches, warmup and reps must have the same length")
    for name in ("parent", *phases):
        sch = t[name].get("scheduler")
        if sch and str(sch.get("_target_", "")).endswith("StepwiseLR"):
            if sch.kind not in KINDS:
                raise ConfigError(f"task.{name}.scheduler.kind: unknown {sch.kind!r}; choose one of {', '.join(KINDS)}")
            if any(not 0.0 <= float(f) <= 1.0 for f in sch.get("milestones", [])):
                raise ConfigError(f"task.{name}.scheduler.milestones are fractions of the epochs in [0, 1]")


def setup_data(cfg: DictConfig):
    dm = instantiate(cfg.dataset)
    dm.setup()
    return dm


def shared_parent(ctx, dm, cfg: DictConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The parent of ``cfg.task.parent`` from the parent cache (trained once for every CNN experiment)."""
    train_cfg = with_steps_per_epoch(cfg.task.parent, len(dm.dataset("train")))
    parent, info = get_parent(ctx, dm, cfg.model, train_cfg)
    return parent.eval(), info


def scheduler_factory(phase_cfg: DictConfig):
    sch = phase_cfg.get("scheduler")
    return instantiate(sch) if sch and "_target_" in sch else None


def _whole_batch(batch):
    return batch  # TensorBatchDataset.__getitems__ already returns a whole (x, y) batch


def phase_images(dm, node: DictConfig) -> int:
    """Training images one epoch of a phase sees: ``node.train_images`` (a per-epoch budget), else all."""
    n = len(dm.dataset("train"))
    k = node.get("train_images")
    if k is None:
        return n
    if int(k) < 1:
        raise ConfigError(f"train_images must be a positive number of images or null, got {k}")
    return min(int(k), n)


def phase_loader(dm, node: DictConfig, seed: int) -> DataLoader:
    """The training loader of a phase: every epoch draws ``train_images`` fresh random training images
    (without replacement; the fast profile's per-phase budget), or the whole split when it is null."""
    n = phase_images(dm, node)
    ds = dm.dataset("train")
    if n >= len(ds):
        return dm.loader("train", int(node.batch_size))
    gen = torch.Generator().manual_seed(int(seed))
    sampler = RandomSampler(ds, replacement=False, num_samples=n, generator=gen)
    return DataLoader(ds, batch_size=int(node.batch_size), sampler=sampler, collate_fn=_whole_batch, num_workers=0)


def train_phase(
    ctx, dm, module: pl.LightningModule, phase_cfg: DictConfig, phase: str, monitor: str = "val_acc",
    mode: str = "max", callbacks: list[pl.Callback] | None = None,
) -> dict[str, Any]:
    """Fit ``module`` for ``phase_cfg.epochs`` epochs on the training split (or ``train_images`` random
    images of it per epoch), keeping the best-validation state."""
    return fit_module(
        ctx, module, phase_loader(dm, phase_cfg, ctx.seed), dm.loader("val"), phase=phase,
        epochs=int(phase_cfg.epochs), monitor=phase_cfg.get("monitor", monitor), mode=phase_cfg.get("mode", mode),
        ckpt_dir=ctx.ckpt_dir(phase), callbacks=callbacks or [],
    )


def phase_cfg(dm, node: DictConfig) -> DictConfig:
    """A training phase's config with the scheduler's steps per epoch filled in."""
    return with_steps_per_epoch(node, phase_images(dm, node))


def finetune(ctx, dm, model: nn.Module, node: DictConfig, phase: str = "finetune") -> dict[str, Any] | None:
    """Cross-entropy fine-tuning of ``model`` (in place) with the phase config ``node``; None if 0 epochs."""
    if int(node.epochs) <= 0:
        return None
    cfg = phase_cfg(dm, node)
    model.train()  # Lightning keeps the modules' modes: a network copied from an eval-mode one must be switched
    module = ClassifierModule(model, instantiate(cfg.optimizer), scheduler_factory(cfg))
    return train_phase(ctx, dm, module, cfg, phase)


def eval_splits(model: nn.Module, dm) -> dict[str, dict[str, float]]:
    """Loss and accuracy on the validation and test splits."""
    return {split: evaluate(model, dm.loader(split)) for split in ("val", "test")}


def cost(model: nn.Module, dm, measure_cfg: DictConfig) -> dict[str, Any]:
    """Parameters, FLOPs (one input) and CPU latency per ``measure_cfg`` (batches, warmup, reps)."""
    batches = [int(b) for b in measure_cfg.batches]
    warm, reps = list(measure_cfg.warmup), list(measure_cfg.reps)
    model = model.cpu()
    shape = tuple(measure_cfg.get("input_shape") or dm.input_shape)
    return network_cost(model, shape, {b: (w, r) for b, w, r in zip(batches, warm, reps)})


def open_parent(cfg: DictConfig, ctx) -> tuple[Any, nn.Module, dict[str, Any], dict[str, Any]]:
    """The opening stages every CNN experiment shares: ``data``, ``parent`` (from the parent cache) and
    ``measure_parent``. Returns ``(datamodule, parent, parent_info, parent_cost)``."""
    with ctx.stage("data"):
        dm = setup_data(cfg)
    with ctx.stage("parent"):
        parent, pinfo = shared_parent(ctx, dm, cfg)
    with ctx.stage("measure_parent"):
        cost_parent = cost(parent, dm, cfg.task.measure)
    return dm, parent, pinfo, cost_parent


def finetune_and_measure(
    ctx, dm, small: nn.Module, t: DictConfig
) -> tuple[dict[str, Any] | None, dict[str, dict[str, float]], dict[str, Any]]:
    """The closing stages every CNN experiment shares: ``finetune`` (``t.finetune``), ``evaluate`` on the
    validation and test splits, ``measure_small``. Returns ``(finetune_fit, after, small_cost)``."""
    with ctx.stage("finetune"):
        fit = finetune(ctx, dm, small, t.finetune)
    with ctx.stage("evaluate"):
        small.cpu()
        after = eval_splits(small, dm)
    with ctx.stage("measure_small"):
        cost_small = cost(small, dm, t.measure)
    return fit, after, cost_small


def width_metrics(widths: list[int]) -> dict[str, int]:
    return {f"width_l{i + 1:02d}": int(w) for i, w in enumerate(widths)}


def cnn_record(
    *, method: str, parent: nn.Module, small: nn.Module, pinfo: dict[str, Any], before: dict[str, Any],
    after: dict[str, Any], cost_parent: dict[str, Any], cost_small: dict[str, Any], dataset: str,
    fits: dict[str, Any], extra: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The run record of a CNN pruning experiment (see the module docstring for the metric names)."""
    w_parent, w_small = conv_out_channels(parent), conv_out_channels(small)
    m: dict[str, Any] = {
        "test_acc": after["test"]["acc"], "test_loss": after["test"]["loss"], "test_err": 1.0 - after["test"]["acc"],
        "val_acc": after["val"]["acc"], "val_loss": after["val"]["loss"],
        "test_acc_before_ft": before["test"]["acc"], "test_loss_before_ft": before["test"]["loss"],
        "test_err_before_ft": 1.0 - before["test"]["acc"], "val_acc_before_ft": before["val"]["acc"],
        "parent_test_acc": pinfo["test_acc"], "parent_test_loss": pinfo["test_loss"],
        "parent_test_err": 1.0 - pinfo["test_acc"], "parent_val_acc": pinfo["val_acc"],
        "parent_val_loss": pinfo["val_loss"], "parent_at_chance": float(bool(pinfo.get("at_chance"))),
        "delta_err": pinfo["test_acc"] - after["test"]["acc"],
        "compression_ratio": 1.0 - sum(w_small) / sum(w_parent),
        "flops_parent": cost_parent["flops"], "flops": cost_small["flops"],
        "flops_reduction": 1.0 - cost_small["flops"] / cost_parent["flops"],
        "threads": cost_small["threads"],
    }
    for key, val in cost_small.items():
        if key.startswith("latency_b"):
            bs = key[len("latency_"):-len("_ms")]
            m[key] = val
            m[f"latency_parent_{bs}_ms"] = cost_parent[key]
            m[f"speedup_{bs}"] = cost_parent[key] / val
    m.update(width_metrics(w_small))
    for phase, f in fits.items():
        if f is not None:
            m[f"{phase}_epochs"] = f["epochs"]
            m[f"{phase}_best_epoch"] = f["best_epoch"]
    m.update(metrics or {})
    table = [{"layer": i + 1, "width_parent": wp, "width": ws, "method": method}
             for i, (wp, ws) in enumerate(zip(w_parent, w_small))]
    log.info(
        "%s: parent test acc %.4f | small before ft %.4f, after ft %.4f | params %d -> %d | FLOPs %.3g -> %.3g",
        method, m["parent_test_acc"], m["test_acc_before_ft"], m["test_acc"], cost_parent["params"],
        cost_small["params"], m["flops_parent"], m["flops"],
    )
    return {
        "method": method,
        "model": f"{getattr(parent, 'name', 'parent')} -> {getattr(small, 'name', 'small')}",
        "dataset": dataset,
        "metrics": m,
        "params_before": cost_parent["params"],
        "params_after": cost_small["params"],
        "table": table,
        "extra": {
            "parent": {k: pinfo.get(k) for k in ("key", "dir", "cached", "fit")},
            "widths_parent": w_parent, "widths": w_small, "cfg": list(getattr(small, "cfg", w_small)),
            "cost_parent": cost_parent, "cost": cost_small, "fits": fits, **(extra or {}),
        },
    }
