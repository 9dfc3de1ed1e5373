"""Dubey et al. supplement Fig. 7: accuracy vs fraction of retained weights (``task.sweep``), on a
:class:`.pipeline.Pipeline`."""

from __future__ import annotations

from typing import Any

from coresetlab.methods.dubey import uniform_compress
from coresetlab.methods.dubey.method import parse_variant
from coresetlab.models import count_params

SWEEP_VARIANTS = ("k", "s", "a", "ap_k", "ap_s", "ap_a", "svd", "prune")


def sweep(pipe) -> list[dict[str, Any]]:
    """Accuracy vs retained weights. ``mode=tolerance``: each coreset variant's rank search (§3.6) at
    every tolerance in ``tolerances`` (AP fixed at its own tolerance); ``mode=uniform``: every layer at
    the rank keeping ``fraction`` of it. The pruning baseline keeps each fraction in ``fractions``."""
    sw = pipe.t.sweep
    if not sw.variants:
        return []
    rows = []
    parent_params = count_params(pipe.parent)
    xi = pipe.data("importance")[0]
    for name in sw.variants:
        knobs = sw.fractions if name == "prune" or sw.mode == "uniform" else sw.tolerances
        for k in pipe.ctx.progress([float(k) for k in knobs or []], desc=f"sweep-{name}"):
            with pipe.ctx.stage(f"sweep_{name}"):
                if name == "prune":  # Han et al. 2015: magnitude pruning of every layer + retraining
                    model = pipe.pruned(k, int(sw.prune_retrain_epochs))
                    kept = sum(int((p != 0).sum()) for p in model.parameters())
                else:
                    v = parse_variant(name, set())
                    base = pipe.ap_model()[0] if v.ap else pipe.parent
                    if sw.mode == "uniform":
                        model = uniform_compress(base, pipe.method.coreset_config(v.kind, pipe.ctx.seed), k,
                                                 importance_x=xi if v.kind == "a" else None)
                    else:
                        model = pipe.coreset(base, v, k)[0]
                    kept = count_params(model)
                acc = pipe.test_acc(model)
            knob = "fraction" if name == "prune" or sw.mode == "uniform" else "tol"
            rows.append({"table": "sweep", "variant": name, "knob": knob, "value": k,
                         "retained_fraction": kept / parent_params, "test_acc": acc, "test_err": 1 - acc})
    return rows
