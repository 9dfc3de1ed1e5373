"""Neuron pruning of a trained MLP with neuron coresets + fine-tuning (Mussay et al., ICLR 2020).

Table 1 (``lenet_neuron_coreset``): LeNet-300-100 on MNIST, ~90 % of the parameters removed by
pruning neurons (Algorithm 2 per layer, layer by layer), then fine-tuned; paper: error 2.16 % ->
2.03 %, 267K -> 26K parameters. Figure 4 (``lenet_ablation``): the same for several compression
rates and two selections (coreset vs uniform), accuracy before/after fine-tuning and the fine-tuning
epochs to convergence.

Pipeline per (method, rate): hidden widths removing ``rate`` of the parameters
(:func:`~coresetlab.methods.shared.mlp_surgery.hidden_widths_for_compression`), layer-by-layer surgery in
``task.compression.order``; accuracy before fine-tuning; fine-tuning (after every pruned layer when
``task.finetune.per_layer``) until the validation loss stops improving; accuracy after. One run =
one seed (one parent).

Recipe options (``conf/experiment/lenet_neuron_coreset.yaml``): ``task.compression.reweight`` --
``outgoing`` (Algorithm 2), ``incoming`` (the same function under ReLU, the scales moved into the kept
neurons' incoming weights and biases) or ``none`` (ablation); ``task.finetune`` -- monitor, patience,
LR ``scheduler``, and ``distill`` (distillation from the parent: an extension, the method is then
labelled ``<name>+distill``). Baseline ``coreset_method=from_scratch``: the pruned widths, freshly
initialised and trained with the same recipe (:mod:`coresetlab.methods.neuron.scratch`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from omegaconf import DictConfig

from coresetlab.lit import evaluate
from coresetlab.methods.neuron.scratch import FromScratch
from coresetlab.methods.shared.mlp_surgery import check_reweight, compress_mlp, hidden_widths_for_compression
from coresetlab.models import count_params
from coresetlab.tasks.neuron.common import (
    distill_suffix,
    finetune,
    flat,
    generator,
    layer_input_betas,
    parent_extra,
    parent_mlp,
    selectors,
    setup_data,
)

log = logging.getLogger("coresetlab")


def _rates(t: DictConfig) -> list[float]:
    rates = t.get("rates")
    return [float(r) for r in rates] if rates else [float(t.compression.rate)]


def _sum(runs: list[dict[str, Any]], key: str) -> int:
    return int(sum(r[key] for r in runs))


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    dm = setup_data(cfg, ctx)
    parent, pinfo = parent_mlp(cfg, ctx, dm)
    sels = selectors(cfg, allow_scratch=True)
    rates = _rates(t)
    comp = t.compression
    prune_layers = comp.get("prune_layers")
    reweight = str(comp.get("reweight", "outgoing"))
    check_reweight(reweight, getattr(parent, "activation", "relu"))
    with ctx.stage("betas"):
        betas = layer_input_betas(parent, flat(dm, "train_eval")[0])
    p_test, p_val = evaluate(parent, dm.loader("test")), evaluate(parent, dm.loader("val"))
    params_before = count_params(parent)
    ft_cfg = t.finetune
    do_ft = int(ft_cfg.epochs) > 0
    suffix = distill_suffix(ft_cfg)
    teacher = parent if suffix else None

    rows: list[dict[str, Any]] = []
    histories: dict[str, list[list[float]]] = {}
    lr_final: dict[str, list[float | None]] = {}
    for mi, (label, sel) in enumerate(sels.items()):
        name = f"{label}{suffix}"
        for ri, rate in enumerate(ctx.progress(rates, desc=f"{label} rates")):
            hidden = hidden_widths_for_compression(parent.widths, rate, prune_layers)
            seed_offset = 1000 * mi + ri
            ft_runs: list[dict[str, Any]] = []
            tag = f"ft_{label}_r{rate:g}"
            if isinstance(sel, FromScratch):
                small, info = sel.build(parent, hidden, seed=int(ctx.seed) * 1_000_003 + 7919 + seed_offset), []
            else:
                with ctx.stage("compress"):
                    small, info = compress_mlp(parent, hidden, sel, comp.order, generator=generator(ctx, seed_offset),
                                               betas=betas, reweight=reweight)
            before = evaluate(small, dm.loader("test"))
            val_before = evaluate(small, dm.loader("val"))
            with ctx.stage("finetune"):
                if do_ft and ft_cfg.get("per_layer", True) and len(info) > 1:
                    # fine-tune after every pruned layer: redo the surgery with the callback (same seed
                    # stream, so the first pruned layer matches the one evaluated above)
                    def _ft(model, i, _tag=tag, _runs=ft_runs):
                        r = finetune(ctx, model, dm, ft_cfg, f"{_tag}_l{i}", teacher)
                        _runs.append(r)
                        return r["epochs_to_best"]

                    small, info = compress_mlp(parent, hidden, sel, comp.order, finetune=_ft,
                                               generator=generator(ctx, seed_offset), betas=betas, reweight=reweight)
                elif do_ft:
                    small = copy.deepcopy(small)
                    ft_runs.append(finetune(ctx, small, dm, ft_cfg, tag, teacher))
            after = evaluate(small, dm.loader("test"))
            val_after = evaluate(small, dm.loader("val"))
            params_after = count_params(small)
            histories[f"{name}_r{rate:g}"] = [r["val_acc_history"] for r in ft_runs]
            lr_final[f"{name}_r{rate:g}"] = [r["lr_history"][-1] if r["lr_history"] else None for r in ft_runs]
            row = {
                "method": name, "rate": rate, "hidden": "-".join(map(str, small.widths[1:-1])),
                "params_after": params_after, "compression": 1.0 - params_after / params_before,
                "acc_before": before["acc"], "loss_before": before["loss"], "val_acc_before": val_before["acc"],
                "acc_after": after["acc"], "loss_after": after["loss"], "err_after": 1.0 - after["acc"],
                "val_acc_after": val_after["acc"], "val_loss_after": val_after["loss"],
                "finetune_epochs": _sum(ft_runs, "epochs_to_best"),
                "finetune_epochs_run": _sum(ft_runs, "epochs_run"),
                "finetune_best_epoch": ft_runs[-1]["best_epoch"] if ft_runs else -1,
                "finetune_epochs_to_tol": _sum(ft_runs, "epochs_to_tol"),
                "draws": sum(r["draws"] for r in info),
                "reweight": "scratch" if isinstance(sel, FromScratch) else reweight,
            }
            rows.append(row)
            log.info("%s rate %.3f (%s, %d params): acc %.4f before / %.4f after fine-tuning (%d epochs, best %d)",
                     name, rate, row["hidden"], params_after, before["acc"], after["acc"], row["finetune_epochs_run"],
                     row["finetune_epochs"])

    metrics: dict[str, float] = {
        "parent_test_acc": p_test["acc"], "parent_test_err": 1.0 - p_test["acc"],
        "parent_test_loss": p_test["loss"], "parent_val_acc": p_val["acc"],
    }
    names = [f"{label}{suffix}" for label in sels]
    single = len(rows) == 1
    if single:
        r = rows[0]
        metrics.update({
            "test_acc": r["acc_after"], "test_err": r["err_after"], "test_loss": r["loss_after"],
            "val_acc": r["val_acc_after"], "val_err": 1.0 - r["val_acc_after"], "val_loss": r["val_loss_after"],
            "test_acc_before_ft": r["acc_before"], "test_err_before_ft": 1.0 - r["acc_before"],
            "val_acc_before_ft": r["val_acc_before"],
            "finetune_epochs": r["finetune_epochs"], "finetune_epochs_run": r["finetune_epochs_run"],
            "finetune_best_epoch": r["finetune_best_epoch"], "finetune_epochs_to_tol": r["finetune_epochs_to_tol"],
        })
    else:
        for name in names:
            mine = [r for r in rows if r["method"] == name]
            for key, src in (("acc_before", "acc_before"), ("acc_after", "acc_after"), ("val_acc_after", "val_acc_after"),
                             ("finetune_epochs", "finetune_epochs"), ("finetune_epochs_to_tol", "finetune_epochs_to_tol")):
                metrics[f"{key}_{name}"] = sum(r[src] for r in mine) / len(mine)
    out: dict[str, Any] = {
        "method": names[0] if len(names) == 1 else "+".join(names),
        "model": getattr(parent, "name", cfg.model.name),
        "dataset": dm.name,
        "metrics": metrics,
        "params_before": params_before,
        "table": rows,
        "extra": {"parent": parent_extra(pinfo), "betas": betas, "order": comp.order, "reweight": reweight,
                  "distill": bool(suffix), "prune_layers": None if prune_layers is None else list(prune_layers),
                  "finetune_val_acc_history": histories, "finetune_last_lr": lr_final},
    }
    if single:
        out["params_after"] = rows[0]["params_after"]
    return out
