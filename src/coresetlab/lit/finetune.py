"""Fine-tuning glue: LR schedules that monitor a metric, distillation from a parent, per-epoch history.

Used by the neuron-pruning tasks (``coresetlab.tasks.neuron``). :class:`FineTuneModule` is a
:class:`~coresetlab.lit.modules.ClassifierModule` whose LR scheduler may watch a validation metric
(``ReduceLROnPlateau``) and whose training loss may mix in knowledge distillation from a frozen
teacher (Hinton, Vinyals & Dean, 2015): ``(1 − α) CE(z_s, y) + α T² KL(softmax(z_t/T) ‖ softmax(z_s/T))``.
Distillation is an *extension* of the papers' recipes, never their default.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from coresetlab.lit.modules import ClassifierModule, OptimizerFactory, SchedulerFactory


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, alpha: float, temperature: float
) -> torch.Tensor:
    """``(1 − α) CE(student, y) + α T² KL(softmax(teacher/T) ‖ softmax(student/T))`` (batch mean)."""
    ce = F.cross_entropy(student, y)
    if alpha <= 0:
        return ce
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * t * t * kl


class FineTuneModule(ClassifierModule):
    """Cross-entropy (optionally + distillation) training with an optional metric-driven LR schedule.

    ``scheduler_monitor``: the logged metric a ``ReduceLROnPlateau`` scheduler steps on (e.g.
    ``val_loss``); other schedulers step every epoch. ``teacher``: a frozen network whose logits are
    distilled with weight ``alpha`` at ``temperature`` (``alpha = 0``: plain cross-entropy).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_monitor: str = "val_loss",
        teacher: nn.Module | None = None,
        alpha: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        super().__init__(model, optimizer, scheduler)
        if alpha > 0 and teacher is None:
            raise ValueError("distillation (alpha > 0) needs a teacher")
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}")
        self.scheduler_monitor, self.alpha, self.temperature = scheduler_monitor, float(alpha), float(temperature)
        self._plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.teacher = teacher.eval() if teacher is not None and alpha > 0 else None
        if self.teacher is not None:
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.model.parameters())
        self._plateau = None
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(opt)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # stepped with the monitored validation metric after every validation (the base module's manual
            # optimization steps the schedulers Lightning knows of without a metric), saved in checkpoints
            self._plateau = sched
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.teacher is None:
            return F.cross_entropy(logits, y)
        with torch.no_grad():
            t_logits = self.teacher(x)
        return distillation_loss(logits, t_logits, y, self.alpha, self.temperature)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self._plateau is None or self.trainer.sanity_checking:
            return
        loss_sum, correct, n = self._sums.tolist()
        values = {"val_loss": loss_sum / n, "val_acc": correct / n}
        if self.scheduler_monitor not in values:
            raise ValueError(f"scheduler_monitor must be one of {sorted(values)}, got {self.scheduler_monitor!r}")
        self._plateau.step(values[self.scheduler_monitor])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if getattr(self, "_plateau", None) is not None:
            checkpoint["plateau_scheduler"] = self._plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pending_plateau_state = checkpoint.get("plateau_scheduler")

    def on_train_start(self) -> None:
        state = getattr(self, "_pending_plateau_state", None)
        if state is not None and self._plateau is not None:
            self._plateau.load_state_dict(state)
        self._pending_plateau_state = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher stays frozen
        return self


class EpochHistory(pl.Callback):
    """Record the validation metrics (``keys``) and the learning rate after every epoch (sanity checks skipped)."""

    def __init__(self, keys: tuple[str, ...] = ("val_loss", "val_acc")) -> None:
        self.keys = keys
        self.rows: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {k: float(m[k]) for k in self.keys if k in m}
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append(row)


def epochs_to_tolerance(values: list[float], tol: float, mode: str = "max") -> int:
    """1-based number of epochs until a value within ``tol`` of the best one is first reached (0 if none).

    A convergence time that does not depend on where, inside a plateau, the best epoch falls.
    """
    if not values:
        return 0
    best = max(values) if mode == "max" else min(values)
    for i, v in enumerate(values):
        if (v >= best - tol) if mode == "max" else (v <= best + tol):
            return i + 1
    return len(values)
