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


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """``model`` re-initialised in place from ``seed``: its own ``reset_parameters()`` if it has one (VGG,
    CifarResNet: their papers' inits), else every submodule's; BN running statistics reset."""
    torch.manual_seed(int(seed))
    if hasattr(model, "reset_parameters"):
        model.reset_parameters()
    else:
        for m in model.modules():
            if m is not model and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return model


class ReinitStudent:
    """AutoCL's small network at the widths of another pruning: a **fresh** network with the architecture
    that ``widths_from`` (a pruning method config, e.g. uniform channels at the same ``keep``) gives the
    parent, randomly initialised as in the paper (§4.2.2: the small network starts from scratch).

    ``prune(model, example_inputs, generator)`` has the pruning methods' interface so one pipeline runs
    every method; ``needs_matching = True`` tells it to run AutoCL's loss-matching phase before fine-tuning
    (extra training, reported as such). The seed of the fresh init is drawn from ``generator``.
    """

    needs_matching = True

    def __init__(self, keep: float, widths_from: DictConfig | dict, name: str = "autocl_student") -> None:
        self.keep, self.widths_from, self.name = keep, widths_from, name

    def validate(self) -> ReinitStudent:
        from coresetlab.errors import ConfigError

        if not 0.0 < float(self.keep) <= 1.0:
            raise ConfigError(f"coreset_method.keep must be in (0, 1], got {self.keep}")
        return self

    def prune(self, model: nn.Module, example_inputs=None, generator: torch.Generator | None = None):
        skeleton, info = instantiate(self.widths_from).prune(model, example_inputs, generator=generator)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 1
        return reinitialise(skeleton, seed).train(), {"widths_from": (info or {}).get("method", str(
            self.widths_from.get("name", "?"))), "reinitialised": True, "init_seed": seed}
