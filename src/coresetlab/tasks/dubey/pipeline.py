"""State and stages shared by the variants of one Dubey et al. (ECCV 2018) run: data, parent, AP, the coreset
stage, Deep Compression's operating points, serialisation and timing (:mod:`.compression` drives it).

Definitions (also in the report manifests):

* top-1 error = 1 − test accuracy of the model *decoded from its file*; its size is the file's size;
* per-layer retained fraction (Table 5) = parameters of the compressed layer (coreset filters + decompression
  matrix, after AP) / parameters of the parent's layer; ``fraction_dc_nonzero`` = nonzero weights after Deep
  Compression / parameters of the parent's layer; ``fraction_rank1`` = the smallest fraction a
  factorisation of the layer entering the coreset stage can keep (rank 1: ``(d + N)`` parameters);
* inference time = median wall time of one forward pass over a batch on the CPU (``torch_threads``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Subset

from coresetlab.data.common import TensorBatchDataset, make_loader
from coresetlab.errors import ConfigError
from coresetlab.lit import ClassifierModule, fit_module, get_parent
from coresetlab.methods.dubey import DubeyMethod, Variant, apply_ap, coreset_compress
from coresetlab.methods.dubey.compress import FitCache
from coresetlab.methods.dubey.deep_compression import apply_masks, bake, magnitude_masks, recalibrate_bn
from coresetlab.methods.dubey.evaluation import accuracy
from coresetlab.methods.dubey.layers import (
    Factorized,
    channel_pairs,
    compressible_layers,
    factorized_params,
    filter_bank,
    get_module,
    n_outputs,
    n_params,
    weight_matrix,
)
from coresetlab.methods.dubey.pruning import activation_prune
from coresetlab.methods.dubey.serialize import load_model, save_model
from coresetlab.models import count_params
from coresetlab.records import write_json_atomic
from coresetlab.tasks.cnn.common import with_steps_per_epoch
from coresetlab.tasks.dubey.dc_curve import run_dc_curve

log = logging.getLogger("coresetlab")


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


EVAL_PRECISIONS = frozenset({"32", "bf16"})  # task.eval_precision: the val / test accuracies of the pipeline


def identical_tensors(a: nn.Module, b: nn.Module) -> bool:
    """True when ``a`` and ``b`` have the same state-dict keys and bit-identical tensors (same outputs in eval)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def _rank1_params(layer: nn.Module) -> int:
    """Parameters of the rank-1 factorisation of a dense conv/linear layer (its own size if factorised)."""
    if not isinstance(layer, nn.Conv2d | nn.Linear):
        return n_params(layer)
    d, n = weight_matrix(layer).shape
    return min(factorized_params(d, n, 1), n_params(layer))


def layer_rows(variant: str, parent: nn.Module, before: nn.Module, after: nn.Module,
               outcomes: dict[str, Any], dc_model: nn.Module | None) -> list[dict[str, Any]]:
    """Table 5 rows: per parent layer, parameters and filters at each stage and the retained fractions."""
    rows = []
    for name in compressible_layers(parent):
        p_parent = n_params(get_module(parent, name))
        m_before, m_after = get_module(before, name), get_module(after, name)
        o = outcomes.get(name)
        row = {
            "table": "layers", "variant": variant, "layer": name, "params_parent": p_parent,
            "params_before_coreset": n_params(m_before), "params_after": n_params(m_after),
            "fraction": n_params(m_after) / p_parent, "fraction_rank1": _rank1_params(m_before) / p_parent,
            "filters_parent": n_outputs(get_module(parent, name)),
            "filters_before_coreset": n_outputs(m_before), "filters_after": n_outputs(m_after),
            "rank": None if o is None else o.rank, "alpha": None if o is None else o.alpha,
        }
        if dc_model is not None:
            nz = sum(int((p != 0).sum()) for p in get_module(dc_model, name).parameters())
            row["fraction_dc_nonzero"] = nz / p_parent
        rows.append(row)
    return rows


class Pipeline:
    """State shared by the variants of one run: data, parent, AP result, trainer glue."""

    def __init__(self, cfg: DictConfig, ctx, method: DubeyMethod) -> None:
        self.cfg, self.ctx, self.method, self.t = cfg, ctx, method, cfg.task
        self.train_fraction = float((self.t.get("retrain") or {}).get("train_fraction", 1.0))
        if not 0 < self.train_fraction <= 1:
            raise ConfigError(f"task.retrain.train_fraction must be in (0, 1], got {self.train_fraction}")
        self.eval_precision = str(self.t.get("eval_precision", "32"))
        self.fit_cache = FitCache()  # Coreset-S/-A fits shared by this run's rank searches (same results, fewer refits)
        if self.eval_precision not in EVAL_PRECISIONS:
            raise ConfigError(f"task.eval_precision must be one of {sorted(EVAL_PRECISIONS)}, got '{self.eval_precision}'")
        with ctx.stage("data"):
            self.dm = instantiate(cfg.dataset)
            self.dm.setup()
        with ctx.stage("parent"):
            # a StepwiseLR parent schedule needs its steps per epoch (CNN parent recipes, conf/parent/)
            train_cfg = with_steps_per_epoch(self.t.parent, len(self.dm.dataset("train")))
            self.parent, self.pinfo = get_parent(ctx, self.dm, cfg.model, train_cfg)
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
        self.parent_val_acc = self.val_acc(self.parent)
        self.parent_params = count_params(self.parent)
        with ctx.stage("serialize"):
            self.parent_size = save_model(self.parent, self.models_dir / "parent.dcnn", self.base_config)
        self.parent_bytes = self.parent_size.file_bytes
        self.first_conv = next((n for n in compressible_layers(self.parent)
                                if isinstance(get_module(self.parent, n), nn.Conv2d)), None)
        self.save_filters(self.parent, "parent")

    def save_filters(self, model: nn.Module, name: str) -> str | None:
        """Write the first conv layer's filters (:func:`filter_bank`) to ``filters/<layer>_<name>.npy`` in the run
        folder (supp. Figs 8–10); returns the path relative to the run folder (None without a conv layer)."""
        if self.first_conv is None:
            return None
        import numpy as np

        rel = f"filters/{self.first_conv}_{name}.npy"
        (self.ctx.out_dir / "filters").mkdir(parents=True, exist_ok=True)
        np.save(self.ctx.out_dir / rel, filter_bank(get_module(model, self.first_conv)).numpy())
        return rel

    # -- helpers ------------------------------------------------------------------------------------------
    def data(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.idx[which]
        return self.x_tr[i], self.y_tr[i]

    def _accuracy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """:func:`accuracy` at ``task.eval_precision`` ("32": fp32; "bf16": bf16 autocast, about half the CPU time)."""
        device = next(model.parameters()).device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.eval_precision == "bf16"):
            return accuracy(model, x, y, int(self.method.search.batch_size))

    def test_acc(self, model: nn.Module) -> float:
        return self._accuracy(model, self.x_te, self.y_te)

    def val_acc(self, model: nn.Module) -> float:
        """Validation accuracy: what selections and searches may optimise; test accuracy is only reported."""
        return self._accuracy(model, self.x_va, self.y_va)

    def train(self, model: nn.Module, epochs: int, phase: str, lr: float | None = None) -> None:
        """Train ``model`` in place (``task.retrain``; ``lr`` overrides the optimizer's learning rate)."""
        rt = self.t.retrain
        model.train()  # Lightning keeps a module's mode: an eval-mode copy would train with frozen BN / no dropout
        module = ClassifierModule(model, instantiate(rt.optimizer, **({"lr": float(lr)} if lr is not None else {})))
        fit_module(self.ctx, module, self.retrain_loader(), self.dm.loader("val"),
                   phase=phase, epochs=int(epochs), monitor="val_acc", mode="max")
        n_bn = int(rt.get("bn_recalibration_batches", 20))
        if n_bn > 0:  # BN networks: running statistics re-estimated on un-augmented training images (no-op without BN)
            bs = int(rt.batch_size)
            idx = torch.randperm(len(self.y_tr), generator=torch.Generator().manual_seed(self.ctx.seed))[: n_bn * bs]
            recalibrate_bn(model, (self.x_tr[idx[i:i + bs]] for i in range(0, len(idx), bs)))
        model.eval()

    def retrain_loader(self) -> DataLoader:
        """Training batches for (re)training: the whole training set, or a seeded random fraction
        ``task.retrain.train_fraction`` of it (an epoch then means one pass over that fraction)."""
        bs, fraction = int(self.t.retrain.batch_size), self.train_fraction
        if fraction == 1:
            return self.dm.loader("train", bs)
        ds = self.dm.dataset("train")
        if not isinstance(ds, TensorBatchDataset):
            raise ConfigError("task.retrain.train_fraction < 1 needs an in-memory dataset (not dataset=imagenet)")
        idx = _subset(len(self.y_tr), fraction, torch.Generator().manual_seed(self.ctx.seed + 1))
        return make_loader(Subset(ds, idx.tolist()), bs, shuffle=True, seed=self.ctx.seed)

    def finetune_centroids(self, model: nn.Module, epochs: int, phase: str) -> None:
        """Deep Compression's centroid fine-tuning: :meth:`train` at ``task.retrain.centroid_lr`` (null: the
        retraining learning rate)."""
        self.train(model, epochs, phase, lr=self.t.retrain.get("centroid_lr"))

    def progress(self, desc: str):
        return lambda it: self.ctx.progress(it, desc=desc)

    def save(self, model: nn.Module, name: str, quantized=None, gap_bits=5, variant: str | None = None):
        """Write ``model`` to ``models/<name>.dcnn``; returns ``(path, size, decoded model)``."""
        path = self.models_dir / f"{name}.dcnn"
        size = save_model(model, path, self.base_config, quantized, gap_bits, extra={"variant": variant or name})
        loaded, _ = load_model(path)
        return path, size, loaded.eval()

    # -- AP (cached by parent + settings + data subset) ---------------------------------------------------
    def ap_model(self) -> tuple[nn.Module, dict[str, Any]]:
        if self._ap is not None:
            return self._ap
        ap = self.method.ap
        subsets = hashlib.sha256(self.idx["ap_eval"].numpy().tobytes() + self.idx["ap_score"].numpy().tobytes())
        ap_ident = {k: v for k, v in vars(ap).items() if k != "min_params" or v}  # 0: the keys cached before it
        ident = {"parent": self.pinfo["key"], "ap": ap_ident, "n_train": len(self.y_tr),
                 "pairs": sorted(channel_pairs(self.parent)),
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
                                              layers=self.large_layers(None, channel_pairs(self.parent), ap.min_params),
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
            layers=self.large_layers(m.search.layers, compressible_layers(self.parent), m.search.min_params),
            fit_cache=self.fit_cache,
        )

    def large_layers(self, names: list[str] | None, every: Iterable[str], min_params: int) -> list[str] | None:
        """The layers to compress: ``names`` (``None``: ``every`` layer), keeping only those with at least
        ``min_params`` parameters in the parent when ``min_params`` > 0 (a fast-profile restriction to the
        layers that hold most parameters; ``None`` is returned unchanged when ``min_params`` is 0)."""
        if not min_params:
            return names
        return [n for n in (every if names is None else names)
                if n_params(get_module(self.parent, n)) >= int(min_params)]

    # -- one variant --------------------------------------------------------------------------------------
    def run_variant(self, v: Variant) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """AP -> coreset -> Deep Compression (its operating points, one chosen on validation) -> file."""
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
            if v.kind == "s":  # supp. Figs 8-10: conv1 before (parent) and after Coreset-S
                extra["filters"] = {"layer": self.first_conv, "parent": self.save_filters(self.parent, "parent"),
                                    "after": self.save_filters(model, v.name),
                                    "compressed": isinstance(get_module(model, self.first_conv), Factorized)}
        model.eval()
        rows: list[dict[str, Any]] = []
        dc_model, pre = None, None
        if v.deep_compression:
            pre = self.test_acc(model), self.val_acc(model)
            metrics = self._coreset_metrics(*pre)
            with self.ctx.stage(f"dc_{v.name}"):
                chosen, rows, extra["dc"] = run_dc_curve(self, v, model, 1 - pre[1])
            dc_model, path, size, loaded = chosen["model"], chosen["path"], chosen["size"], chosen["loaded"]
            nz = sum(int((p != 0).sum()) for p in dc_model.parameters())
            metrics.update({"nonzero_params": nz, "dc_acc_drop": pre[0] - chosen["test_acc"],
                            "dc_keep_scale": chosen["keep_scale"], "dc_selected_passed": float(chosen["passed"]),
                            "dc_points": len(rows)})
        else:
            with self.ctx.stage("serialize"):
                path, size, loaded = self.save(model, v.name, variant=v.name)
        with self.ctx.stage("runtime"):
            ms = time_per_batch(model, self.x_te[: int(self.t.runtime.batch_size)], int(self.t.runtime.reps))
        acc, val = self.test_acc(loaded), self.val_acc(loaded)
        if pre is None:
            # no Deep Compression: the file holds the coreset model; when its tensors are bit-identical (fp32
            # files are), the decoded model's accuracies are the coreset model's and are not computed twice
            lossless = identical_tensors(model, loaded)
            extra["file_lossless"] = lossless
            metrics = self._coreset_metrics(*((acc, val) if lossless else (self.test_acc(model), self.val_acc(model))))
        metrics.update({
            "test_acc": acc, "test_err": 1 - acc, "val_acc": val, "val_err": 1 - val,
            "params": count_params(model), "param_factor": count_params(self.parent) / count_params(model),
            "bytes": size.file_bytes, "header_bytes": size.header_bytes, "ms_per_batch": ms,
        })
        rows = layer_rows(v.name, self.parent, base, model, outcomes, dc_model) + rows
        extra["file"] = {"path": str(path), "bytes": size.file_bytes, "header_bytes": size.header_bytes,
                         "tensors": size.parts}
        return metrics, rows, extra

    @staticmethod
    def _coreset_metrics(test_acc: float, val_acc: float) -> dict[str, Any]:
        return {"coreset_test_acc": test_acc, "coreset_test_err": 1 - test_acc, "coreset_val_err": 1 - val_acc}

    def pruned(self, keep: float, epochs: int) -> nn.Module:
        """Han et al. 2015 magnitude pruning of every layer of the parent to keep ``keep``, + retraining."""
        model = copy.deepcopy(self.parent)
        apply_masks(model, magnitude_masks(model, 1 - keep))
        if epochs > 0:
            self.train(model, epochs, f"sweep_prune_{keep:g}")
        bake(model)
        return model.eval()
