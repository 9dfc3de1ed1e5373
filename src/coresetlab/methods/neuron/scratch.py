"""Baseline of the neuron-pruning tables: the pruned architecture trained from scratch.

Not a selection of the parent's neurons: a freshly initialised MLP with the pruned network's widths
(e.g. 784-28-100-10 for Table 1 of Mussay et al., ICLR 2020) trained with the same recipe as the
fine-tuning of the pruned networks. It answers whether the coreset's selection and weights help at all
compared with the architecture alone (Liu et al., *Rethinking the Value of Network Pruning*, 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.models.mlp import MLP


def scratch_mlp(parent: nn.Module, hidden: Sequence[int], seed: int) -> MLP:
    """A freshly initialised MLP with ``parent``'s input/output sizes and activation, hidden widths ``hidden``.

    PyTorch's default initialisation (the parents' own), drawn from ``seed`` without touching the
    global random state.
    """
    widths = list(parent.widths)
    if len(hidden) != len(widths) - 2 or any(int(h) < 1 for h in hidden):
        raise ConfigError(f"{list(hidden)} are not {len(widths) - 2} hidden widths >= 1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = MLP(in_features=widths[0], hidden=[int(h) for h in hidden], num_classes=widths[-1],
                    activation=getattr(parent, "activation", "relu"))
    ref = next(parent.parameters())
    return model.to(device=ref.device, dtype=ref.dtype)


@dataclass
class FromScratch:
    """``coreset_method`` of the from-scratch baseline (``conf/coreset_method/from_scratch.yaml``).

    The pruning tasks build :func:`scratch_mlp` of the target widths instead of pruning the parent.
    """

    name: str = "from_scratch"
    method: str = "scratch"

    def build(self, parent: nn.Module, hidden: Sequence[int], seed: int) -> MLP:
        return scratch_mlp(parent, hidden, seed)
