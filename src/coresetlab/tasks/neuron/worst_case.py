"""Is the neuron coreset really data-independent? Worst-case vs average error (beyond the paper).

The guarantee of Mussay et al. (ICLR 2020, Theorem 7 / Algorithm 2) is for *every* input of the ball
``B_β``, adversarial ones included. For the trained first layer of LeNet-300-100 (300 neurons; its
outgoing weights are the 100 neurons of the second layer) and each selection in ``task.methods``
(coreset, uniform, percentile) at several sizes we report the error
``e(x) = mean_j |z_j(x) − z̃_j(x)|`` of the second layer's pre-activations (or of one neuron ``j``
with ``next_neuron``):

* ``err_avg`` / ``err_max_test``: mean / max over the MNIST test images;
* ``err_worst``: projected gradient ascent over ``‖x‖ ≤ β`` (``β`` = the largest test-image norm;
  :func:`coresetlab.methods.neuron.worst_case.worst_case_search`) from random sphere points and the test
  images with the largest error (a lower bound on the true worst case);
* ``worst_over_avg``: their ratio, and ``err_worst_unit`` = worst error divided by
  ``Σ_p max_j |w_j(p)| φ(β‖p‖)`` (the scale of the theorem's additive bound).

The adversarial inputs are points of the ball, not necessarily images (the theorem's setting).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from coresetlab.methods.neuron.coreset import estimate, layer_outputs, sensitivity
from coresetlab.methods.neuron.worst_case import worst_case_search
from coresetlab.methods.shared.mlp_surgery import layer_points
from coresetlab.tasks.neuron.common import flat, generator, parent_extra, parent_mlp, selectors, setup_data

log = logging.getLogger("coresetlab")


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    dm = setup_data(cfg, ctx)
    parent, pinfo = parent_mlp(cfg, ctx, dm)
    sels = selectors(cfg)
    x, _ = flat(dm, "test", t.get("test_limit"))
    x = x.to(torch.float64)
    li = int(t.layer)
    if li > 0:  # inputs of a deeper layer: propagate the images through the parent
        with torch.no_grad():
            h = x.to(torch.float32)
            for layer in parent.layers[:li]:
                h = parent.act(layer(h))
            x = h.to(torch.float64)
    P = layer_points(parent.layers[li]).to(torch.float64)
    W = parent.layers[li + 1].weight.detach().to(torch.float64)
    if t.get("next_neuron") is not None:
        W = W[int(t.next_neuron)]
    act = getattr(parent, "activation", "relu")
    beta_x = float(x.norm(dim=1).max())            # the ball searched: ‖x‖ <= beta_x
    beta = (beta_x ** 2 + 1.0) ** 0.5               # bound on ‖[x; 1]‖ used by the sensitivities
    unit = float(sensitivity(P, W, act, beta, normalize=False).sum())
    g = generator(ctx)

    def error_fn(sample):
        def fn(inp: torch.Tensor) -> torch.Tensor:
            acts = layer_outputs(P, inp, act)
            diff = (estimate(acts, W) - estimate(acts, W, sample)).abs()
            return diff.mean(1) if diff.dim() == 2 else diff
        return fn

    rows: list[dict[str, Any]] = []
    grid = [(label, int(size)) for label in sels for size in t.sizes]
    with ctx.stage("search"):
        for label, size in ctx.progress(grid, desc="method x size"):
            sel = sels[label]
            reps = 1 if sel.method == "percentile" else int(t.reps)
            for rep in range(reps):
                sample = sel(P, W, size, act, g, beta)
                fn = error_fn(sample)
                with torch.no_grad():
                    e = fn(x)
                top = x[torch.topk(e, k=min(int(t.init_top), len(e))).indices]
                res = worst_case_search(fn, x.shape[1], beta_x, restarts=int(t.restarts), steps=int(t.steps),
                                        lr=float(t.lr), init=top, generator=g)
                avg = float(e.mean())
                rows.append({
                    "method": label, "size": size, "rep": rep, "coreset_size": sample.size,
                    "err_avg": avg, "err_max_test": float(e.max()), "err_worst": res.value,
                    "worst_over_avg": res.value / max(avg, 1e-300), "err_worst_unit": res.value / unit,
                    "worst_norm": float(res.x.norm()),
                })
    metrics: dict[str, float] = {}
    for label in sels:
        mine = [r for r in rows if r["method"] == label]
        metrics[f"worst_over_avg_{label}"] = sum(r["worst_over_avg"] for r in mine) / len(mine)
        metrics[f"err_worst_{label}"] = sum(r["err_worst"] for r in mine) / len(mine)
    return {
        "method": "+".join(sels),
        "model": getattr(parent, "name", cfg.model.name),
        "dataset": dm.name,
        "metrics": metrics,
        "table": rows,
        "extra": {"parent": parent_extra(pinfo), "beta_x": beta_x, "layer": li,
                  "next_neuron": t.get("next_neuron"), "bound_unit": unit},
    }
