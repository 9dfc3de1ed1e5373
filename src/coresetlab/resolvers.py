"""OmegaConf resolvers used by the configs. Imported (and registered) before Hydra composes.

``${by_profile:{paper:400,fast:5,smoke:1}}`` picks the value for the active ``profile.name``;
a command-line override of the key itself (``task.finetune.epochs=10``) still wins, as usual in Hydra.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from coresetlab import paths

PROFILES = ("paper", "fast", "smoke")


def _by_profile(choices: Any, *, _root_: Any) -> Any:
    name = _root_.profile.name
    if name not in choices:
        raise ValueError(f"by_profile: no value for profile '{name}' in {dict(choices)}")
    return choices[name]


# Keys that do not change what a run computes: left out of its identity.
COSMETIC_TOP = frozenset({"hydra", "paths", "logger", "torch_threads", "force", "optimized_metric"})
# channels_last / batches_per_step change speed only (batches_per_step is step-for-step identical; the
# memory format, like the thread count, only changes floating-point summation order).
COSMETIC_TRAINER = frozenset({"enable_progress_bar", "enable_model_summary", "log_every_n_steps", "channels_last",
                              "batches_per_step"})


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus cosmetic keys (output paths, logger, progress bars, thread counts)."""
    out: dict[str, Any] = {}
    for key in cfg.keys():
        if key in COSMETIC_TOP:
            continue
        node = cfg[key]
        value = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        if key == "trainer" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in COSMETIC_TRAINER}
        out[str(key)] = value
    return out


def _digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_id(cfg: DictConfig) -> str:
    """8 hex digits identifying a run by :func:`run_identity` (the seed included)."""
    return _digest(run_identity(cfg))


def config_id(cfg: DictConfig) -> str:
    """8 hex digits identifying a run's recipe: :func:`run_identity` without the seed.

    Runs of one experiment that share a ``config_id`` differ only by seed and may be averaged; the
    report warns when it would pool runs of different recipes.
    """
    identity = run_identity(cfg)
    return _digest(unseeded(identity, identity.pop("seed", None)))


def unseeded(node: Any, seed: Any) -> Any:
    """``node`` with every ``*seed`` leaf equal to the run's seed (``${seed}`` once resolved) marked as such."""
    if isinstance(node, dict):
        return {k: ("${seed}" if str(k).endswith("seed") and v == seed and not isinstance(v, (dict, list))
                    else unseeded(v, seed)) for k, v in node.items()}
    if isinstance(node, list):
        return [unseeded(v, seed) for v in node]
    return node


# Command-line overrides that do not change the recipe (besides COSMETIC_TOP): which run of it, and on what hardware.
NON_RECIPE_TOP = frozenset({"seed", "profile", "experiment"})
HARDWARE_TRAINER = frozenset({"accelerator", "devices"})
HARDWARE_TRAINER_PRESETS = frozenset({"cpu", "gpu"})


def override_key(override: str) -> str:
    """The key (or config group) an override sets: ``+task.x=1`` -> ``task.x``; ``hydra/launcher=joblib`` ->
    ``hydra/launcher``; ``~task.x`` -> ``task.x``."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def is_recipe_override(override: str) -> bool:
    """Whether a command-line override changes what the run computes (its recipe).

    Not recipe: ``seed``, ``profile``, ``experiment`` (which run of which recipe), the cosmetic keys left out
    of the run identity (:data:`COSMETIC_TOP`: ``hydra.*``, ``hydra/launcher``, ``paths``, ``logger``,
    ``torch_threads``, ``force``, ``optimized_metric``; :data:`COSMETIC_TRAINER`), and the hardware:
    ``trainer.accelerator``, ``trainer.devices`` and the ``trainer=cpu|gpu`` presets. Anything else
    (``optimizer.lr=…``, ``dataset=…``, ``trainer=ddp``, ``hparams_search=…``) is.
    """
    key = override_key(override)
    top = key.split("@", 1)[0].split("/", 1)[0].split(".", 1)[0]
    if top in COSMETIC_TOP or top in NON_RECIPE_TOP:
        return False
    if top == "trainer":
        if key == "trainer":
            return override.split("=", 1)[-1].strip() not in HARDWARE_TRAINER_PRESETS
        sub = key.split(".", 1)[1] if "." in key else ""
        return sub not in COSMETIC_TRAINER | HARDWARE_TRAINER
    return True


def recipe_overrides(overrides: list[str] | None) -> list[str] | None:
    """The overrides of ``overrides`` that change the recipe (:func:`is_recipe_override`); None stays None."""
    return None if overrides is None else [o for o in overrides if is_recipe_override(o)]


def task_overrides() -> list[str] | None:
    """Hydra's command-line task overrides of the current run (None when composed without Hydra's runtime)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return [str(o) for o in HydraConfig.get().overrides.task]
    except Exception:  # composed by the compose API (tests, notebooks): the overrides are not known
        return None


def register() -> None:
    """Register the resolvers once (idempotent)."""
    table = {
        "by_profile": _by_profile,
        "data_root": lambda: str(paths.data_root()),
        "cache_dir": lambda: str(paths.cache_dir()),
        "output_root": lambda: str(paths.output_root()),
        "repo_root": lambda: str(paths.repo_root()),
        "mul": lambda a, b: a * b,
        "run_id": lambda *, _root_: run_id(_root_),
        # torchvision nets (conf/model/tv_*.yaml): the 32×32 proxy follows the dataset; imagenet = the original
        "proxy_of": lambda dataset: None if str(dataset) == "imagenet" else str(dataset),
        "classes_of": lambda dataset: 1000 if str(dataset) == "imagenet" else 10,
        "len_of": lambda items: len(items),  # e.g. num_classes of a class subset (dataset.classes)
    }
    for name, fn in table.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
