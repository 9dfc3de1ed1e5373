"""AutoCL model compression (AutoCL §4.2.1; Table 2: LeNet-300-100 on MNIST, later VGG-19 on CIFAR-10).

Pipeline: (1) parent from the parent cache; (2) *matching*: a small network, initialised by the
``coreset_method`` (random in the paper), minimises ``|1 - CE(small)/CE(parent)|`` per batch
(Algorithm 2 with C = the small net, λ = 0); (3) *fine-tuning* with plain cross entropy.
Each phase keeps the epoch with the best validation score (the original code selected on the test
set; we never do). Reported: test accuracy/loss of parent and small network, parameter counts,
compression, and ε = |1 - L_small/L_parent| on train and test.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from coresetlab.lit import ClassifierModule, MatchingModule, evaluate, fit_module, get_parent
from coresetlab.methods.autocl.objective import loss_ratio_error
from coresetlab.models import count_params

log = logging.getLogger("coresetlab")


def _scheduler(phase_cfg: DictConfig):
    sch = phase_cfg.get("scheduler")
    return instantiate(sch) if sch and "_target_" in sch else None


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    with ctx.stage("data"):
        dm = instantiate(cfg.dataset)
        dm.setup()
    with ctx.stage("parent"):
        parent, pinfo = get_parent(ctx, dm, cfg.model, t.parent)
    parent.eval()

    with ctx.stage("init_small"):
        method = instantiate(cfg.coreset_method)
        small = method.build(parent, dm, seed=ctx.seed)

    fits: dict[str, Any] = {}
    if int(t.match.epochs) > 0:
        with ctx.stage("match"):
            module = MatchingModule(small, parent, instantiate(t.match.optimizer), _scheduler(t.match))
            fits["match"] = fit_module(
                ctx, module, dm.loader("train", int(t.match.batch_size)), dm.loader("val"), phase="match",
                epochs=int(t.match.epochs), monitor="val_eps", mode="min", ckpt_dir=ctx.ckpt_dir("match"),
            )
    if int(t.finetune.epochs) > 0:
        with ctx.stage("finetune"):
            module = ClassifierModule(small, instantiate(t.finetune.optimizer), _scheduler(t.finetune))
            fits["finetune"] = fit_module(
                ctx, module, dm.loader("train", int(t.finetune.batch_size)), dm.loader("val"), phase="finetune",
                epochs=int(t.finetune.epochs), monitor=t.finetune.get("monitor", "val_acc"),
                mode=t.finetune.get("mode", "max"), ckpt_dir=ctx.ckpt_dir("finetune"),
            )

    with ctx.stage("evaluate"):
        ev = {}
        for split in ("train_eval", "val", "test"):
            loader = dm.loader(split)
            ev[split] = {"small": evaluate(small, loader), "parent": evaluate(parent, loader)}
    metrics = {
        "test_acc": ev["test"]["small"]["acc"],
        "test_loss": ev["test"]["small"]["loss"],
        "val_acc": ev["val"]["small"]["acc"],
        "val_loss": ev["val"]["small"]["loss"],
        "train_loss": ev["train_eval"]["small"]["loss"],
        "parent_test_acc": ev["test"]["parent"]["acc"],
        "parent_test_loss": ev["test"]["parent"]["loss"],
        "parent_val_acc": ev["val"]["parent"]["acc"],
        "parent_train_loss": ev["train_eval"]["parent"]["loss"],
    }
    for split, name in (("train_eval", "train"), ("test", "test")):
        metrics[f"eps_{name}"] = float(loss_ratio_error(ev[split]["small"]["loss"], ev[split]["parent"]["loss"]))
    for phase, f in fits.items():
        metrics[f"{phase}_epochs"] = f["epochs"]
        metrics[f"{phase}_best_epoch"] = f["best_epoch"]
    log.info(
        "parent test acc %.4f loss %.4f | small test acc %.4f loss %.4f | eps_test %.4f",
        metrics["parent_test_acc"], metrics["parent_test_loss"], metrics["test_acc"], metrics["test_loss"],
        metrics["eps_test"],
    )
    return {
        "method": cfg.coreset_method.name,
        "model": f"{getattr(parent, 'name', cfg.model.name)} -> {getattr(small, 'name', 'small')}",
        "dataset": dm.name,
        "metrics": metrics,
        "params_before": count_params(parent),
        "params_after": count_params(small),
        "extra": {"parent": {k: pinfo[k] for k in ("key", "dir", "cached", "fit")}, "fits": fits},
    }
