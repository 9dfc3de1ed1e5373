"""Coreset-based compression (Dubey, Chatterjee, Ahuja, ECCV 2018): Table 2, Table 5 / supp. Table 4, supp.
Fig. 7 and CPU inference time, on LeNet-5 / MNIST (and any conv/linear network the model group builds).

Pipeline per variant (:mod:`coresetlab.methods.dubey.method`): parent from the parent cache -> [AP, §3.2]
-> [Coreset-K/S/A or SVD with rank search, §3.3–3.6] -> [Deep Compression, §4] -> written to disk with
:func:`~coresetlab.methods.dubey.serialize.save_model` and decoded back with ``load_model``; the test
accuracy reported for a variant is that of the *decoded* model, its size the file's size.

Definitions (also in the report manifests):

* top-1 error = 1 − test accuracy (the paper's "Top-1" column of Table 2 reads as an error in %);
* storage compression factor = bytes of the parent's file / bytes of the compressed file, both in the
  same container (parent: raw float32 tensors); ``param_factor`` = parent parameters / parameters;
* per-layer retained fraction (Table 5) = parameters of the compressed layer (coreset filters +
  decompression matrix, after AP) / parameters of the parent's layer;
* inference time = median wall time of one forward pass over a batch on the CPU (``torch_threads``).

Nothing is fine-tuned after AP or the coreset stage (the paper's method needs no retraining); only
Deep Compression retrains (pruning) and fine-tunes centroids, as Han et al. do.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from coresetlab.errors import ConfigError, CoresetlabError
from coresetlab.lit import ClassifierModule, fit_module, get_parent
from coresetlab.methods.dubey import (
    DubeyMethod,
    Variant,
    apply_ap,
    coreset_compress,
    deep_compress,
    uniform_compress,
)
from coresetlab.methods.dubey.deep_compression import apply_masks, bake, magnitude_masks
from coresetlab.methods.dubey.evaluation import accuracy
from coresetlab.methods.dubey.layers import compressible_layers, get_module, n_outputs, n_params
from coresetlab.methods.dubey.method import parse_variant
from coresetlab.methods.dubey.pruning import activation_prune
from coresetlab.methods.dubey.serialize import load_model, save_model
from coresetlab.models import count_params
from coresetlab.records import write_json_atomic

log = logging.getLogger("coresetlab")

SWEEP_VARIANTS = ("k", "s", "a", "ap_k", "ap_s", "ap_a", "svd", "prune")


def _subset(n: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A seeded random subset of ``range(n)`` of ``max(1, round(fraction · n))`` indices."""
    k = max(1, int(round(fraction * n)))
    return torch.randperm(n, generator=gen)[:k].sort().values


@torch.inference_mode()
def time_per_batch(model: nn.Module, x: torch.Tensor, reps: int, warmup: int = 3) -> float:
    """Median wall time (ms) of ``model(x)`` over ``reps`` runs after ``warmup`` runs (eval mode)."""
    model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return 1000 * float(torch.tensor(times).median())


def _layer_rows(variant: str, parent: nn.Module, before: nn.Module, after: nn.Module,
                outcomes: dict[str, Any], dc_model: nn.Module | None) -> list[dict[str, Any]]:
    """Table 5 rows: per parent layer, parameters and filters at each stage and the retained fraction."""
    rows = []
    for name in compressible_layers(parent):
        p_parent = n_params(get_module(parent, name))
        m_after = get_module(after, name)
        o = outcomes.get(name)
        row = {
            "table": "layers", "variant": variant, "layer": name, "params_parent": p_parent,
            "params_before_coreset": n_params(get_module(before, name)), "params_after": n_params(m_after),
            "fraction": n_params(m_after) / p_parent, "filters_parent": n_outputs(get_module(parent, name)),
            "filters_before_coreset": n_outputs(get_module(before, name)), "filters_after": n_outputs(m_after),
            "rank": None if o is None else o.rank, "alpha": None if o is None else o.alpha,
        }
        if dc_model is not None:
            nz = sum(int((p != 0).sum()) for p in get_module(dc_model, name).parameters())
            row["fraction_dc_nonzero"] = nz / p_parent
        rows.append(row)
    return rows


def _check_task(t: DictConfig) -> None:
    sweep = t.get("sweep") or {}
    for f in sweep.get("fractions") or []:
        if not 0 < float(f) <= 1:
            raise ConfigError(f"task.sweep.fractions must lie in (0, 1], got {f}")
    for f in sweep.get("tolerances") or []:
        if not 0 <= float(f) < 1:
            raise ConfigError(f"task.sweep.tolerances must lie in [0, 1), got {f}")
    if sweep.get("mode", "tolerance") not in ("tolerance", "uniform"):
        raise ConfigError(f"task.sweep.mode must be 'tolerance' or 'uniform', got {sweep.get('mode')!r}")
    unknown = sorted(set(sweep.get("variants") or []) - set(SWEEP_VARIANTS))
    if unknown:
        raise ConfigError(f"task.sweep.variants: unknown {unknown}; choose from {list(SWEEP_VARIANTS)}")
    if int(t.runtime.batch_size) < 1 or int(t.runtime.reps) < 1:
        raise ConfigError("task.runtime.batch_size and task.runtime.reps must be >= 1")


class _Pipeline:
    """State shared by the variants of one run: data, parent, AP result, trainer glue."""

    def __init__(self, cfg: DictConfig, ctx, method: DubeyMethod) -> None:
        self.cfg, self.ctx, self.method, self.t = cfg, ctx, method, cfg.task
        with ctx.stage("data"):
            self.dm = instantiate(cfg.dataset)
            self.dm.setup()
        with ctx.stage("parent"):
            self.parent, self.pinfo = get_parent(ctx, self.dm, cfg.model, self.t.parent)
        self.parent.eval()
        tr, va, te = self.dm.dataset("train_eval"), self.dm.dataset("val"), self.dm.dataset("test")
        self.x_tr, self.y_tr, self.x_te, self.y_te = tr.x, tr.y, te.x, te.y
        self.x_va, self.y_va = va.x, va.y
        gen = torch.Generator().manual_seed(ctx.seed)
        n = len(self.y_tr)
        ap, cs = method.ap, method.search
        self.idx = {
            "ap_eval": _subset(n, ap.eval_fraction, gen), "ap_score": _subset(n, ap.score_fraction, gen),
            "search": _subset(n, cs.sample_fraction, gen), "importance": _subset(n, cs.importance_fraction, gen),
        }
        self.base_config = OmegaConf.to_container(cfg.model, resolve=True)
        self.models_dir = ctx.out_dir / "models"
        self._ap: tuple[nn.Module, dict[str, Any]] | None = None

    # -- helpers ------------------------------------------------------------------------------------------
    def data(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.idx[which]
        return self.x_tr[i], self.y_tr[i]

    def test_acc(self, model: nn.Module) -> float:
        return accuracy(model, self.x_te, self.y_te, int(self.method.search.batch_size))

    def val_acc(self, model: nn.Module) -> float:
        """Validation accuracy: what searches (Optuna) may optimise; test accuracy is only reported."""
        return accuracy(model, self.x_va, self.y_va, int(self.method.search.batch_size))

    def train(self, model: nn.Module, epochs: int, phase: str) -> None:
        rt = self.t.retrain
        module = ClassifierModule(model, instantiate(rt.optimizer))
        fit_module(self.ctx, module, self.dm.loader("train", int(rt.batch_size)), self.dm.loader("val"),
                   phase=phase, epochs=int(epochs), monitor="val_acc", mode="max")
        model.eval()

    def progress(self, desc: str):
        return lambda it: self.ctx.progress(it, desc=desc)

    # -- AP (cached by parent + settings + data subset) ---------------------------------------------------
    def ap_model(self) -> tuple[nn.Module, dict[str, Any]]:
        if self._ap is not None:
            return self._ap
        ap = self.method.ap
        subsets = hashlib.sha256(self.idx["ap_eval"].numpy().tobytes() + self.idx["ap_score"].numpy().tobytes())
        ident = {"parent": self.pinfo["key"], "ap": vars(ap), "n_train": len(self.y_tr),
                 "subsets": subsets.hexdigest()}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        cache = self.ctx.cache_dir / "dubey_ap" / f"{key}.json"
        with self.ctx.stage("ap"):
            if cache.exists():
                summary = json.loads(cache.read_text())
                model = apply_ap(self.parent, summary["kept"])
                summary["cached"] = True
                log.info("AP: reused %s", cache)
            else:
                x, y = self.data("ap_eval")
                xs, _ = self.data("ap_score")
                model, res = activation_prune(self.parent, x, y, ap.tol, ap.order, score_x=xs,
                                              batch_size=int(ap.batch_size), progress=self.progress("AP"))
                summary = {**res.summary(), "kept": res.kept, "cached": False}
                write_json_atomic(cache, {k: v for k, v in summary.items() if k != "cached"})
        self._ap = (model.eval(), summary)
        return self._ap

    def coreset(self, base: nn.Module, v: Variant, tol: float):
        """The coreset stage of ``v`` on ``base`` with rank-search tolerance ``tol`` (§3.6)."""
        m = self.method
        xs, ys = self.data("search")
        return coreset_compress(
            base, m.coreset_config(v.kind, self.ctx.seed), xs, ys, tol,
            importance_x=self.data("importance")[0] if v.kind == "a" else None, order=m.search.order,
            batch_size=int(m.search.batch_size), progress=self.progress(f"coreset-{v.name}"),
            search=m.search.rank_search, budget=m.search.budget,
        )

    # -- one variant --------------------------------------------------------------------------------------
    def run_variant(self, v: Variant) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, Any]]:
        m, base = self.method, self.parent
        extra: dict[str, Any] = {}
        if v.ap:
            base, extra["ap"] = self.ap_model()
        model, outcomes = base, {}
        if v.kind:
            with self.ctx.stage(f"coreset_{v.name}"):
                model, outs, info = self.coreset(base, v, m.search.tol)
            outcomes = {o.name: o for o in outs}
            extra["coreset"] = info
        model.eval()
        pre = {"test_acc": self.test_acc(model), "params": count_params(model)}
        dc_model, quantized = None, None
        if v.deep_compression:
            with self.ctx.stage(f"dc_{v.name}"):
                dc_model, quantized = deep_compress(model, m.dc_config(v.name),
                                                    lambda mod, ep, ph: self.train(mod, ep, f"{v.name}_{ph}"))
        with self.ctx.stage("serialize"):
            path = self.models_dir / f"{v.name}.dcnn"
            size = save_model(dc_model if dc_model is not None else model, path, self.base_config, quantized,
                              m.dc_config(v.name).gap_bits, extra={"variant": v.name})
            loaded, _ = load_model(path)
        with self.ctx.stage("runtime"):
            ms = time_per_batch(model, self.x_te[: int(self.t.runtime.batch_size)], int(self.t.runtime.reps))
        acc, val = self.test_acc(loaded), self.val_acc(loaded)
        metrics = {
            "test_acc": acc, "test_err": 1 - acc, "val_acc": val, "val_err": 1 - val,
            "params": count_params(model),
            "param_factor": count_params(self.parent) / count_params(model), "bytes": size.file_bytes,
            "header_bytes": size.header_bytes, "ms_per_batch": ms,
            "coreset_test_acc": pre["test_acc"], "coreset_test_err": 1 - pre["test_acc"],
        }
        if dc_model is not None:
            nz = sum(int((p != 0).sum()) for p in dc_model.parameters())
            metrics.update({"nonzero_params": nz, "dc_acc_drop": pre["test_acc"] - acc})
        rows = _layer_rows(v.name, self.parent, base, model, outcomes, dc_model)
        extra["file"] = {"path": str(path), "bytes": size.file_bytes, "header_bytes": size.header_bytes,
                         "tensors": size.parts}
        return metrics, rows, extra

    # -- supplement Fig. 7 --------------------------------------------------------------------------------
    def sweep(self) -> list[dict[str, Any]]:
        """Accuracy vs retained weights. ``mode=tolerance``: each coreset variant's rank search (§3.6) at
        every tolerance in ``tolerances`` (AP fixed at its own tolerance); ``mode=uniform``: every layer at
        the rank keeping ``fraction`` of it. The pruning baseline keeps each fraction in ``fractions``."""
        sw = self.t.sweep
        if not sw.variants:
            return []
        rows = []
        parent_params = count_params(self.parent)
        xi = self.data("importance")[0]
        for name in sw.variants:
            knobs = sw.fractions if name == "prune" or sw.mode == "uniform" else sw.tolerances
            for k in self.ctx.progress([float(k) for k in knobs or []], desc=f"sweep-{name}"):
                with self.ctx.stage(f"sweep_{name}"):
                    if name == "prune":  # Han et al. 2015: magnitude pruning of every layer + retraining
                        model = self._pruned(k, int(sw.prune_retrain_epochs))
                        kept = sum(int((p != 0).sum()) for p in model.parameters())
                    else:
                        v = parse_variant(name, set())
                        base = self.ap_model()[0] if v.ap else self.parent
                        if sw.mode == "uniform":
                            model = uniform_compress(base, self.method.coreset_config(v.kind, self.ctx.seed), k,
                                                     importance_x=xi if v.kind == "a" else None)
                        else:
                            model = self.coreset(base, v, k)[0]
                        kept = count_params(model)
                    acc = self.test_acc(model)
                knob = "fraction" if name == "prune" or sw.mode == "uniform" else "tol"
                rows.append({"table": "sweep", "variant": name, "knob": knob, "value": k,
                             "retained_fraction": kept / parent_params, "test_acc": acc, "test_err": 1 - acc})
        return rows

    def _pruned(self, keep: float, epochs: int) -> nn.Module:
        model = copy.deepcopy(self.parent)
        apply_masks(model, magnitude_masks(model, 1 - keep))
        if epochs > 0:
            self.train(model, epochs, f"sweep_prune_{keep:g}")
        bake(model)
        return model.eval()


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


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    _check_task(t)
    method = _build_method(cfg)
    pipe = _Pipeline(cfg, ctx, method)
    parent = pipe.parent
    with ctx.stage("serialize"):
        psize = save_model(parent, pipe.models_dir / "parent.dcnn", pipe.base_config)
    with ctx.stage("runtime"):
        parent_ms = time_per_batch(parent, pipe.x_te[: int(t.runtime.batch_size)], int(t.runtime.reps))
    parent_acc, parent_val = pipe.test_acc(parent), pipe.val_acc(parent)
    metrics: dict[str, float] = {
        "parent_test_acc": parent_acc, "parent_test_err": 1 - parent_acc, "parent_val_acc": parent_val,
        "parent_params": count_params(parent),
        "parent_bytes": psize.file_bytes, "parent_float32_bytes": 4 * count_params(parent),
        "parent_ms_per_batch": parent_ms,
    }
    table: list[dict[str, Any]] = [{"table": "variants", "variant": "parent", "label": "Baseline (parent)",
                                    "test_acc": parent_acc, "test_err": 1 - parent_acc,
                                    "params": count_params(parent), "bytes": psize.file_bytes, "factor": 1.0,
                                    "param_factor": 1.0, "ms_per_batch": parent_ms, "speedup": 1.0}]
    extra: dict[str, Any] = {"parent": {k: pipe.pinfo.get(k) for k in ("key", "dir", "cached", "test_acc")},
                             "variants": {}}
    for v in method.variants:
        log.info("variant %s (%s)", v.name, v.label)
        vm, rows, vextra = pipe.run_variant(v)
        vm["factor"] = psize.file_bytes / vm["bytes"]
        vm["speedup"] = parent_ms / vm["ms_per_batch"]
        metrics.update({f"{v.name}_{k}": val for k, val in vm.items()})
        table.append({"table": "variants", "variant": v.name, "label": v.label,
                      **{k: vm[k] for k in ("test_acc", "test_err", "coreset_test_acc", "params", "param_factor",
                                            "bytes", "factor", "ms_per_batch", "speedup")}})
        table += rows
        extra["variants"][v.name] = vextra
        log.info("%s: test err %.4f, %d bytes (%.1fx), %d params (%.1fx), %.2f ms/batch", v.label, vm["test_err"],
                 vm["bytes"], vm["factor"], vm["params"], vm["param_factor"], vm["ms_per_batch"])
    table += pipe.sweep()
    if method.variants:
        first = method.variants[0].name
        metrics.update({"test_acc": metrics[f"{first}_test_acc"], "test_err": metrics[f"{first}_test_err"],
                        "val_acc": metrics[f"{first}_val_acc"], "val_err": metrics[f"{first}_val_err"],
                        "compression_factor": metrics[f"{first}_factor"]})
    if pipe._ap is not None:
        extra["ap"] = {k: v for k, v in pipe._ap[1].items() if k != "kept"}
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
