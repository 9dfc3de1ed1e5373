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
COSMETIC_TRAINER = frozenset({"enable_progress_bar", "enable_model_summary", "log_every_n_steps"})


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


def run_id(cfg: DictConfig) -> str:
    """8 hex digits identifying a run by :func:`run_identity` (the seed included)."""
    blob = json.dumps(run_identity(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


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
    }
    for name, fn in table.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
