"""Find run folders and load their ``results.json`` into two DataFrames.

* ``runs``: one flat row per run (ShrinkBench style): identity columns, every metric as a column,
  parameter counts, compression, wall time, status, error, run_dir.
* ``records``: the long-format ``table`` rows of all runs, joined with their run's identity columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from coresetlab.records import RESULTS_FILE

ID_COLS = ["experiment", "artefact", "method", "model", "dataset", "profile", "seed", "status", "config_id"]
RUN_COLS = ID_COLS + ["params_before", "params_after", "compression", "wall_time_s", "started_at", "git_sha",
                      "error", "run_dir"]


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
    """The run's ``resolved_config.yaml`` as a plain dict (None when absent or unreadable)."""
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


def config_differences(run_dirs: Iterable[Path], limit: int = 6) -> list[str]:
    """Keys (dotted, cosmetic ones and ``seed`` left out) whose values differ between the runs' configs."""
    from coresetlab.resolvers import COSMETIC_TOP, COSMETIC_TRAINER, unseeded

    flats = []
    for d in run_dirs:
        conf = resolved_config(d)
        if conf is not None:
            conf = unseeded({k: v for k, v in conf.items() if k not in COSMETIC_TOP and k != "seed"}, conf.get("seed"))
            flats.append(_flatten(conf))
    keys = sorted(set().union(*flats)) if flats else []
    diff = [k for k in keys if len({repr(f.get(k, "<absent>")) for f in flats}) > 1
            and not (k.startswith("trainer.") and k.split(".", 1)[1] in COSMETIC_TRAINER)]
    return diff[:limit] + ([f"... {len(diff) - limit} more"] if len(diff) > limit else [])


def load_runs(paths: Iterable[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(runs, records)`` for the run folders below ``paths``; unreadable files become failed rows."""
    run_rows, rec_rows = [], []
    for f in find_result_files(paths):
        try:
            res = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            run_rows.append({"status": "unreadable", "error": str(e), "run_dir": str(f.parent)})
            continue
        row = {c: res.get(c) for c in RUN_COLS}
        row["run_dir"] = str(f.parent)
        if not row.get("config_id"):  # results written before config_id was recorded
            row["config_id"] = config_id_of(f.parent)
        metrics = res.get("metrics") or {}
        row.update({k: v for k, v in metrics.items() if k not in row})
        run_rows.append(row)
        ident = {c: row[c] for c in ID_COLS + ["run_dir"]}
        for rec in res.get("table") or []:
            rec_rows.append({**ident, **rec})
    runs = pd.DataFrame(run_rows, columns=None if run_rows else RUN_COLS)
    records = pd.DataFrame(rec_rows)
    return runs, records
