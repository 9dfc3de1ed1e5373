"""Artefact manifests (``experiments/*.yaml``): which runs make a paper artefact and the paper's values.

Schema (see docs/CONTRIBUTING_TASKS.md): ``id``, ``paper``, ``title``, ``experiment``, ``command``,
``notes``, ``tables`` (``source: runs`` with ``rows``/``quoted``, or ``source: records`` with
``index``/``columns``/``metrics``) and ``figures`` (``x``, ``y``, ``hue``, ``logy``, or a custom
``builder: module.fn``), and ``reproduced_if`` (the status checks, see :mod:`coresetlab.report.status`;
checked here: every table, row, figure and metric they name must exist).
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
        m.setdefault("reproduced_if", [])
        for i, chk in enumerate(m["reproduced_if"]):
            problem = check_problem(m, chk)
            if problem:
                raise ValueError(f"manifest {f}: reproduced_if[{i}]: {problem}")
        m["_file"] = str(f)
        out.append(m)
    return sorted(out, key=lambda m: m["id"])


def check_problem(m: dict[str, Any], chk: Any) -> str | None:
    """What is wrong with one ``reproduced_if`` entry of manifest ``m`` (None when it is well-formed)."""
    if not isinstance(chk, dict) or ("table" in chk) == ("figure" in chk):
        return "give exactly one of 'table' or 'figure'"
    if "metric" not in chk:
        return "missing 'metric'"
    if "table" in chk:
        tables = {t["name"]: t for t in m["tables"] if t.get("source", "runs") == "runs"}
        if chk["table"] not in tables:
            return f"no 'source: runs' table named {chk['table']!r} (have {sorted(tables)})"
        rows = {r["label"]: r for r in tables[chk["table"]].get("rows", [])}
        if chk.get("row") not in rows:
            return f"table {chk['table']!r} has no row {chk.get('row')!r} (rows: {sorted(rows)})"
        mspec = (rows[chk["row"]].get("metrics") or {}).get(chk["metric"]) or {}
        if mspec.get("paper") is None:
            return f"row {chk['row']!r} has no paper value for metric {chk['metric']!r}"
        if not isinstance(chk.get("tol"), int | float):
            return "'tol' (a number, in the metric's units) is required"
        return None
    specs = {s["name"]: s for s in [*m["figures"], *m["tables"]]}
    spec = specs.get(chk["figure"])
    if spec is None:
        return f"no figure or table named {chk['figure']!r} (have {sorted(specs)})"
    x = chk.get("index") or spec.get("x") or spec.get("index")
    if not x or (isinstance(x, list) and len(x) != 1):
        return "missing 'index' (one x column)"
    if not isinstance(chk.get("order"), list) or len(chk["order"]) < 2:
        return "'order' must list at least two hue values, best first"
    if chk.get("better", "higher") not in ("higher", "lower"):
        return "'better' must be 'higher' or 'lower'"
    return None
