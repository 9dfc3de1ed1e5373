"""LightningModules: plain classification and AutoCL's loss-matching phase.

Both train with Lightning's *manual optimization*: ``training_step`` runs forward, backward and the
optimizer step itself (through ``self.optimizers()`` and ``self.manual_backward``, so mixed precision and
its grad scaler still apply). That removes most of Lightning's per-step machinery (closures, per-step
hooks, per-step ``self.log``), which dominated small models: a LeNet-300-100 epoch took 1.5x a bare
PyTorch loop (``experiments/bench/bench_train_loop.py``). A training "batch" may also be a *list* of
mini-batches (:class:`MiniBatches`, made by :class:`coresetlab.lit.training.BatchChunks`): each mini-batch gets its own optimizer
step, so the arithmetic is exactly that of one Lightning step per mini-batch, with the per-step overhead
paid once per list. The training loss is accumulated in a tensor and logged once per epoch.

On one device without a gradient scaler (``32-true``, ``bf16-mixed`` on CPU) and when neither a callback
nor the module overrides ``on_before_backward``, ``on_after_backward`` or ``on_before_optimizer_step``,
backward and step are plain PyTorch calls (the optimizer step still counts towards ``global_step``);
otherwise they go through ``manual_backward`` / ``LightningOptimizer.step`` and those hooks.

Schedulers are stepped here too: once per epoch (after the epoch's last batch, before the checkpoint of
that epoch is written), or after every optimizer step for per-step schedules (``OneCycleLR``,
``CyclicLR``, or ``scheduler_interval="step"``).

``channels_last=True`` stores the network's conv weights and feeds 4-D inputs in the channels-last
memory format (no effect on networks without ``Conv2d``). Set it through ``trainer.channels_last``
(:func:`coresetlab.lit.training.fit_module` applies it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import nn

from coresetlab.methods.autocl.objective import loss_ratio_error

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
Batch = tuple[torch.Tensor, torch.Tensor]


class MiniBatches(list):
    """A list of ``(x, y)`` mini-batches handed to one ``training_step``; each gets its own optimizer step."""

#: Per-step hooks that the plain (fast) step path skips; it is used only when nobody overrides them.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")

#: Schedulers whose schedule is defined per optimizer step (stepped after every step by default).
PER_STEP_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


def has_conv(model: nn.Module) -> bool:
    """Whether ``model`` contains a 2-D convolution (only those benefit from channels-last)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def set_channels_last(model: nn.Module, enabled: bool) -> bool:
    """Convert ``model``'s 4-D weights to channels-last (or back to contiguous) in place.

    Returns whether channels-last is in effect: only for models with a ``Conv2d``; MLPs are untouched.
    """
    if not has_conv(model):
        return False
    model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
    return bool(enabled)


def uses_channels_last(model: nn.Module) -> bool:
    """True when the first ``Conv2d`` weight of ``model`` is stored channels-last (and not also contiguous)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    return False


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in channels-last layout when requested and 4-D, else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


class _Base(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None,
        scheduler_interval: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if scheduler_interval not in (None, "epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch', 'step' or None, got {scheduler_interval!r}")
        self.automatic_optimization = False
        self.model = model
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.channels_last = False
        self.set_channels_last(channels_last)
        self._train_sum, self._train_n, self._stepped_epoch = torch.zeros(()), 0, -1

    def set_channels_last(self, enabled: bool) -> None:
        """Switch the memory format of the trained network(s) and of 4-D inputs (no-op without convs)."""
        self.channels_last = set_channels_last(self.model, enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(to_memory_format(x, self.channels_last))

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(opt)
        interval = self.scheduler_interval or ("step" if isinstance(sched, PER_STEP_SCHEDULERS) else "epoch")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}

    # -- training: manual optimization over one mini-batch or a list of them ------------------------------
    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _plain_steps(self) -> bool:
        """Whether backward/step can bypass Lightning's per-step hooks (see the module docstring)."""
        trainer = self.trainer
        if type(trainer.strategy) is not SingleDeviceStrategy or getattr(trainer.precision_plugin, "scaler", None):
            return False
        hooked = [type(cb) for cb in trainer.callbacks if any(
            getattr(type(cb), h) is not getattr(pl.Callback, h) for h in STEP_HOOKS)]
        return not hooked and all(getattr(type(self), h) is getattr(pl.LightningModule, h) for h in STEP_HOOKS)

    def on_train_epoch_start(self) -> None:
        self._train_sum, self._train_n = torch.zeros((), device=self.device), 0
        self._plain = self._plain_steps()

    def _step(self, opt, loss: torch.Tensor) -> None:
        """zero_grad, backward, optimizer step (plain PyTorch calls when :meth:`_plain_steps` allows)."""
        if self._plain:
            opt.optimizer.zero_grad()
            loss.backward()
            opt._on_before_step()  # Lightning's step counting (global_step), as LightningOptimizer.step does
            opt.optimizer.step()
            opt._on_after_step()
        else:
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def training_step(self, batch: Batch | MiniBatches, batch_idx: int) -> torch.Tensor:
        minibatches = batch if isinstance(batch, MiniBatches) else [batch]
        opt = self.optimizers()
        config = self.trainer.lr_scheduler_configs[0] if self.trainer.lr_scheduler_configs else None
        losses = []
        for x, y in minibatches:
            loss = self._loss(to_memory_format(x, self.channels_last), y)
            self._step(opt, loss)
            if config is not None and config.interval == "step":
                config.scheduler.step()
            losses.append(loss.detach())
            self._train_sum += loss.detach() * len(y)
            self._train_n += len(y)
        last = self.trainer.is_last_batch or batch_idx + 1 >= self.trainer.num_training_batches
        if config is not None and config.interval == "epoch" and last and self._stepped_epoch != self.current_epoch:
            config.scheduler.step()  # before the epoch's checkpoint, as Lightning's automatic optimization does
            self._stepped_epoch = self.current_epoch
        return torch.stack(losses).mean()  # non-finite if any mini-batch loss is (checked by callbacks)

    def _log_train(self, name: str) -> None:
        if self._train_n:
            self.log(name, self._train_sum.item() / self._train_n)

    # -- evaluation accumulates sums over the whole split (exact mean, independent of batch size) ----------
    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(3)

    on_test_epoch_start = on_validation_epoch_start

    def _eval_step(self, batch) -> None:
        x, y = batch
        logits = self(x)
        self._sums += torch.tensor(
            [F.cross_entropy(logits.float(), y, reduction="sum").item(), (logits.argmax(1) == y).sum().item(), len(y)]
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
    """Cross-entropy training of ``model``; logs train_loss (per epoch), val_loss/val_acc and test_loss/test_acc."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval, channels_last)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(x), y)

    def on_train_epoch_end(self) -> None:
        self._log_train("train_loss")


class MatchingModule(_Base):
    """AutoCL model compression, matching phase (AutoCL §4.2.1, Algorithm 2 with C = the small net, λ = 0).

    Per batch the small network minimises ``|1 - CE(small) / CE(parent)|`` against the frozen parent.
    Validation logs ``val_eps`` (the same ratio error on the whole validation split) besides
    val_loss/val_acc of the small network; training logs ``train_eps`` (epoch mean).
    """

    def __init__(
        self,
        model: nn.Module,
        parent: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval, channels_last)
        self.parent = parent.eval()
        for p in self.parent.parameters():
            p.requires_grad_(False)
        set_channels_last(self.parent, self.channels_last)

    def set_channels_last(self, enabled: bool) -> None:
        super().set_channels_last(enabled)
        if "parent" in self._modules:
            set_channels_last(self.parent, enabled)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parent_loss = F.cross_entropy(self.parent(x), y)
        return loss_ratio_error(F.cross_entropy(self.model(x), y), parent_loss)

    def on_train_epoch_end(self) -> None:
        self._log_train("train_eps")

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._parent_loss_sum = 0.0

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)
        x, y = batch
        logits = self.parent(to_memory_format(x, self.channels_last))
        self._parent_loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val_eps", abs(1.0 - self._sums[0].item() / self._parent_loss_sum), prog_bar=True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.parent.eval()  # the parent stays frozen (no dropout/BN updates)
        return self
