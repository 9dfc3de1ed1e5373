"""Learning-rate schedules evaluated at every optimizer step (step decay at epoch fractions, one-cycle).

:class:`StepwiseLR` is a ``torch.optim.lr_scheduler.LRScheduler`` that sets the learning rate after
**every optimizer step** (through ``Optimizer.register_step_post_hook``), so it works unchanged in the
project's Lightning modules, which step their schedulers once per epoch: that per-epoch ``step()`` call is a
no-op here. The learning rate is a pure function of the optimizer-step counter ``t`` (saved in
``state_dict``, so a resumed fit continues the schedule), ``epochs`` and ``steps_per_epoch``:

* ``kind="multistep"``: ``lr = base · gamma^k`` where ``k`` = number of milestones ≤ the current epoch;
  milestones are **fractions of the phase's epochs** (``[0.5, 0.75]`` of 160 epochs = epochs 80 and 120,
  i.e. exactly ``MultiStepLR(milestones=[80, 120])`` stepped per epoch) so a profile with fewer epochs
  keeps the shape.
* ``kind="onecycle"``: linear warm-up from ``base/div_factor`` to ``base`` over ``pct_start`` of all
  steps, then cosine annealing to ``base/(div_factor·final_div_factor)`` (Smith & Topin 2019, the
  ``OneCycleLR`` learning-rate curve; momentum is not cycled).
* ``kind="constant"``: ``lr = base``.

``steps_per_epoch`` must be known when the optimizer is built; tasks fill it in from the training loader
(:func:`coresetlab.tasks.cnn.common.with_steps_per_epoch`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from coresetlab.errors import ConfigError

KINDS = ("multistep", "onecycle", "constant")


def stepwise_factor(
    t: int,
    *,
    kind: str,
    epochs: int,
    steps_per_epoch: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """Multiplier of the base learning rate after ``t`` optimizer steps (see the module docstring)."""
    total = max(1, int(epochs) * int(steps_per_epoch))
    if kind == "constant":
        return 1.0
    if kind == "multistep":
        epoch = t // max(1, int(steps_per_epoch))
        passed = sum(1 for f in milestones if epoch >= round(float(f) * int(epochs)))
        return float(gamma) ** passed
    if kind == "onecycle":
        t = min(t, total)
        start, low = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
        warm = max(1, int(round(pct_start * total)))
        if t < warm:
            return start + (1.0 - start) * t / warm
        frac = (t - warm) / max(1, total - warm)
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ConfigError(f"unknown schedule kind {kind!r}; choose one of {', '.join(KINDS)}")


class StepwiseLR(LRScheduler):
    """A learning-rate schedule applied after every optimizer step; Lightning's per-epoch ``step()`` is ignored."""

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        kind: str = "multistep",
        epochs: int,
        steps_per_epoch: int | None,
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown schedule kind {kind!r}; choose one of {', '.join(KINDS)}")
        if not steps_per_epoch or int(steps_per_epoch) < 1:
            raise ConfigError("StepwiseLR needs steps_per_epoch (filled in by the task from the training loader)")
        if any(not 0.0 <= float(f) <= 1.0 for f in milestones):
            raise ConfigError(f"milestones are fractions of the epochs in [0, 1], got {list(milestones)}")
        self.params: dict[str, Any] = dict(
            kind=kind, epochs=int(epochs), steps_per_epoch=int(steps_per_epoch), milestones=[float(f) for f in milestones],
            gamma=float(gamma), pct_start=float(pct_start), div_factor=float(div_factor),
            final_div_factor=float(final_div_factor),
        )
        self.t = 0
        super().__init__(optimizer)
        self._hook = optimizer.register_step_post_hook(self._after_optimizer_step)

    def factor(self, t: int | None = None) -> float:
        return stepwise_factor(self.t if t is None else t, **self.params)

    def get_lr(self) -> list[float]:
        return [float(base) * self.factor() for base in self.base_lrs]

    def _apply(self) -> None:
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def _after_optimizer_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.t += 1
        self._apply()

    def step(self, epoch: int | None = None) -> None:  # noqa: ARG002 - the per-epoch call is a no-op
        """Called by Lightning once per epoch (and once at construction): (re)applies the current rate."""
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "base_lrs": list(self.base_lrs), "params": dict(self.params)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.t = int(state_dict["t"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._apply()
