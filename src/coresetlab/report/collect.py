"""Find run folders and load their ``results.json`` into two DataFrames.

* ``runs``: one flat row per run (ShrinkBench style): identity columns, every metric as a column,
  parameter counts, compression, wall time, status, error, run_dir.
* ``records``: the long-format ``table`` rows of all runs, joined with their run's identity columns.

Runs come from ``outputs/`` (``origin = "outputs"``) and from the committed reference records in
``results/`` (``origin = "reference"``); a run present in both (same ``run_id``) is taken from ``outputs/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from coresetlab.records import RESULTS_FILE

ID_COLS = ["experiment", "artefact", "method", "model", "dataset", "profile", "seed", "status", "config_id",
           "recipe_overrides", "origin", "git_sha", "finished_at"]
RUN_COLS = ID_COLS + ["run_id", "params_before", "params_after", "compression", "wall_time_s", "started_at",
                      "overrides", "error", "run_dir"]
ORIGINS = ("outputs", "reference")
RESERVED_COLS = frozenset({"recipe", "origin", "variant"})  # set by the report (variants.py), never from a record


def find_result_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``results.json`` at or below the given folders (a results.json path is taken as is)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == RESULTS_FILE:
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.rglob(RESULTS_FILE)))
    seen: set[Path] = set()
    unique = []
    for f in found:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def resolved_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``resolved_config.yaml`` as a plain dict (None when absent or unreadable); do not mutate it."""
    return _resolved_config(str(run_dir))


@lru_cache(maxsize=4096)
def _resolved_config(run_dir: str) -> dict[str, Any] | None:
    path = Path(run_dir) / "resolved_config.yaml"
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]
    except Exception:
        return None


def config_id_of(run_dir: Path) -> str | None:
    """:func:`coresetlab.resolvers.config_id` recomputed from the run folder's resolved config."""
    from coresetlab.resolvers import config_id

    conf = resolved_config(run_dir)
    try:
        return None if conf is None else config_id(OmegaConf.create(conf))
    except Exception:  # a hand-edited or foreign config: no recipe id, the run is still reported
        return None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def recipe_flat(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config as ``{dotted key: value}``, cosmetic keys and the seed left out."""
    from coresetlab.resolvers import COSMETIC_TOP, COSMETIC_TRAINER, unseeded

    conf = resolved_config(run_dir)
    if conf is None:
        return None
    conf = unseeded({k: v for k, v in conf.items() if k not in COSMETIC_TOP and k != "seed"}, conf.get("seed"))
    return {k: v for k, v in _flatten(conf).items()
            if not (k.startswith("trainer.") and k.split(".", 1)[1] in COSMETIC_TRAINER)}


def differing_keys(flats: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose values differ between the flattened configs (absent counts as a value)."""
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({repr(f.get(k, "<absent>")) for f in flats}) > 1]


def config_differences(run_dirs: Iterable[Path], limit: int = 6) -> list[str]:
    """Keys (dotted, cosmetic ones and ``seed`` left out) whose values differ between the runs' configs."""
    flats = [f for f in map(recipe_flat, run_dirs) if f is not None]
    diff = differing_keys(flats)
    return diff[:limit] + ([f"... {len(diff) - limit} more"] if len(diff) > limit else [])


def method_aliases(run_dir: Path) -> dict[str, str]:
    """``{label: coreset_method name}`` of a run's ``task.methods`` / ``task.baselines`` entries.

    Tasks label their rows by these keys (``coreset``, ``uniform``); the name says which method it is
    (``neuron_coreset``, ``neuron_uniform``), so that a method looks the same in every figure.
    """
    task = (resolved_config(run_dir) or {}).get("task") or {}
    out: dict[str, str] = {}
    for group in ("methods", "baselines"):
        entries = task.get(group) if isinstance(task, dict) else None
        if isinstance(entries, dict):
            out.update({str(k): str(v["name"]) for k, v in entries.items() if isinstance(v, dict) and v.get("name")})
    return out


def canonical_methods(df: pd.DataFrame, col: str = "method") -> pd.DataFrame:
    """``df`` with ``col`` mapped from per-run labels to method names (:func:`method_aliases`), a copy."""
    if df.empty or col not in df.columns or "run_dir" not in df.columns:
        return df
    out = df.copy()
    aliases = {d: method_aliases(Path(d)) for d in out["run_dir"].dropna().unique()}
    out[col] = [aliases.get(d, {}).get(m, m) if isinstance(m, str) else m for d, m in zip(out["run_dir"], out[col])]
    return out


def _result_files(paths: Iterable[Path], reference: Iterable[Path]) -> list[tuple[Path, str]]:
    """``(results.json, origin)``; a run (``run_id``) in both outputs and reference is kept from outputs."""
    out_files = find_result_files(paths)
    seen = {f.resolve() for f in out_files}
    ref_files = [f for f in find_result_files(reference) if f.resolve() not in seen]
    taken = {_run_id_of(f) for f in out_files} - {None}
    return [(f, "outputs") for f in out_files] + [(f, "reference") for f in ref_files if _run_id_of(f) not in taken]


def _run_id_of(f: Path) -> str | None:
    try:
        return json.loads(f.read_text()).get("run_id")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def load_runs(paths: Iterable[Path], reference: Iterable[Path] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(runs, records)`` for the run folders below ``paths`` and the reference folders (``results/``).

    Unreadable files become failed rows. ``origin`` says where a run came from; a run found in both (same
    ``run_id``) is taken from ``paths`` (outputs win).
    """
    run_rows, rec_rows = [], []
    for f, origin in _result_files(paths, reference):
        try:
            res = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            run_rows.append({"status": "unreadable", "error": str(e), "run_dir": str(f.parent), "origin": origin})
            continue
        row = {c: res.get(c) for c in RUN_COLS}
        row["run_dir"], row["origin"] = str(f.parent), origin
        for key in ("overrides", "recipe_overrides"):  # tuples: hashable, None = not recorded
            row[key] = None if row[key] is None else tuple(map(str, row[key]))
        if not row.get("config_id"):  # results written before config_id was recorded
            row["config_id"] = config_id_of(f.parent)
        metrics = res.get("metrics") or {}
        row.update({k: v for k, v in metrics.items() if k not in row})
        # the record's string-valued settings (e.g. the Dubey rank search order): filterable in manifests' `where`
        labels = {k: v for k, v in (res.get("extra") or {}).items()
                  if isinstance(v, str) and k not in row and k not in RESERVED_COLS}
        row.update(labels)
        parent = (res.get("extra") or {}).get("parent")
        if isinstance(parent, dict) and isinstance(parent.get("key"), str):  # the cached parent the run started from
            row["parent_key"] = parent["key"]
        run_rows.append(row)
        ident = {**{c: row[c] for c in ID_COLS + ["run_dir"]}, **labels}
        for rec in res.get("table") or []:
            rec_rows.append({**ident, **rec})
    runs = pd.DataFrame(run_rows, columns=None if run_rows else RUN_COLS)
    records = pd.DataFrame(rec_rows)
    return runs, records
