"""The initialiser of the small network ("the coreset" C) of AutoCL model compression.

The paper initialises the small network randomly, and :class:`RandomStudent` is the only initialiser
implemented. The task builds it from ``coreset_method`` (``_target_``) and calls
``build(parent, datamodule, seed)``, so another initialiser with that signature could be plugged in;
none exists (e.g. seeding the small network with a neuron coreset of the parent is not implemented).
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn


class RandomStudent:
    """A freshly initialised small network built from ``model`` (a model config), seeded by ``seed``.

    ``build`` ignores ``parent`` and ``datamodule`` (kept for the initialiser interface above); it
    seeds the global torch RNG with ``seed + 1`` before instantiating the model.
    """

    name = "autocl_student"

    def __init__(self, model: DictConfig | dict, name: str = "autocl_student") -> None:
        self.model_cfg, self.name = model, name

    def build(self, parent: nn.Module, datamodule, seed: int) -> nn.Module:
        torch.manual_seed(int(seed) + 1)  # distinct from the parent's init stream
        return instantiate(self.model_cfg)
