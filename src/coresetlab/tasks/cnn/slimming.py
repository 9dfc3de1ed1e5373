"""Network slimming of VGG-19 on CIFAR-10 (Liu et al. 2017; AutoCL Table 3 row "Structured Pruning"): ``vgg19_slimming``.

1. the shared VGG-19 parent from the parent cache (the baseline of the comparison);
2. *sparsity training* with the L1 term ``s · Σ|γ|`` on the BN scaling factors
   (:class:`coresetlab.lit.sparsity.BNSparsity`): in the paper profile **from scratch with the parent's
   recipe** (Liu et al.: same schedule as the baseline), in the fast profile by **fine-tuning the cached
   parent** with the L1 term for a few epochs (``task.sparsity.from_scratch=false``; a documented
   fast-profile shortcut, not the paper's procedure);
3. one global |γ| threshold removing ``coreset_method.percent`` (70 %) of the channels, with the guard
   against empty layers (:mod:`coresetlab.methods.slimming`), then channel surgery;
4. fine-tuning of the slimmed network (best validation accuracy kept).

The record (:func:`coresetlab.tasks.cnn.common.cnn_record`) stores the resulting widths (``width_l01`` …,
``extra.cfg``) for AutoCL Table 1, and the sparse network's accuracy before pruning.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from coresetlab.lit import ClassifierModule
from coresetlab.lit.sparsity import BNSparsity
from coresetlab.tasks.cnn.common import (
    cnn_record,
    eval_splits,
    finetune_and_measure,
    open_parent,
    phase_cfg,
    scheduler_factory,
    train_phase,
    validate_task,
)


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    validate_task(t, ("sparsity", "finetune"))
    method = instantiate(cfg.coreset_method).validate()
    dm, parent, pinfo, cost_parent = open_parent(cfg, ctx)

    sp = t.sparsity
    if bool(sp.from_scratch):
        torch.manual_seed(ctx.seed + 2)  # a fresh network, distinct from the parent's init stream
        sparse = instantiate(cfg.model)
    else:
        sparse = copy.deepcopy(parent).train()
    fits: dict[str, Any] = {"sparsity": None, "finetune": None}
    if int(sp.epochs) > 0:
        with ctx.stage("sparsity"):
            scfg = phase_cfg(dm, sp)
            module = ClassifierModule(sparse, instantiate(scfg.optimizer), scheduler_factory(scfg))
            fits["sparsity"] = train_phase(ctx, dm, module, scfg, "sparsity", callbacks=[BNSparsity(method.s)])
    sparse.cpu().eval()
    with ctx.stage("prune"):
        sparse_eval = eval_splits(sparse, dm)
        small, info = method.prune(sparse)
        small.name = f"{getattr(parent, 'name', 'vgg')}_slimmed{round(100 * method.percent)}"
        before = eval_splits(small, dm)
    fits["finetune"], after, cost_small = finetune_and_measure(ctx, dm, small, t)

    extra_metrics = {
        "sparse_test_acc": sparse_eval["test"]["acc"], "sparse_val_acc": sparse_eval["val"]["acc"],
        "slimming_threshold": info["threshold"], "guarded_layers": len(info["guarded_layers"]),
    }
    return cnn_record(
        method=method.name, parent=parent, small=small, pinfo=pinfo, before=before, after=after,
        cost_parent=cost_parent, cost_small=cost_small, dataset=dm.name, fits=fits, metrics=extra_metrics,
        extra={"slimming": {**info, "percent": method.percent, "s": method.s, "min_channels": method.min_channels,
                            "from_scratch": bool(sp.from_scratch)}},
    )
