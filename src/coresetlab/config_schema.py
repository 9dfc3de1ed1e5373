"""Typed schemas for the config's common keys, checked before anything runs.

Hydra's struct mode already rejects unknown top-level keys (``foo=1`` -> "Key 'foo' is not in
struct"); these schemas catch wrong types (``seed=abc``, ``dataset.batch_size=big``) and unknown
profile names with a clear :class:`~coresetlab.errors.ConfigError`. Only keys present in a section are
checked, so experiments may add their own. :func:`validate_config` then checks the *values*
(:mod:`coresetlab.preflight`: enumerations, ranges, cheap instantiation of methods, models, optimizers).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from coresetlab.errors import ConfigError
from coresetlab.resolvers import PROFILES


@dataclass
class TopSchema:
    experiment: str = "adhoc"
    artefact: Optional[str] = None
    seed: int = 0
    torch_threads: Optional[int] = None
    force: bool = False
    optimized_metric: Any = None  # a metric name, or a list of names for multi-objective sweeps


@dataclass
class DatasetSchema:
    name: str = ""
    val_size: int = 0
    batch_size: int = 64
    eval_batch_size: int = 1000
    train_subset: Optional[int] = None
    val_subset: Optional[int] = None
    test_subset: Optional[int] = None
    seed: int = 0
    augment: bool = False


@dataclass
class OptimizerSchema:
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0


@dataclass
class TrainerSchema:
    accelerator: str = "cpu"
    devices: Any = 1
    deterministic: Any = False  # bool or 'warn'
    enable_progress_bar: bool = True
    log_every_n_steps: int = 50
    channels_last: bool = False  # ours (coresetlab.lit.training.SPEED_KEYS), not Trainer arguments
    batches_per_step: int = 1


SECTIONS: dict[str | None, type] = {
    None: TopSchema,
    "dataset": DatasetSchema,
    "optimizer": OptimizerSchema,
    "trainer": TrainerSchema,
}


def _check(section: str | None, node: Any, schema: type) -> None:
    if not isinstance(node, DictConfig):
        return
    names = {f.name for f in fields(schema)}
    present = {k: node[k] for k in node.keys() if k in names}
    try:
        OmegaConf.merge(OmegaConf.structured(schema), present)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        where = f"{section}.{key}" if section else key
        msg = str(e).splitlines()[0]
        raise ConfigError(f"wrong type for '{where}' (in {section or 'top level'}): {msg}") from None


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on wrong types, unknown profiles, a missing task or a wrong value
    (:func:`coresetlab.preflight.check_values`); nothing is loaded or trained."""
    try:
        profile = cfg.profile.name
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid configuration: {str(e).splitlines()[0]}") from None
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}")
    try:
        for section, schema in SECTIONS.items():
            _check(section, cfg if section is None else cfg.get(section), schema)
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid configuration: {str(e).splitlines()[0]}") from None
    task = cfg.get("task")
    if not task or "_target_" not in task:
        raise ConfigError(
            "no task to run: choose an experiment, e.g. `python run.py +experiment=lenet_autocl` "
            "(the list is in conf/experiment/)"
        )
    from coresetlab.preflight import check_values

    check_values(cfg)
