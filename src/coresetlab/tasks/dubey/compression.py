"""Coreset-based compression (Dubey, Chatterjee, Ahuja, ECCV 2018): Table 2, Table 5 / supp. Table 4, supp.
Fig. 7 and CPU inference time, on LeNet-5 / MNIST (and any conv/linear network the model group builds).

Pipeline per variant (:mod:`coresetlab.methods.dubey.method`; stages in :mod:`.pipeline`): parent from the
parent cache -> [AP, §3.2] -> [Coreset-K/S/A or SVD with rank search, §3.3–3.6] -> [Deep Compression, §4, at
one or several operating points, :mod:`.dc_curve`] -> written to disk with
:func:`~coresetlab.methods.dubey.serialize.save_model` and decoded back with ``load_model``; the test
accuracy reported for a variant is that of the *decoded* model, its size the file's size.

* top-1 error = 1 − test accuracy (the paper's "Top-1" column of Table 2 reads as an error in %);
* storage compression factor = bytes of the parent's file / bytes of the compressed file, both in the
  same container (parent: raw float32 tensors); ``param_factor`` = parent parameters / parameters;
* Deep Compression's operating point (pruning schedule × keep scale) is chosen per variant on the
  *validation* error (``coreset_method.dc_curve``); every point is a ``dc_curve`` record row.

Nothing is fine-tuned after AP or the coreset stage (the paper's method needs no retraining); only
Deep Compression retrains (pruning) and fine-tunes centroids, as Han et al. do.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from coresetlab.errors import ConfigError, CoresetlabError
from coresetlab.methods.dubey import DubeyMethod, Variant
from coresetlab.models import count_params
from coresetlab.tasks.dubey.pipeline import Pipeline, time_per_batch
from coresetlab.tasks.dubey.sweep import FILTER_VARIANTS, SWEEP_VARIANTS, sweep

log = logging.getLogger("coresetlab")

VARIANT_COLS = ("test_acc", "test_err", "val_err", "coreset_test_acc", "params", "param_factor", "bytes", "factor",
                "ms_per_batch", "speedup")


def _check_task(t: DictConfig) -> None:
    sw = t.get("sweep") or {}
    for f in sw.get("fractions") or []:
        if not 0 < float(f) <= 1:
            raise ConfigError(f"task.sweep.fractions must lie in (0, 1], got {f}")
    for f in sw.get("tolerances") or []:
        if not 0 <= float(f) < 1:
            raise ConfigError(f"task.sweep.tolerances must lie in [0, 1), got {f}")
    if sw.get("mode", "tolerance") not in ("tolerance", "uniform"):
        raise ConfigError(f"task.sweep.mode must be 'tolerance' or 'uniform', got {sw.get('mode')!r}")
    for f in sw.get("filter_fractions") or []:
        if not 0 < float(f) <= 1:
            raise ConfigError(f"task.sweep.filter_fractions must lie in (0, 1], got {f}")
    if set(sw.get("variants") or []) & set(FILTER_VARIANTS) and not sw.get("filter_fractions"):
        raise ConfigError(f"task.sweep.variants {list(FILTER_VARIANTS)} need task.sweep.filter_fractions")
    unknown = sorted(set(sw.get("variants") or []) - set(SWEEP_VARIANTS))
    if unknown:
        raise ConfigError(f"task.sweep.variants: unknown {unknown}; choose from {list(SWEEP_VARIANTS)}")
    if int(t.runtime.batch_size) < 1 or int(t.runtime.reps) < 1:
        raise ConfigError("task.runtime.batch_size and task.runtime.reps must be >= 1")


def _build_method(cfg: DictConfig) -> DubeyMethod:
    """Instantiate ``cfg.coreset_method`` (a ``dubey*`` option); bad values surface as ConfigError."""
    from hydra.errors import InstantiationException

    target = (cfg.get("coreset_method") or {}).get("_target_", "")
    if not str(target).endswith("DubeyMethod"):
        raise ConfigError(f"experiment needs a Dubey coreset_method (dubey, dubey_ap_k, ...), got '{target or 'none'}'")
    try:
        return instantiate(cfg.coreset_method, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, CoresetlabError):
            raise e.__cause__ from None
        raise


def run_or_resume_variant(pipe: Pipeline, v: Variant, ctx) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """:meth:`Pipeline.run_variant`, resumable per variant (:meth:`RunContext.resumable`, ``ckpt/variants/<name>``):
    a relaunch of an interrupted run does not redo a finished variant (Coreset-S's rank search alone takes
    30-45 CPU-minutes on LeNet-5); the record marks it ``resumed``."""
    (vm, rows, vextra), resumed = ctx.resumable(f"variants/{v.name}", lambda: pipe.run_variant(v))
    return vm, rows, ({**vextra, "resumed": True} if resumed else vextra)


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    _check_task(t)
    method = _build_method(cfg)
    pipe = Pipeline(cfg, ctx, method)
    parent = pipe.parent
    with ctx.stage("runtime"):
        parent_ms = time_per_batch(parent, pipe.x_te[: int(t.runtime.batch_size)], int(t.runtime.reps))
    parent_acc = pipe.test_acc(parent)
    metrics: dict[str, float] = {
        "parent_test_acc": parent_acc, "parent_test_err": 1 - parent_acc, "parent_val_acc": pipe.parent_val_acc,
        "parent_params": pipe.parent_params, "parent_bytes": pipe.parent_bytes,
        "parent_float32_bytes": 4 * pipe.parent_params, "parent_ms_per_batch": parent_ms,
        "parent_at_chance": float(bool(pipe.pinfo.get("at_chance"))),
    }
    table: list[dict[str, Any]] = [{"table": "variants", "variant": "parent", "label": "Baseline (parent)",
                                    "test_acc": parent_acc, "test_err": 1 - parent_acc,
                                    "val_err": 1 - pipe.parent_val_acc, "params": pipe.parent_params,
                                    "bytes": pipe.parent_bytes, "factor": 1.0, "param_factor": 1.0,
                                    "ms_per_batch": parent_ms, "speedup": 1.0}]
    extra: dict[str, Any] = {"parent": {k: pipe.pinfo.get(k) for k in ("key", "dir", "cached", "test_acc")},
                             "eval_precision": pipe.eval_precision,
                             "variants": {}, "rank_search_order": method.search.order}
    for v in method.variants:
        log.info("variant %s (%s)", v.name, v.label)
        vm, rows, vextra = run_or_resume_variant(pipe, v, ctx)
        vm["factor"] = pipe.parent_bytes / vm["bytes"]
        vm["speedup"] = parent_ms / vm["ms_per_batch"]
        metrics.update({f"{v.name}_{k}": val for k, val in vm.items()})
        row = {"table": "variants", "variant": v.name, "label": v.label, **{k: vm[k] for k in VARIANT_COLS}}
        if "dc" in vextra:
            row.update({"dc_schedule": vextra["dc"]["chosen"]["schedule"], "dc_keep_scale": vm["dc_keep_scale"]})
        table += [row, *rows]
        extra["variants"][v.name] = vextra
        log.info("%s: test err %.4f, %d bytes (%.1fx), %d params (%.1fx), %.2f ms/batch", v.label, vm["test_err"],
                 vm["bytes"], vm["factor"], vm["params"], vm["param_factor"], vm["ms_per_batch"])
    table += sweep(pipe)
    if method.variants:
        first = method.variants[0].name
        metrics.update({"test_acc": metrics[f"{first}_test_acc"], "test_err": metrics[f"{first}_test_err"],
                        "val_acc": metrics[f"{first}_val_acc"], "val_err": metrics[f"{first}_val_err"],
                        "compression_factor": metrics[f"{first}_factor"]})
    ap_summary = pipe._ap[1] if pipe._ap is not None else next(
        (ve["ap"] for ve in extra["variants"].values() if "ap" in ve), None)  # AP variants all resumed
    if ap_summary is not None:
        extra["ap"] = {k: v for k, v in ap_summary.items() if k != "kept"}
    primary = method.variants[0].name if method.variants else None
    return {
        "method": method.name,
        "model": getattr(parent, "name", cfg.model.get("name")),
        "dataset": pipe.dm.name,
        "metrics": metrics,
        "params_before": count_params(parent),
        "params_after": int(metrics[f"{primary}_params"]) if primary else None,
        "table": table,
        "extra": extra,
    }


__all__ = ["run", "time_per_batch"]
