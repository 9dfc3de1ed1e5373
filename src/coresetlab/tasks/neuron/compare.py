"""Figure 3 (Mussay et al., ICLR 2020): output error (no fine-tuning) and accuracy after fine-tuning vs fraction kept.

LeNet-200-105 (784-200-105-10) on MNIST. For every fraction ``f`` of parameters kept and every
repetition, each method compresses the trained parent and we measure the average error
``(1/|test|) Σ_x ‖φ_θ̂(x) − φ_θ(x)‖₁`` of the network outputs (logits: ``err``; relative to
``‖φ_θ(x)‖₁``: ``err_rel``; softmax probabilities: ``err_prob``) and the test accuracy. Methods:

* weight sparsification baselines (``task.baselines``): ``uniform``, ``svd``, ``l1``, ``l2``,
  ``l1l2`` (:mod:`coresetlab.methods.neuron.sparsify`) and ``corenet``, ``corenet+``, ``corenet++``
  (:mod:`coresetlab.methods.neuron.corenet`; sensitivities from ``s_points`` validation images, the
  amplification set is another ``t_points``); the budget ``f`` is spread evenly over the weight
  matrices, the output layer kept dense with ``task.dense_last`` (it holds < 1 % of the weights, and
  sparsifying it to ``f`` destroys every method at small ``f``);
* neuron selections (``task.methods``: label -> coreset_method, e.g. the neuron coreset): hidden
  widths shrunk by one common factor so that the smaller network has at most ``f`` of the
  parameters, layer-by-layer surgery in ``task.order``.

``kept_frac`` is the fraction actually kept (non-zero weights + biases, or ``r (in + out)`` for SVD).

Two readings (the caption says *accuracy*, §4 says the pruned weights were fine-tuned until
convergence, the §4.3 text measures the output error): every row holds the reading **without
fine-tuning** (``err``, ``err_rel``, ``err_prob``, ``test_acc``) and, when ``task.finetune.enabled``,
for the first ``task.finetune.reps`` repetitions the reading **after a fixed fine-tuning budget**
(``task.finetune.epochs`` for every method, best-validation weights): ``test_acc_ft``, ``err_ft``,
``val_acc_ft``. Fine-tuning keeps each method's structure: the zero pattern of the sparsifiers and
CoreNets, the rank of SVD (:func:`~coresetlab.methods.neuron.sparsify.freeze_structure`), the widths
of the neuron methods.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from omegaconf import DictConfig

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron.corenet import VARIANTS, CoreNet, corenet_plan
from coresetlab.methods.neuron.sparsify import (
    ENTRY_METHODS,
    compress_linear_layers,
    freeze_structure,
    layer_fractions,
)
from coresetlab.methods.shared.mlp_surgery import compress_mlp, hidden_widths_for_compression
from coresetlab.models import count_params
from coresetlab.tasks.neuron.common import (
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

BASELINES = ("svd", *ENTRY_METHODS, *VARIANTS)
DETERMINISTIC = ("svd",)


@torch.no_grad()
def output_errors(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Average L1 output error vs the parent's outputs ``ref`` (logits and softmax) and accuracy."""
    out = model(x)
    return {
        "err": float((out - ref).abs().sum(1).mean()),
        "err_rel": float(((out - ref).abs().sum(1) / ref.abs().sum(1).clamp_min(1e-12)).mean()),
        "err_prob": float((out.softmax(1) - ref.softmax(1)).abs().sum(1).mean()),
        "test_acc": float((out.argmax(1) == y).double().mean()),
    }


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    baselines = [str(b) for b in t.baselines]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
    dm = setup_data(cfg, ctx)
    parent, pinfo = parent_mlp(cfg, ctx, dm)
    sels = selectors(cfg)
    x, y = flat(dm, "test", t.get("test_limit"))
    xv, yv = flat(dm, "val")
    perm = torch.randperm(len(xv), generator=generator(ctx, 17))
    n_s, n_t = int(t.s_points), int(t.t_points)
    s_pts, t_pts = xv[perm[:n_s]], xv[perm[n_s:n_s + n_t]]
    with torch.no_grad():
        ref = parent(x)
    total = count_params(parent)
    base_acc = float((ref.argmax(1) == y).double().mean())
    betas = layer_input_betas(parent, flat(dm, "train_eval")[0])
    fractions = [float(f) for f in t.fractions]
    reps = int(t.reps)
    g = generator(ctx, 1)

    with ctx.stage("corenet_sensitivities"):
        corenets = {v: CoreNet(variant=v, tau=int(t.tau)) for v in baselines if v in VARIANTS}
        plan = corenet_plan(parent, s_pts, t_pts) if corenets else None

    def compress(label: str, frac: float) -> tuple[torch.nn.Module, int]:
        if label in BASELINES:
            fracs = layer_fractions(parent, frac, bool(t.dense_last))
            if label in corenets:
                return corenets[label].compress(parent, fracs, generator=g, plan=plan)
            return compress_linear_layers(parent, fracs, label, g, float(t.l1l2_alpha))
        hidden = hidden_widths_for_compression(parent.widths, 1.0 - frac, t.get("prune_layers"))
        small, _ = compress_mlp(parent, hidden, sels[label], t.order, generator=g, betas=betas,
                                reweight=str(t.get("reweight", "outgoing")))
        return small, count_params(small)

    ft = t.get("finetune") or {}
    ft_on = bool(ft.get("enabled", False)) and int(ft.get("epochs", 0)) > 0
    ft_reps = int(ft.get("reps", 1)) if ft_on else 0
    ft_fracs = None if not ft_on or ft.get("fractions") is None else {float(f) for f in ft.fractions}

    def finetuned(label: str, frac: float, rep: int, small: torch.nn.Module) -> dict[str, Any]:
        model = copy.deepcopy(small)
        if label in BASELINES:
            freeze_structure(model, label)
        r = finetune(ctx, model, dm, ft, f"ft_{label}_f{frac:g}_r{rep}")
        out = output_errors(model, x, y, ref)
        with torch.no_grad():
            val_acc = float((model(xv).argmax(1) == yv).double().mean())
        return {"test_acc_ft": out["test_acc"], "err_ft": out["err"], "val_acc_ft": val_acc,
                "ft_epochs_run": r["epochs_run"], "ft_best_epoch": r["best_epoch"]}

    rows: list[dict[str, Any]] = []
    grid = [(m, f) for m in [*baselines, *sels] for f in fractions]
    with ctx.stage("compress_evaluate"):
        for label, frac in ctx.progress(grid, desc="method x fraction"):
            deterministic = label in DETERMINISTIC or (label in sels and sels[label].method == "percentile")
            res, small, tuned = None, None, None
            for rep in range(reps):
                if res is None or not deterministic:
                    small, kept = compress(label, frac)
                    res = {"kept_params": kept, "kept_frac": kept / total, **output_errors(small, x, y, ref)}
                    tuned = None
                row = {"method": label, "fraction": frac, "rep": rep, **res}
                if rep < ft_reps and (ft_fracs is None or frac in ft_fracs):
                    with ctx.stage("finetune"):
                        tuned = tuned if (tuned is not None and deterministic) else finetuned(label, frac, rep, small)
                    row.update(tuned)
                rows.append(row)
    metrics: dict[str, float] = {"parent_test_acc": base_acc}
    for label in [*baselines, *sels]:
        for frac in fractions:
            mine = [r for r in rows if r["method"] == label and r["fraction"] == frac]
            metrics[f"err_{label}_f{frac:g}"] = sum(r["err"] for r in mine) / len(mine)
            tuned_rows = [r["test_acc_ft"] for r in mine if "test_acc_ft" in r]
            if tuned_rows:
                metrics[f"acc_ft_{label}_f{frac:g}"] = sum(tuned_rows) / len(tuned_rows)
    return {
        "method": "+".join([*baselines, *sels]),
        "model": getattr(parent, "name", cfg.model.name),
        "dataset": dm.name,
        "metrics": metrics,
        "params_before": total,
        "table": rows,
        "extra": {"parent": parent_extra(pinfo), "s_points": n_s, "t_points": n_t, "betas": betas,
                  "readings": ["no_finetune", *(["finetuned"] if ft_on else [])],
                  "finetune_reps": ft_reps},
    }
