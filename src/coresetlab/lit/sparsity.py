"""Lightning glue for network slimming's sparsity training (Liu et al. 2017, Eq. 1)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.optim import Optimizer

from coresetlab.methods.slimming import add_bn_l1_subgradient


class BNSparsity(pl.Callback):
    """Add ``s · sign(γ)`` to every BN scaling factor's gradient before each optimizer step.

    ``on_before_optimizer_step`` runs after mixed-precision gradients are unscaled, so the term has its
    nominal size under every ``trainer.precision``. The module's network is ``pl_module.model``.
    """

    def __init__(self, s: float) -> None:
        self.s = float(s)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        add_bn_l1_subgradient(pl_module.model, self.s)
