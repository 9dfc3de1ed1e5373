"""Cost of a network: parameters, FLOPs of one input, and measured inference latency on this machine.

* **Parameters**: every parameter tensor (BN γ/β included, running statistics excluded) —
  :func:`coresetlab.models.count_params`.
* **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` on one input (batch 1, e.g. one 32×32 image),
  eval mode. It counts the matrix products (convolutions, linear layers) as 2 FLOPs per multiply-add;
  BN, ReLU and pooling are not counted. (Liu et al.'s network-slimming paper counts the same way:
  VGG-19 on CIFAR ≈ 7.97e8.)
* **Latency**: the median wall time of repeated forward passes (eval, ``torch.inference_mode``) on a
  random batch, after warm-up passes, with the current torch thread count (recorded). Batch 1 measures
  the per-image latency, a large batch the throughput; both on the CPU unless the model lives elsewhere
  (then CUDA is synchronised around each pass).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from coresetlab.models import count_params


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on a single input of shape ``input_shape`` (no batch dim), eval mode."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape, device=_device(model))
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def latency_ms(model: nn.Module, input_shape: Sequence[int], batch_size: int, warmup: int = 3, reps: int = 10,
               seed: int = 0) -> float:
    """Median wall time (milliseconds) of ``reps`` forward passes of a batch, after ``warmup`` passes."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    was_training = model.training
    model.eval()
    device = _device(model)
    x = torch.randn(int(batch_size), *input_shape, generator=torch.Generator().manual_seed(seed)).to(device)
    for _ in range(int(warmup)):
        model(x)
    times = []
    for _ in range(int(reps)):
        _sync(device)
        t0 = time.perf_counter()
        model(x)
        _sync(device)
        times.append(time.perf_counter() - t0)
    model.train(was_training)
    return 1000.0 * statistics.median(times)


def network_cost(
    model: nn.Module,
    input_shape: Sequence[int],
    latency: Mapping[int, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """``{"params", "flops", "latency_b<B>_ms" for each batch B, "threads", "device"}``.

    ``latency``: ``{batch_size: (warmup, reps)}``, e.g. ``{1: (3, 10), 256: (1, 3)}``; None or empty
    skips the timing.
    """
    out: dict[str, Any] = {"params": count_params(model), "flops": count_flops(model, input_shape)}
    for bs, (warmup, reps) in (latency or {}).items():
        out[f"latency_b{int(bs)}_ms"] = latency_ms(model, input_shape, int(bs), int(warmup), int(reps))
    out["threads"] = torch.get_num_threads()
    out["device"] = str(_device(model))
    return out
