"""LightningModules: plain classification and AutoCL's loss-matching phase."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from coresetlab.methods.autocl.objective import loss_ratio_error

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class _Base(pl.LightningModule):
    def __init__(self, model: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "epoch"}}

    # Evaluation accumulates sums over the whole split (exact mean, independent of batch size).
    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(3)

    on_test_epoch_start = on_validation_epoch_start

    def _eval_step(self, batch) -> None:
        x, y = batch
        logits = self.model(x)
        self._sums += torch.tensor(
            [F.cross_entropy(logits, y, reduction="sum").item(), (logits.argmax(1) == y).sum().item(), len(y)]
        )

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def _log_eval(self, prefix: str) -> None:
        loss_sum, correct, n = self._sums.tolist()
        self.log(f"{prefix}_loss", loss_sum / n, prog_bar=True)
        self.log(f"{prefix}_acc", correct / n, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")


class ClassifierModule(_Base):
    """Cross-entropy training of ``model``; logs train_loss, val_loss/val_acc and test_loss/test_acc."""

    def __init__(self, model: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None):
        super().__init__(model, optimizer, scheduler)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss


class MatchingModule(_Base):
    """AutoCL model compression, matching phase (AutoCL §4.2.1, Algorithm 2 with C = the small net, λ = 0).

    Per batch the small network minimises ``|1 - CE(small) / CE(parent)|`` against the frozen parent.
    Validation logs ``val_eps`` (the same ratio error on the whole validation split) besides
    val_loss/val_acc of the small network.
    """

    def __init__(
        self, model: nn.Module, parent: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None
    ) -> None:
        super().__init__(model, optimizer, scheduler)
        self.parent = parent.eval()
        for p in self.parent.parameters():
            p.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        with torch.no_grad():
            parent_loss = F.cross_entropy(self.parent(x), y)
        small_loss = F.cross_entropy(self.model(x), y)
        loss = loss_ratio_error(small_loss, parent_loss)
        self.log("train_eps", loss, on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._parent_loss_sum = 0.0

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)
        x, y = batch
        self._parent_loss_sum += F.cross_entropy(self.parent(x), y, reduction="sum").item()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val_eps", abs(1.0 - self._sums[0].item() / self._parent_loss_sum), prog_bar=True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.parent.eval()  # the parent stays frozen (no dropout/BN updates)
        return self
