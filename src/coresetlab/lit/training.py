"""Fit a LightningModule with the configured trainer, keep the best validation state; evaluate fast."""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from coresetlab.errors import ConfigError, TrainingDiverged
from coresetlab.lit.modules import MiniBatches, has_conv, to_memory_format, uses_channels_last

log = logging.getLogger("coresetlab")


class FiniteCheck(pl.Callback):
    """Stop a training phase as soon as its loss or a validation metric is NaN/inf.

    Raises :class:`~coresetlab.errors.TrainingDiverged` naming the phase and the epoch: after every training
    batch (the loss ``training_step`` returned) and after every validation (every logged metric). It runs
    before the checkpoint callback, so a diverged state is never written as a resume point. Cost: one
    scalar read of the loss per batch (a device sync on a GPU).
    """

    def __init__(self, phase: str) -> None:
        self.phase = phase

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            raise TrainingDiverged(self.phase, trainer.current_epoch,
                                   f"training loss is {float(loss.detach().float().mean())} at batch {batch_idx}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for name, value in trainer.callback_metrics.items():
            v = float(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if isinstance(v, float) and not math.isfinite(v):
                raise TrainingDiverged(self.phase, trainer.current_epoch, f"{name} is {v}")


class BestState(pl.Callback):
    """Keep (in memory and in checkpoints) the model state with the best validation ``monitor``.

    Model selection always uses validation metrics, never test ones.
    """

    def __init__(self, monitor: str = "val_acc", mode: str = "max") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best_score = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None

    def _better(self, score: float) -> bool:
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if math.isfinite(score) and self._better(score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
        self.best_state = state_dict["best_state"]


class LastCheckpoint(pl.Callback):
    """Write ``<dir>/last.ckpt`` (atomically) at the end of every training epoch, for resuming.

    Lightning's ``ModelCheckpoint(save_last=True)`` only writes ``last.ckpt`` in a step that also
    saved a top-k checkpoint (2.6), so it cannot serve as a plain per-epoch resume point.
    """

    def __init__(self, dirpath: Path) -> None:
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / "last.ckpt.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # full state (optimizer, loops) to resume
        tmp.replace(self.dirpath / "last.ckpt")


def finish_wandb() -> None:
    """Close the open wandb run, if any (after each phase, and by the runner also when a task raised)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


#: Keys of ``cfg.trainer`` that are ours, not ``pytorch_lightning.Trainer`` arguments (see conf/trainer/cpu.yaml).
SPEED_KEYS = ("channels_last", "batches_per_step")


def lightning_trainer_config(trainer_cfg: DictConfig) -> dict[str, Any]:
    """``cfg.trainer`` without :data:`SPEED_KEYS`: the arguments of ``pytorch_lightning.Trainer``."""
    cfg = OmegaConf.to_container(trainer_cfg, resolve=True)
    return {k: v for k, v in cfg.items() if k not in SPEED_KEYS}


def speed_options(trainer_cfg: DictConfig | None) -> tuple[bool, int]:
    """``(channels_last, batches_per_step)`` from ``cfg.trainer`` (defaults: False, 1)."""
    cfg = trainer_cfg if trainer_cfg is not None else {}
    channels_last, k = cfg.get("channels_last", False), cfg.get("batches_per_step", 1)
    if not isinstance(channels_last, bool):
        raise ConfigError(f"trainer.channels_last must be true or false, got {channels_last!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"trainer.batches_per_step must be an integer >= 1, got {k!r}")
    return channels_last, k


class BatchChunks:
    """Group consecutive batches of ``loader`` into :class:`~coresetlab.lit.modules.MiniBatches` of ``k``.

    Each mini-batch still gets its own optimizer step (the modules of :mod:`coresetlab.lit.modules`
    loop over the list), so training is step-for-step the same; Lightning's per-step overhead is paid
    once per ``k`` mini-batches. The last group of an epoch may be shorter. A sized loader is read for
    exactly ``len(loader)`` batches and never asked for one more, as Lightning does: asking would make a
    seeded ``RandomSampler`` draw (and discard) another permutation and so shift the next epoch's order.
    """

    def __init__(self, loader: Iterable, k: int) -> None:
        self.loader, self.k = loader, int(k)

    def __len__(self) -> int:
        return -(-len(self.loader) // self.k)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[MiniBatches]:
        group = MiniBatches()
        batches = iter(self.loader)
        if hasattr(self.loader, "__len__"):
            batches = itertools.islice(batches, len(self.loader))
        for batch in batches:
            group.append(batch)
            if len(group) == self.k:
                yield group
                group = MiniBatches()
        if group:
            yield group


def make_trainer(ctx, phase: str, epochs: int, callbacks: list[pl.Callback], ckpt_dir: Path | None) -> pl.Trainer:
    """The configured ``pytorch_lightning.Trainer`` (``cfg.trainer``) for one training phase.

    Every phase gets a :class:`FiniteCheck` first (a NaN/inf loss stops the run) and, with ``ckpt_dir``,
    a :class:`LastCheckpoint` last.
    """
    callbacks = [FiniteCheck(phase), *callbacks]
    if ckpt_dir is not None:
        callbacks = [*callbacks, LastCheckpoint(ckpt_dir)]
    return instantiate(
        lightning_trainer_config(ctx.cfg.trainer),
        max_epochs=int(epochs),
        callbacks=callbacks,
        logger=ctx.logger(phase),
        default_root_dir=str(ctx.out_dir),
        enable_checkpointing=False,  # resume points are written by LastCheckpoint
    )


def fit_module(
    ctx,
    module: pl.LightningModule,
    train_loader: DataLoader,
    val_loader: DataLoader,
    phase: str,
    epochs: int,
    monitor: str = "val_acc",
    mode: str = "max",
    ckpt_dir: Path | None = None,
    patience: int | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> dict[str, Any]:
    """Train ``module`` for ``epochs`` epochs and load the best-validation weights into ``module.model``.

    With ``ckpt_dir`` a ``last.ckpt`` is written every epoch and an interrupted fit resumes from it.
    ``patience``: stop after that many validation epochs without a new best ``monitor`` (None = run all
    epochs). ``callbacks`` are added to the trainer's. ``trainer.channels_last`` switches the module's
    memory format (:meth:`~coresetlab.lit.modules._Base.set_channels_last`); ``trainer.batches_per_step``
    hands that many mini-batches to each ``training_step`` (:class:`BatchChunks`). Returns ``{"epochs": run, "best_epoch": e,
    "best_<monitor>": score, "resumed_at_epoch": e or None}``.
    """
    best = BestState(monitor, mode)
    extra: list[pl.Callback] = [best, *callbacks]
    if patience is not None:
        extra.append(pl.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=int(patience)))
    channels_last, per_step = speed_options(ctx.cfg.get("trainer"))
    trainer = make_trainer(ctx, phase, epochs, extra, ckpt_dir)
    if hasattr(module, "set_channels_last"):
        module.set_channels_last(channels_last)
    if per_step > 1:
        if trainer.world_size > 1:
            raise ConfigError("trainer.batches_per_step > 1 is for single-process training; set it to 1 with ddp")
        train_loader = BatchChunks(train_loader, per_step)
    ckpt_path, resumed_at = None, None
    if ckpt_dir is not None and (Path(ckpt_dir) / "last.ckpt").exists():
        ckpt_path = str(Path(ckpt_dir) / "last.ckpt")
        resumed_at = int(torch.load(ckpt_path, map_location="cpu", weights_only=False).get("epoch", -1)) + 1
        log.info("%s: resuming from %s (epoch %s)", phase, ckpt_path, resumed_at)
    if epochs > 0:
        try:
            trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path)
        finally:
            finish_wandb()  # one wandb run per phase, grouped by experiment
    if best.best_state is not None:
        module.model.load_state_dict(best.best_state)
    return {"epochs": int(trainer.current_epoch), "best_epoch": best.best_epoch, f"best_{monitor}": best.best_score,
            "resumed_at_epoch": resumed_at}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, channels_last: bool | None = None) -> dict[str, float]:
    """Mean cross entropy and accuracy of ``model`` over ``loader`` (eval mode, no grad).

    ``channels_last``: feed 4-D inputs channels-last; None follows the model (true when its conv weights
    are stored channels-last, e.g. after a fit with ``trainer.channels_last=true``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    cl = uses_channels_last(model) if channels_last is None else channels_last and has_conv(model)
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = to_memory_format(x.to(device), cl), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    return {"loss": loss_sum / n, "acc": correct / n}
