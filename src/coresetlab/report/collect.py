"""Find run folders and load their ``results.json`` into two DataFrames.

* ``runs``: one flat row per run (ShrinkBench style): identity columns, every metric as a column,
  parameter counts, compression, wall time, status, error, run_dir.
* ``records``: the long-format ``table`` rows of all runs, joined with their run's identity columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from coresetlab.records import RESULTS_FILE

ID_COLS = ["experiment", "artefact", "method", "model", "dataset", "profile", "seed", "status"]
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
        metrics = res.get("metrics") or {}
        row.update({k: v for k, v in metrics.items() if k not in row})
        run_rows.append(row)
        ident = {c: row[c] for c in ID_COLS + ["run_dir"]}
        for rec in res.get("table") or []:
            rec_rows.append({**ident, **rec})
    runs = pd.DataFrame(run_rows, columns=None if run_rows else RUN_COLS)
    records = pd.DataFrame(rec_rows)
    return runs, records
