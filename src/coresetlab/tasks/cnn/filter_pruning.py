"""Prune the parent, fine-tune: ONE pipeline for every structured pruning method on CIFAR CNNs.

Experiments ``vgg19_filter_coreset``, ``resnet56_filter_coreset`` and ``cifar_pruning_compare``:

1. the parent from the parent cache (``task.parent``; one per network and recipe, shared with the other
   experiments of that network);
2. ``coreset_method.prune(parent, example_inputs, generator)`` — any method with the pruning interface:
   the filter coreset, uniform channels and L1-norm filters (:mod:`coresetlab.methods.structured`), network
   slimming's pruning step without its sparsity phase
   (:class:`~coresetlab.methods.slimming.SlimmingNoSparsity`), or AutoCL's fresh small network at the same
   widths (:class:`~coresetlab.methods.autocl.student.ReinitStudent`, ``needs_matching``: its loss-matching
   phase ``task.match`` runs first and is reported as extra training). ``example_inputs`` =
   ``task.example_images`` un-augmented training images (traced; the filter coreset's per-layer β = their largest
   input-patch norm when ``coreset_method.beta`` is null; uniform / L1 ignore their values);
   ``generator`` is seeded by the run's seed;
3. a fresh optimizer and fine-tuning (:func:`~coresetlab.tasks.cnn.common.finetune`, ``task.finetune``;
   best validation accuracy kept), the same budget for every method of an experiment;
4. the record (:func:`~coresetlab.tasks.cnn.common.cnn_record`): accuracy before/after fine-tuning, params,
   FLOPs, CPU latency, plus ``keep``, ``prune_s`` (construction time), the training budget after the parent
   (``finetune_images`` = epochs × images per epoch, ``match_images``, ``extra_train_images``) and the
   method's own ``info`` under ``extra.prune``. ``model`` = the parent's name (``vgg19``, ``resnet56``).
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from coresetlab.errors import ConfigError
from coresetlab.lit import MatchingModule
from coresetlab.methods.autocl.objective import loss_ratio_error
from coresetlab.tasks.cnn.common import (
    cnn_record,
    eval_splits,
    finetune_and_measure,
    open_parent,
    phase_cfg,
    phase_images,
    scheduler_factory,
    train_phase,
    validate_task,
)


def build_method(cfg: DictConfig):
    """The configured pruning method, checked before any data is loaded."""
    method = instantiate(cfg.coreset_method)
    prune = getattr(method, "prune", None)
    if not callable(prune) or not {"example_inputs", "generator"} <= set(inspect.signature(prune).parameters):
        raise ConfigError(f"coreset_method {cfg.coreset_method.get('name')!r} has no prune(model, example_inputs, "
                          "generator): not a structured pruning method")
    if callable(getattr(method, "validate", None)):
        method = method.validate() or method
    if getattr(method, "needs_matching", False) and cfg.task.get("match") is None:
        raise ConfigError(f"coreset_method {method.name!r} trains by loss matching: the experiment needs task.match")
    return method


def example_inputs(dm, n: int) -> torch.Tensor:
    """``n`` un-augmented training images (normalised; the first batch of ``train_eval``): traced by the pruner,
    and the filter coreset's β (input-patch norm bound per layer, ``beta: null``) is their largest patch norm."""
    x, _ = next(iter(dm.loader("train_eval", max(1, int(n)))))
    return x[: max(1, int(n))].float()


def budget_images(dm, node: DictConfig | None) -> int:
    """Training images a phase sees in all: epochs × images per epoch (0 for a missing or 0-epoch phase)."""
    if node is None or int(node.epochs) <= 0:
        return 0
    return int(node.epochs) * phase_images(dm, node)


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    method = build_method(cfg)
    matching = bool(getattr(method, "needs_matching", False))
    validate_task(t, ("match", "finetune") if t.get("match") is not None else ("finetune",))
    keep = float(getattr(method, "keep", math.nan))
    dm, parent, pinfo, cost_parent = open_parent(cfg, ctx)

    gen = torch.Generator().manual_seed(int(ctx.seed))
    with ctx.stage("prune"):
        t0 = time.perf_counter()
        small, info = method.prune(copy.deepcopy(parent).cpu().eval(), example_inputs(dm, t.example_images),
                                   generator=gen)
        prune_s = time.perf_counter() - t0
        small.name = f"{getattr(parent, 'name', 'net')}_{method.name}_keep{keep:g}"
        before = eval_splits(small, dm)

    fits: dict[str, Any] = {"match": None, "finetune": None}
    if matching and int(t.match.epochs) > 0:
        with ctx.stage("match"):
            mcfg = phase_cfg(dm, t.match)
            small.train()
            module = MatchingModule(small, parent, instantiate(mcfg.optimizer), scheduler_factory(mcfg))
            fits["match"] = train_phase(ctx, dm, module, mcfg, "match", monitor="val_eps", mode="min")
        parent.cpu().eval()
        small.cpu()
        before = eval_splits(small, dm)  # "before fine-tuning" = after matching for the learned network
    fits["finetune"], after, cost_small = finetune_and_measure(ctx, dm, small, t)

    match_images = budget_images(dm, t.match) if matching else 0
    metrics: dict[str, float] = {
        "keep": keep, "prune_s": prune_s, "finetune_images": budget_images(dm, t.finetune),
        "match_images": match_images, "extra_train_images": match_images,
        "params_kept": cost_small["params"] / cost_parent["params"],
    }
    if matching:
        metrics["eps_test"] = float(loss_ratio_error(after["test"]["loss"], pinfo["test_loss"]))
    rec = cnn_record(
        method=method.name, parent=parent, small=small, pinfo=pinfo, before=before, after=after,
        cost_parent=cost_parent, cost_small=cost_small, dataset=dm.name, fits=fits, metrics=metrics,
        extra={"prune": _jsonable(info), "keep": keep, "small_arch": small.name},
    )
    rec["model"] = str(getattr(parent, "name", cfg.model.get("name", "model")))
    return rec


def _jsonable(x: Any) -> Any:
    """The method's info as JSON (tensors to lists, unknown objects to strings)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    return str(x)
