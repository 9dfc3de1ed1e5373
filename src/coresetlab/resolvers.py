"""OmegaConf resolvers used by the configs. Imported (and registered) before Hydra composes.

``${by_profile:{paper:400,fast:5,smoke:1}}`` picks the value for the active ``profile.name``;
a command-line override of the key itself (``task.finetune.epochs=10``) still wins, as usual in Hydra.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from coresetlab import paths

PROFILES = ("paper", "fast", "smoke")


def _by_profile(choices: Any, *, _root_: Any) -> Any:
    name = _root_.profile.name
    if name not in choices:
        raise ValueError(f"by_profile: no value for profile '{name}' in {dict(choices)}")
    return choices[name]


def register() -> None:
    """Register the resolvers once (idempotent)."""
    table = {
        "by_profile": _by_profile,
        "data_root": lambda: str(paths.data_root()),
        "cache_dir": lambda: str(paths.cache_dir()),
        "output_root": lambda: str(paths.output_root()),
        "repo_root": lambda: str(paths.repo_root()),
        "mul": lambda a, b: a * b,
    }
    for name, fn in table.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
