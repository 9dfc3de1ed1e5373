"""Deep Compression operating points of one Dubey variant, and the one chosen on validation data.

For each pruning schedule of the variant (``coreset_method.dc_curve``; e.g. ``flat`` = one rate per layer
kind, ``han`` = Han et al. 2015's per-layer LeNet-5 rates) the points ``keep_scale`` × kept fraction are
visited as one iterative pruning chain (:func:`~coresetlab.methods.dubey.deep_compression.deep_compress_path`).
Every point is written to disk and decoded back; its record row (``table: dc_curve``) holds the validation
and test error of the decoded model, its file size and compression factor (parent file bytes / file bytes).
The variant's reported point is chosen by :func:`~coresetlab.methods.dubey.deep_compression.select_point`
on the validation error only; test error is reported, never used.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from coresetlab.methods.dubey import Variant
from coresetlab.methods.dubey.deep_compression import deep_compress_path, select_point

log = logging.getLogger("coresetlab")


def run_dc_curve(pipe, v: Variant, model: nn.Module, pre_dc_val_err: float
                 ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """All operating points of variant ``v`` on its (AP +) coreset ``model``; returns ``(chosen, rows, extra)``.

    ``chosen`` holds the selected point's ``model`` (baked), ``path``/``size`` of its file, the decoded
    model ``loaded`` and its accuracies. ``pipe`` is the run's :class:`.pipeline.Pipeline`.
    """
    method, curve = pipe.method, pipe.method.curve
    ref = pre_dc_val_err if curve.select_ref == "pre_dc" else 1 - pipe.parent_val_acc
    bound = ref + float(curve.select_tol)
    on_curve = v.name in curve.variants
    parent_bytes = pipe.parent_bytes
    points: list[dict[str, Any]] = []
    for schedule, dc_cfg, scales in method.dc_points(v.name):
        chain = deep_compress_path(
            model, dc_cfg, scales, lambda mod, ep, ph, s=schedule: pipe.train(mod, ep, f"{v.name}_{s}_{ph}"),
            retrain_epochs=curve.retrain_epochs if on_curve else None,
            finetune_epochs=curve.finetune_epochs if on_curve else None,
            finetune=lambda mod, ep, ph, s=schedule: pipe.finetune_centroids(mod, ep, f"{v.name}_{s}_{ph}"),
        )
        for i, (scale, dc_model, quantized) in enumerate(chain):
            name = f"{v.name}_{schedule}_k{scale:g}"
            path, size, loaded = pipe.save(dc_model, name, quantized, dc_cfg.gap_bits, variant=v.name)
            val, test = pipe.val_acc(loaded), pipe.test_acc(loaded)
            nz = sum(int((p != 0).sum()) for p in dc_model.parameters())
            p = {"schedule": schedule, "keep_scale": scale, "step": i, "val_acc": val, "test_acc": test,
                 "val_err": 1 - val, "test_err": 1 - test, "bytes": size.file_bytes,
                 "factor": parent_bytes / size.file_bytes, "nonzero_params": nz,
                 "nonzero_fraction": nz / pipe.parent_params, "passed": 1 - val <= bound,
                 "model": dc_model, "path": path, "size": size, "loaded": loaded}
            points.append(p)
            log.info("%s DC %s keep x%g: val err %.4f (bound %.4f), test err %.4f, %.1fx", v.name, schedule, scale,
                     p["val_err"], bound, p["test_err"], p["factor"])
            if on_curve and curve.stop_after_fail and not p["passed"]:
                break  # the chain prunes further from here: later points would fail too; skip their retraining
    idx, passed = select_point([p["val_err"] for p in points], [p["factor"] for p in points], bound)
    chosen = {**points[idx], "passed": passed}
    if not passed:
        log.warning("%s: no Deep Compression point meets val err <= %.4f; reporting the lowest val err point "
                    "(%s, keep x%g)", v.name, bound, chosen["schedule"], chosen["keep_scale"])
    rows = [{"table": "dc_curve", "variant": v.name, "curve": f"{v.name} {p['schedule']}",
             **{k: p[k] for k in ("schedule", "keep_scale", "step", "val_acc", "test_acc", "val_err", "test_err",
                                  "bytes", "factor", "nonzero_params", "nonzero_fraction")},
             "passed": bool(p["passed"]), "selected": i == idx} for i, p in enumerate(points)]
    extra = {"select_ref": curve.select_ref, "select_tol": float(curve.select_tol), "bound_val_err": bound,
             "chosen": {"schedule": chosen["schedule"], "keep_scale": chosen["keep_scale"], "passed": passed},
             "points": len(points)}
    return chosen, rows, extra
