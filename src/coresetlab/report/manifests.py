"""Artefact manifests (``experiments/*.yaml``): which runs make a paper artefact and the paper's values.

Schema (see docs/CONTRIBUTING_TASKS.md): ``id``, ``paper``, ``title``, ``experiment``, ``command``,
``notes``, ``tables`` (``source: runs`` with ``rows``/``quoted``, or ``source: records`` with
``index``/``columns``/``metrics``) and ``figures`` (``x``, ``y``, ``hue``, ``logy``, or a custom
``builder: module.fn``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from coresetlab.paths import repo_root

REQUIRED = ("id", "paper", "title", "experiment")


def manifest_dir() -> Path:
    return repo_root() / "experiments"


def load_manifests(folder: Path | None = None) -> list[dict[str, Any]]:
    """All manifests, sorted by id; raises ``ValueError`` naming the file on a malformed one."""
    folder = folder or manifest_dir()
    out = []
    for f in sorted(folder.glob("*.yaml")):
        m = yaml.safe_load(f.read_text()) or {}
        missing = [k for k in REQUIRED if k not in m]
        if missing:
            raise ValueError(f"manifest {f}: missing keys {missing}")
        m.setdefault("tables", [])
        m.setdefault("figures", [])
        m.setdefault("notes", [])
        m["_file"] = str(f)
        out.append(m)
    return sorted(out, key=lambda m: m["id"])
