"""AutoCL channel pruning of VGG-19 on CIFAR-10 (AutoCL §4.2.2, Tables 1 and 3): ``vgg19_autocl``.

The LeNet pipeline of :mod:`coresetlab.tasks.autocl.compression`, on the CNN spine:

1. the shared VGG-19 parent from the parent cache (``task.parent``: the AutoCL authors' recipe — SGD
   0.1, batch 64, 160 epochs, ÷10 at 80/120 — in the paper profile);
2. the small network: a **fresh** VGG-19 with the slimming-70 % widths of AutoCL Table 1
   (``coreset_method``: :class:`~coresetlab.methods.autocl.student.RandomStudent`);
3. *matching* (Algorithm 2 with C = the small network, λ = 0): the small network minimises
   ``|1 − CE_small / CE_parent|`` per batch against the frozen parent (:class:`coresetlab.lit.MatchingModule`;
   paper: Adam 1e-3, batch 500, 180 epochs, ÷10 at 33 % / 66 %), best validation ε kept;
4. *fine-tuning* with cross entropy (paper: SGD 0.1, batch 64, 180 epochs, ÷10 at 90/135), best
   validation accuracy kept (the authors selected on the test set; we never do).

The record (:func:`coresetlab.tasks.cnn.common.cnn_record`) has accuracy/loss before and after
fine-tuning, parameters, FLOPs, CPU latency of parent and small network, the widths, and
``eps_test`` = |1 − CE_small/CE_parent| on the test set.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from coresetlab.lit import MatchingModule
from coresetlab.methods.autocl.objective import loss_ratio_error
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
    validate_task(t, ("match", "finetune"))
    dm, parent, pinfo, cost_parent = open_parent(cfg, ctx)

    with ctx.stage("init_small"):
        method = instantiate(cfg.coreset_method)
        small = method.build(parent, dm, seed=ctx.seed).train()

    fits: dict[str, Any] = {"match": None, "finetune": None}
    if int(t.match.epochs) > 0:
        with ctx.stage("match"):
            mcfg = phase_cfg(dm, t.match)
            module = MatchingModule(small, parent, instantiate(mcfg.optimizer), scheduler_factory(mcfg))
            fits["match"] = train_phase(ctx, dm, module, mcfg, "match", monitor="val_eps", mode="min")
    parent.cpu().eval()
    with ctx.stage("evaluate_before_ft"):
        before = eval_splits(small, dm)
    fits["finetune"], after, cost_small = finetune_and_measure(ctx, dm, small, t)

    eps = {
        "eps_test": float(loss_ratio_error(after["test"]["loss"], pinfo["test_loss"])),
        "eps_test_before_ft": float(loss_ratio_error(before["test"]["loss"], pinfo["test_loss"])),
    }
    return cnn_record(
        method=cfg.coreset_method.name, parent=parent, small=small, pinfo=pinfo, before=before, after=after,
        cost_parent=cost_parent, cost_small=cost_small, dataset=dm.name, fits=fits, metrics=eps,
    )
