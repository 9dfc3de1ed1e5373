"""Initialisers of the small network ("the coreset" C) used by AutoCL model compression.

The paper initialises the small network randomly; the init is pluggable so that a neuron coreset of
the parent (Mussay et al.) can seed it instead.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn


class RandomStudent:
    """A freshly initialised small network built from ``model`` (a model config), seeded by ``seed``."""

    name = "autocl_student"

    def __init__(self, model: DictConfig | dict, name: str = "autocl_student") -> None:
        self.model_cfg, self.name = model, name

    def build(self, parent: nn.Module, datamodule, seed: int) -> nn.Module:
        torch.manual_seed(int(seed) + 1)  # distinct from the parent's init stream
        return instantiate(self.model_cfg)
