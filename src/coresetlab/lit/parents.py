"""The parent (baseline) cache: a trained network stored under a key derived from its recipe.

Any experiment needing the same parent -- same model config, dataset identity, training recipe and
seed -- reuses it instead of retraining. Training writes ``last.ckpt`` every epoch, so an interrupted
parent resumes. A file lock keeps parallel jobs from training the same parent twice.

Layout: ``<cache>/parents/<key>/{model.pt, meta.json, ckpt/last.ckpt, recipe.yaml}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from coresetlab.errors import TrainingDiverged
from coresetlab.paths import file_lock
from coresetlab.records import write_json_atomic

log = logging.getLogger("coresetlab")

# Dataset keys that do not change the data a parent is trained on.
_COSMETIC_DATA_KEYS = {"root", "cache_dir", "eval_batch_size", "batch_size", "download", "num_workers"}


def parent_recipe(model_cfg: DictConfig, dataset_cfg: DictConfig, train_cfg: DictConfig, seed: int) -> dict[str, Any]:
    """The identity of a parent: resolved model + dataset identity + training recipe + seed."""
    data = {k: v for k, v in OmegaConf.to_container(dataset_cfg, resolve=True).items() if k not in _COSMETIC_DATA_KEYS}
    return {
        "model": OmegaConf.to_container(model_cfg, resolve=True),
        "dataset": data,
        "train": OmegaConf.to_container(train_cfg, resolve=True),
        "seed": int(seed),
    }


def parent_key(recipe: dict[str, Any]) -> str:
    """A short stable hash of :func:`parent_recipe` (sorted-key JSON)."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    name = str(recipe["model"].get("name", "model")).replace("/", "_")
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:12]}"


def _check_finite(model: nn.Module, metrics: dict[str, Any], what: str, epoch: int) -> None:
    """Raise :class:`TrainingDiverged` (phase ``parent``) for NaN/inf weights or val/test losses."""
    bad = [n for n, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainingDiverged("parent", epoch, f"{what} has non-finite weights ({', '.join(bad[:3])})")
    for name in ("val_loss", "test_loss"):
        v = metrics.get(name)
        if v is None or not math.isfinite(float(v)):
            raise TrainingDiverged("parent", epoch, f"{what} has {name} {v}")


def get_parent(ctx, dm, model_cfg: DictConfig, train_cfg: DictConfig, dataset_cfg: DictConfig | None = None):
    """Return ``(parent_model, info)``: load it from the cache or train it (resuming if interrupted).

    ``train_cfg`` holds ``epochs``, ``batch_size``, ``optimizer`` (a ``_partial_`` optimizer config),
    optional ``scheduler`` and ``monitor``/``mode`` for model selection on validation.
    ``info`` has the key, the cache folder, ``cached`` (bool) and the parent's val/test metrics.
    """
    from coresetlab.lit.modules import ClassifierModule
    from coresetlab.lit.training import evaluate, fit_module

    dataset_cfg = dataset_cfg if dataset_cfg is not None else ctx.cfg.dataset
    recipe = parent_recipe(model_cfg, dataset_cfg, train_cfg, ctx.seed)
    key = parent_key(recipe)
    folder = ctx.cache_dir / "parents" / key
    model: nn.Module = instantiate(model_cfg)
    with file_lock(ctx.cache_dir / "parents" / f"{key}.lock"):
        if (folder / "model.pt").exists() and (folder / "meta.json").exists():
            model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
            meta = json.loads((folder / "meta.json").read_text())
            _check_finite(model, meta, f"the cached parent {folder} (delete that folder to retrain it)",
                          int((meta.get("fit") or {}).get("epochs", 0)))
            log.info("parent %s: reused from cache", key)
            return model, _flag_chance({**meta, "key": key, "dir": str(folder), "cached": True}, dm)
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(recipe), folder / "recipe.yaml")
        torch.manual_seed(ctx.seed)
        model = instantiate(model_cfg)  # fresh init from the seed
        scheduler = instantiate(train_cfg.scheduler) if train_cfg.get("scheduler") else None
        module = ClassifierModule(model, instantiate(train_cfg.optimizer), scheduler)
        fit = fit_module(
            ctx, module, dm.loader("train", int(train_cfg.batch_size)), dm.loader("val"), phase="parent",
            epochs=int(train_cfg.epochs), monitor=train_cfg.get("monitor", "val_acc"),
            mode=train_cfg.get("mode", "max"), ckpt_dir=folder / "ckpt",
        )
        val, test = evaluate(model, dm.loader("val")), evaluate(model, dm.loader("test"))
        meta = {
            "fit": fit, "val_acc": val["acc"], "val_loss": val["loss"], "test_acc": test["acc"],
            "test_loss": test["loss"], "recipe": recipe,
        }
        _check_finite(model, meta, f"parent {key}", int(fit["epochs"]))  # a diverged parent is never cached
        tmp = folder / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        tmp.replace(folder / "model.pt")
        write_json_atomic(folder / "meta.json", meta)
        (folder / "ckpt" / "last.ckpt").unlink(missing_ok=True)  # finished: the checkpoint is no longer needed
        log.info("parent %s: trained (%s epochs), test acc %.4f", key, fit["epochs"], test["acc"])
        return model, _flag_chance({**meta, "key": key, "dir": str(folder), "cached": False}, dm)


CHANCE_MARGIN = 0.02


def _flag_chance(info: dict, dm) -> dict:
    """Mark (``info["at_chance"]``) and warn about a parent whose validation accuracy is within
    :data:`CHANCE_MARGIN` of guessing (1 / classes): it did not learn, and whatever is compressed from it
    means nothing. Records carry the flag (``parent_at_chance``); smoke parents are expected to be there."""
    classes = int(getattr(dm, "num_classes", 0) or 0)
    at_chance = classes > 1 and float(info.get("val_acc", 1.0)) <= 1.0 / classes + CHANCE_MARGIN
    if at_chance:
        log.warning("parent %s is at chance level (val acc %.4f, %d classes): it did not learn; results built on it "
                    "are not meaningful (check the parent recipe's learning rate / epochs)", info.get("key"),
                    float(info["val_acc"]), classes)
    return {**info, "at_chance": bool(at_chance)}
