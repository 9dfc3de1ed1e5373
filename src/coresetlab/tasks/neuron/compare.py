"""Figure 3 (Mussay et al., ICLR 2020): network-output error vs fraction of parameters kept, no fine-tuning.

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
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron.corenet import VARIANTS, CoreNet, corenet_plan
from coresetlab.methods.neuron.sparsify import ENTRY_METHODS, compress_linear_layers, layer_fractions
from coresetlab.methods.shared.mlp_surgery import compress_mlp, hidden_widths_for_compression
from coresetlab.models import count_params
from coresetlab.tasks.neuron.common import (
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
    xv, _ = flat(dm, "val")
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
        small, _ = compress_mlp(parent, hidden, sels[label], t.order, generator=g, betas=betas)
        return small, count_params(small)

    rows: list[dict[str, Any]] = []
    grid = [(m, f) for m in [*baselines, *sels] for f in fractions]
    with ctx.stage("compress_evaluate"):
        for label, frac in ctx.progress(grid, desc="method x fraction"):
            deterministic = label in DETERMINISTIC or (label in sels and sels[label].method == "percentile")
            res = None
            for rep in range(reps):
                if res is None or not deterministic:
                    small, kept = compress(label, frac)
                    res = {"kept_params": kept, "kept_frac": kept / total, **output_errors(small, x, y, ref)}
                rows.append({"method": label, "fraction": frac, "rep": rep, **res})
    metrics: dict[str, float] = {"parent_test_acc": base_acc}
    for label in [*baselines, *sels]:
        for frac in fractions:
            vals = [r["err"] for r in rows if r["method"] == label and r["fraction"] == frac]
            metrics[f"err_{label}_f{frac:g}"] = sum(vals) / len(vals)
    return {
        "method": "+".join([*baselines, *sels]),
        "model": getattr(parent, "name", cfg.model.name),
        "dataset": dm.name,
        "metrics": metrics,
        "params_before": total,
        "table": rows,
        "extra": {"parent": parent_extra(pinfo), "s_points": n_s, "t_points": n_t, "betas": betas},
    }
