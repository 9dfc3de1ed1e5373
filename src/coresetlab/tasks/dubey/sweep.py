"""Dubey et al. supplement Figs 1–7: accuracy vs fraction of retained weights (``task.sweep``), on a
:class:`.pipeline.Pipeline`; and Figs 2 / 4 (AlexNet): filter pruning at a uniform fraction of filters per layer.

Filter-pruning variants (``task.sweep.filter_fractions`` = fraction of filters *kept* in every prunable layer,
:func:`~coresetlab.methods.dubey.pruning.channel_pairs`; the classifier keeps its outputs):

* ``ap_filter`` — AP's criterion (§3.2): the filters of largest mean spatial-max activation on the AP scoring
  data, ranked on the parent; no retraining (Fig. 2 and Fig. 4's AP curve);
* ``weight_filter`` — weight-based filter pruning, no retraining (Fig. 2): the filters of largest L1 norm
  (Li et al. 2017's criterion, :func:`coresetlab.methods.structured.baselines.l1_top_k`);
* ``l1_filter`` — Li et al. 2017 (Fig. 4): the same L1 selection, then ``prune_retrain_epochs`` of retraining.

Han et al. 2015 (Fig. 4) is the ``prune`` variant (weights, with retraining). Each row records ``value`` (the
kept fraction), ``filters_pruned`` (fraction of the prunable layers' filters removed) and ``retained_fraction``
(parameters / parent parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coresetlab.methods.dubey import uniform_compress
from coresetlab.methods.dubey.layers import channel_pairs, get_module, n_outputs
from coresetlab.methods.dubey.method import parse_variant
from coresetlab.methods.dubey.pruning import activation_ranking, n_keep, prune_filters
from coresetlab.methods.structured.baselines import l1_top_k
from coresetlab.models import count_params

SWEEP_VARIANTS = ("k", "s", "a", "ap_k", "ap_s", "ap_a", "svd", "prune", "ap_filter", "weight_filter", "l1_filter")
FILTER_VARIANTS = ("ap_filter", "weight_filter", "l1_filter")

def resumable_point(pipe, name: str, knob: str, value: float, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One sweep point's row, timed as stage ``sweep_<name>`` and resumable (:meth:`RunContext.resumable`,
    ``ckpt/sweep/<name>_<knob>_<value>``): a relaunch of an interrupted run does not recompute finished points
    (a Coreset-S point at a small tolerance takes ~20 CPU-minutes on LeNet-5)."""
    def timed() -> dict[str, Any]:
        with pipe.ctx.stage(f"sweep_{name}"):
            return compute()

    return pipe.ctx.resumable(f"sweep/{name}_{knob}_{value:g}", timed)[0]


def filter_sweep(pipe, name: str, fractions: list[float]) -> list[dict[str, Any]]:
    """Rows of one filter-pruning variant (see the module docstring) at each kept fraction of filters."""
    parent, rows = pipe.parent, []
    pairs = channel_pairs(parent)
    if name == "ap_filter":
        xs = pipe.data("ap_score")[0]
        with pipe.ctx.stage("sweep_ap_ranking"):
            rank = {n: activation_ranking(parent, n, xs, int(pipe.method.ap.batch_size)) for n in pairs}
    total = sum(n_outputs(get_module(parent, n)) for n in pairs)
    def point(f: float) -> dict[str, Any]:
        keep = {}
        for n in pairs:
            k = n_keep(n_outputs(get_module(parent, n)), f)
            keep[n] = (rank[n][:k].sort().values if name == "ap_filter"
                       else l1_top_k(get_module(parent, n).weight, k).indices)
        model = prune_filters(parent, keep)
        if name == "l1_filter" and int(pipe.t.sweep.prune_retrain_epochs) > 0:
            model.train()
            pipe.train(model, int(pipe.t.sweep.prune_retrain_epochs), f"sweep_l1_{f:g}")
        acc = pipe.test_acc(model.eval())
        return {"table": "sweep", "variant": name, "knob": "filters", "value": f,
                "filters_pruned": 1 - sum(len(v) for v in keep.values()) / total,
                "retained_fraction": count_params(model) / count_params(parent),
                "test_acc": acc, "test_err": 1 - acc}

    for f in pipe.ctx.progress([float(f) for f in fractions], desc=f"sweep-{name}"):
        rows.append(resumable_point(pipe, name, "filters", f, lambda f=f: point(f)))
    return rows


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
    def point(name: str, knob: str, k: float) -> dict[str, Any]:
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
        return {"table": "sweep", "variant": name, "knob": knob, "value": k,
                "retained_fraction": kept / parent_params, "test_acc": acc, "test_err": 1 - acc}

    for name in sw.variants:
        if name in FILTER_VARIANTS:
            rows += filter_sweep(pipe, name, list(sw.get("filter_fractions") or []))
            continue
        knobs = sw.fractions if name == "prune" or sw.mode == "uniform" else sw.tolerances
        knob = "fraction" if name == "prune" or sw.mode == "uniform" else "tol"
        for k in pipe.ctx.progress([float(k) for k in knobs or []], desc=f"sweep-{name}"):
            rows.append(resumable_point(pipe, name, knob, k, lambda name=name, knob=knob, k=k: point(name, knob, k)))
    return rows
