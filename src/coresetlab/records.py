"""Run records: ``results.json`` (one flat, versioned record per run), written atomically.

Schema (``schema: 1``): experiment, artefact, method, model, dataset, profile, seed, status
(``ok``/``failed``), error, metrics {name: float}, params_before, params_after, compression (fraction of
parameters removed), wall_time_s, stage_times_s, started_at, finished_at, git_sha, versions, run_dir,
run_id, config_id, overrides (Hydra's command-line task overrides; null when not run through Hydra),
recipe_overrides (those of them that change the recipe, see :func:`coresetlab.resolvers.is_recipe_override`),
and optionally ``table`` -- a list of flat rows (long format) for runs that sweep a grid internally
(e.g. error vs coreset size), read by the aggregator as records joined with the run's columns.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from coresetlab.paths import repo_root

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(), capture_output=True,
            text=True, timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import hydra
    import pytorch_lightning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pytorch_lightning.__version__,
        "hydra": hydra.__version__,
        "coresetlab": __import__("coresetlab").__version__,
    }


def _jsonable(x: Any) -> Any:
    """Convert tensors / numpy scalars / non-finite floats into JSON-safe values (NaN -> null)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def _scalar(x: Any) -> Any:
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        return x.item()
    return x


def nonfinite_fields(out: dict[str, Any], limit: int = 5) -> list[str]:
    """Fields of a task's record that are NaN/inf: ``metrics`` (also a missing value), ``compression``,
    and numbers in ``table`` rows; e.g. ``["metrics.test_loss=nan", "table[3].err=inf"]`` (at most ``limit``).

    A run with any of them is not written as ok: NaN/inf never reaches a results table.
    """
    bad: list[str] = []
    for name, value in (out.get("metrics") or {}).items():
        v = _scalar(value)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            bad.append(f"metrics.{name}={v}")
    for key in ("compression", "params_before", "params_after"):
        v = _scalar(out.get(key))
        if isinstance(v, float) and not math.isfinite(v):
            bad.append(f"{key}={v}")
    for i, row in enumerate(out.get("table") or []):
        for name, value in row.items():
            v = _scalar(value)
            if isinstance(v, float) and not math.isfinite(v):
                bad.append(f"table[{i}].{name}={v}")
    return bad[:limit] + ([f"... {len(bad) - limit} more"] if len(bad) > limit else [])


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same folder and rename it into place (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(data), f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_results(run_dir: Path) -> dict[str, Any] | None:
    p = Path(run_dir) / RESULTS_FILE
    if not p.is_file():
        return None
    with open(p) as f:
        return json.load(f)


def overrides_record() -> dict[str, list[str] | None]:
    """``overrides`` (Hydra's task overrides of this run) and ``recipe_overrides`` (those changing the recipe)."""
    from coresetlab.resolvers import recipe_overrides, task_overrides

    overrides = task_overrides()
    return {"overrides": overrides, "recipe_overrides": recipe_overrides(overrides)}


def compression_ratio(params_before: int | None, params_after: int | None) -> float | None:
    """Fraction of parameters removed, ``1 - after/before`` (AutoCL Table 2: 0.8963 for 266,610 -> 27,660)."""
    if not params_before or params_after is None:
        return None
    return 1.0 - params_after / params_before
