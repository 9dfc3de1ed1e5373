"""Dubey et al. (ECCV 2018) Table 6 proxy: do compressed networks transfer to a new task?

The paper compresses an ImageNet VGG-16 and fine-tunes it on CUB-2011 / Stanford-Dogs (§4.6). Here (CIFAR-10
proxy, by default the AlexNet proxy: the cheapest of the networks whose dense layers hold most parameters) the
*source* task is the classes of ``dataset.classes`` (default 0–4) and the *target* task the classes of
``task.target_classes`` (default 5–9), both relabelled ``0..k-1``. Rows (``task.rows``), each fine-tuned on the
target training set for the same ``task.finetune.epochs`` with the same optimiser:

* ``finetune`` — the source parent (parent cache), full fine-tuning (the paper's "VGG-16 Finetune(FT)");
* ``scratch`` — a freshly initialised network of the same architecture ("Train from Scratch");
* ``svd_ft`` — Denton et al.'s weight-only SVD with the rank search of §3.6 on *source* data, then FT;
* ``prune_ft`` — Han et al. 2015 magnitude pruning of every layer to keep ``task.prune_keep`` of its weights;
  the masks stay on during FT (pruned weights stay zero), so it is pruning with retraining on the target;
* ``ap_s_ft`` — AP (§3.2) + Coreset-S (§3.4, λ of ``coreset_method.coreset.alpha``) on source data, then FT.

Every row gets the same fresh classifier (:func:`fresh_head`: a dense layer of the original head's input width
and ``len(target_classes)`` outputs, seeded), so the source head never leaks into the target task. Reported per
row: target test accuracy (model selected on the target *validation* split by the fine-tuning loop), parameters
(nonzero ones for ``prune_ft``) and the parameter factor vs the uncompressed network with the same head.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.lit import ClassifierModule, fit_module
from coresetlab.methods.dubey.deep_compression import apply_masks, bake, magnitude_masks
from coresetlab.methods.dubey.evaluation import accuracy
from coresetlab.methods.dubey.layers import Factorized, compressible_layers, get_module, replace_module
from coresetlab.methods.dubey.method import parse_variant
from coresetlab.tasks.dubey.compression import _build_method
from coresetlab.tasks.dubey.pipeline import Pipeline

log = logging.getLogger("coresetlab")

ROWS = {"finetune": "Fine-tune (FT), uncompressed", "scratch": "Train from scratch",
        "svd_ft": "SVD (Denton et al.) + FT", "prune_ft": "Pruning (Han et al.) + FT",
        "ap_s_ft": "AP+Coreset-S + FT"}


def fresh_head(model: nn.Module, name: str, n_classes: int, seed: int) -> nn.Module:
    """Replace layer ``name`` (the classifier; linear, 1×1-style conv or factorised) of ``model`` in place by a
    freshly initialised dense layer with the same input width and ``n_classes`` outputs; returns ``model``."""
    old = get_module(model, name)
    first = old.basis if isinstance(old, Factorized) else old
    torch.manual_seed(seed)
    if isinstance(first, nn.Linear):
        new: nn.Module = nn.Linear(first.in_features, n_classes)
    elif isinstance(first, nn.Conv2d):
        new = nn.Conv2d(first.in_channels, n_classes, first.kernel_size, first.stride, first.padding)
    else:
        raise ConfigError(f"domain adaptation: cannot replace head '{name}' of type {type(old).__name__}")
    replace_module(model, name, new)
    return model


def nonzero_params(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def _check(cfg: DictConfig) -> tuple[list[int], list[int], list[str]]:
    src = cfg.dataset.get("classes")
    tgt = cfg.task.get("target_classes")
    if not src or not tgt:
        raise ConfigError("domain_adaptation_dubey needs dataset.classes (source) and task.target_classes (target)")
    unknown = sorted(set(cfg.task.rows) - set(ROWS))
    if unknown:
        raise ConfigError(f"task.rows: unknown {unknown}; choose from {list(ROWS)}")
    if not 0 < float(cfg.task.prune_keep) <= 1:
        raise ConfigError(f"task.prune_keep must lie in (0, 1], got {cfg.task.prune_keep}")
    return [int(c) for c in src], [int(c) for c in tgt], list(cfg.task.rows)


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    src, tgt, row_names = _check(cfg)
    t = cfg.task
    method = _build_method(cfg)
    pipe = Pipeline(cfg, ctx, method)  # source data, source parent (cached), AP / rank search on source data
    parent = pipe.parent
    with ctx.stage("target_data"):
        tcfg = OmegaConf.merge(cfg.dataset, {"classes": tgt})
        dm = instantiate(tcfg)
        dm.setup()
    te, head = dm.dataset("test"), compressible_layers(parent)[-1]
    n_tgt = len(tgt)

    def finetune(model: nn.Module, name: str) -> nn.Module:
        model = fresh_head(model, head, n_tgt, ctx.seed)
        model.train()  # Lightning keeps the mode it is given: dropout on while fine-tuning
        module = ClassifierModule(model, instantiate(t.finetune.optimizer))
        fit_module(ctx, module, dm.loader("train", int(t.finetune.batch_size)), dm.loader("val"),
                   phase=f"ft_{name}", epochs=int(t.finetune.epochs), monitor="val_acc", mode="max")
        bake(model)
        return model.eval()

    def build(name: str) -> nn.Module:
        if name == "finetune":
            return copy.deepcopy(parent)
        if name == "scratch":
            torch.manual_seed(ctx.seed + 1)
            return instantiate(cfg.model)
        if name == "prune_ft":
            model = copy.deepcopy(parent)
            apply_masks(model, magnitude_masks(model, 1 - float(t.prune_keep)))
            return model
        v = parse_variant({"svd_ft": "svd", "ap_s_ft": "ap_s"}[name], set())
        base = pipe.ap_model()[0] if v.ap else parent
        with ctx.stage(f"coreset_{name}"):
            return pipe.coreset(base, v, method.search.tol)[0]

    dense = fresh_head(copy.deepcopy(parent), head, n_tgt, ctx.seed)
    dense_params = sum(p.numel() for p in dense.parameters())
    metrics: dict[str, float] = {"parent_source_test_acc": pipe.test_acc(parent), "dense_params": dense_params,
                                 "n_source_classes": len(src), "n_target_classes": n_tgt}
    table: list[dict[str, Any]] = []
    for name in row_names:
        log.info("domain adaptation row %s (%s)", name, ROWS[name])
        model = build(name)
        compressed_source_acc = pipe.test_acc(model) if name != "scratch" else None
        model = finetune(model, name)
        with ctx.stage(f"eval_{name}"):
            acc = accuracy(model, te.x, te.y, int(method.search.batch_size))
        params = nonzero_params(model) if name == "prune_ft" else sum(p.numel() for p in model.parameters())
        row = {"table": "table6", "row": name, "label": ROWS[name], "test_acc": acc, "test_err": 1 - acc,
               "params": params, "param_factor": dense_params / params,
               "source_test_acc_before_ft": compressed_source_acc}
        table.append(row)
        metrics.update({f"{name}_{k}": row[k] for k in ("test_acc", "params", "param_factor")})
        log.info("%s: target test acc %.4f, %d params (%.1fx)", ROWS[name], acc, params, row["param_factor"])
    return {
        "method": "dubey_domain_adaptation",
        "model": getattr(parent, "name", cfg.model.get("name")),
        "dataset": f"{pipe.dm.name}[{','.join(map(str, src))}->{','.join(map(str, tgt))}]",
        "metrics": metrics,
        "params_before": dense_params,
        "table": table,
        "extra": {"parent": {k: pipe.pinfo.get(k) for k in ("key", "dir", "cached", "test_acc")},
                  "source_classes": src, "target_classes": tgt, "head": head,
                  "ap": {k: v for k, v in pipe._ap[1].items() if k != "kept"} if pipe._ap is not None else None},
    }
