"""``coresetlab.prune``: the structured-pruning methods of this project on any user's CNN, in one call.

```python
import torch, torchvision, coresetlab
model = torchvision.models.resnet18(weights=None).eval()
x = torch.randn(8, 3, 224, 224)                       # example inputs: shapes (and the coreset's β)
small, report = coresetlab.prune(model, x, method="filter_coreset", keep=0.5)
print(report["params_before"], "->", report["params_after"], report["flops_before"], "->", report["flops_after"])
```

``method``: ``"filter_coreset"`` (sensitivity sampling + consumer-side reweighting, Mussay et al. 2020),
``"uniform"`` (uniform channel sampling) or ``"l1"`` (L1-norm filter pruning, Li et al. 2017); every
method keeps ``max(1, round(keep · width))`` channels of each prunable group. Chain CNNs (VGG, an
``nn.Sequential`` of layers) have every conv pruned; residual networks have their uncoupled
(block-internal) channels pruned through Torch-Pruning's dependency graph (see
:mod:`coresetlab.methods.structured.torch_pruning_glue`). The Hydra experiments call the same code
(the method objects' ``prune``). The pruned model is a new module with genuinely smaller tensors; fine-tune it
(with a fresh optimizer over its new parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coresetlab.errors import ConfigError

if TYPE_CHECKING:  # torch is imported when prune() runs: ``import coresetlab`` stays light
    import torch
    from torch import nn


def prune(
    model: nn.Module,
    example_inputs: torch.Tensor,
    method: str = "filter_coreset",
    keep: float = 0.5,
    ignored_layers: Sequence[str | nn.Module] | None = None,
    generator: torch.Generator | None = None,
    **method_kwargs: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` (untouched; a pruned copy is returned) and report what changed.

    ``example_inputs``: a batch the model accepts (used to trace non-chain networks, to count FLOPs of one
    input, and, for the filter coreset with ``beta=None``, to calibrate the patch-norm ball per layer).
    ``ignored_layers``: conv names (or modules) whose output channels stay. ``method_kwargs`` go to the
    method (e.g. ``beta=``, ``weighting=`` for the filter coreset, ``reweight=`` for uniform).
    Returns ``(pruned_model, report)`` with ``params_before/after``, ``flops_before/after`` (one input),
    ``groups`` (per pruned layer) and ``skipped`` (layers left as they are, with the reason).
    """
    import torch

    from coresetlab.methods.structured import METHODS

    if method not in METHODS:
        raise ConfigError(f"unknown pruning method '{method}', choose one of {', '.join(METHODS)}")
    if not isinstance(example_inputs, torch.Tensor):
        raise ConfigError("coresetlab.prune needs example_inputs: a tensor batch the model accepts")
    selector = METHODS[method](keep=keep, **method_kwargs)
    return selector.prune(model, example_inputs, generator, ignored_layers)
