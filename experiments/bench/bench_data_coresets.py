#!/usr/bin/env python
"""Wall time of each phase of the AutoCL data-coreset experiments (Figures 1 and 2).

Runs ``python run.py +experiment=<name> profile=<profile>`` for each experiment (the linear one on
``--linreg-dataset``, default the California Housing stand-in), reads ``stage_times_s`` from the run's
``results.json`` and prints, per experiment: queries, learned coresets, baselines (uniform +
sensitivity sampling), metrics (Err_opt + Err_avg of every coreset), other (data loading, full-data
minimiser), overhead (the runner's own time: imports, seeding, writing) and the run's wall time. The figures go to ``outputs/bench/data_coresets_<profile>_<time>.json``
and ``.csv``.

By default query sets are rebuilt in a fresh cache (``--cached-queries`` reuses the project's cache,
i.e. times a run whose queries were generated before).

    python experiments/bench/bench_data_coresets.py --profile fast
    python experiments/bench/bench_data_coresets.py --profile paper --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PHASES = ("queries", "learned", "baselines", "metrics", "other", "overhead")


def phases(stage_times: dict[str, float], run_s: float) -> dict[str, float]:
    """Group the run's stages into the benchmark's phases; ``overhead`` = the run's wall time outside
    the task's stages (config validation, imports, seeding, writing results)."""
    out = dict.fromkeys(PHASES, 0.0)
    out["overhead"] = run_s - sum(stage_times.values())
    for stage, seconds in stage_times.items():
        if stage == "queries":
            out["queries"] += seconds
        elif stage == "coresets_learned":
            out["learned"] += seconds
        elif stage.startswith("coresets_"):
            out["baselines"] += seconds
        elif stage == "metrics":
            out["metrics"] += seconds
        else:
            out["other"] += seconds
    return out


def run_one(experiment: str, args: argparse.Namespace, outputs: Path, cache: Path | None) -> dict:
    run_dir = outputs / f"{experiment}_{args.profile}"
    overrides = [f"+experiment={experiment}", f"profile={args.profile}", f"seed={args.seed}",
                 f"hydra.run.dir={run_dir}"]
    if experiment == "linreg_autocl":
        overrides.append(f"dataset={args.linreg_dataset}")
    if args.threads:
        overrides.append(f"torch_threads={args.threads}")
    overrides += args.override
    env = {**os.environ, "CORESETLAB_OUTPUTS": str(outputs)}
    if cache is not None:
        env["CORESETLAB_CACHE"] = str(cache)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), *overrides], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{experiment}: run failed with exit status {proc.returncode}")
    res = json.loads((run_dir / "results.json").read_text())
    metrics = res["metrics"]
    return {
        "experiment": experiment, "profile": args.profile, "dataset": res["dataset"], "threads": args.threads,
        "fresh_queries": cache is not None, **{f"{k}_s": v for k, v in phases(res["stage_times_s"], res["wall_time_s"]).items()},
        "run_s": res["wall_time_s"], "process_s": wall,
        "paper_shape_err_opt": metrics.get("paper_shape_err_opt"),
        "paper_shape_err_avg": metrics.get("paper_shape_err_avg"),
        **{f"{m}_{e}": metrics.get(f"{m}_{e}") for m in ("learned", "sensitivity", "uniform")
           for e in ("err_opt", "err_avg")},
        "run_dir": str(run_dir),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="fast", choices=["paper", "fast", "smoke"])
    ap.add_argument("--experiments", nargs="+", default=["linreg_autocl", "logreg_autocl"])
    ap.add_argument("--linreg-dataset", default="california_housing", help="road3d where the UCI file exists")
    ap.add_argument("--threads", type=int, default=None, help="torch_threads of the runs (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cached-queries", action="store_true", help="reuse the project's query cache")
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench")
    args = ap.parse_args(argv)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = args.out / f"runs_{args.profile}_{stamp}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="coresetlab-bench-cache-") as tmp:
        for experiment in args.experiments:
            row = run_one(experiment, args, outputs, None if args.cached_queries else Path(tmp))
            rows.append(row)
            print(f"{experiment:15s} [{row['dataset']}, profile={args.profile}] "
                  + "  ".join(f"{p} {row[p + '_s']:7.1f}s" for p in PHASES)
                  + f"  | run {row['run_s']:7.1f}s (process {row['process_s']:.1f}s)"
                  + f"  | shape opt/avg {row['paper_shape_err_opt']}/{row['paper_shape_err_avg']}", flush=True)
    base = args.out / f"data_coresets_{args.profile}_{stamp}"
    base.with_suffix(".json").write_text(json.dumps({"profile": args.profile, "rows": rows}, indent=2) + "\n")
    with open(base.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"bench -> {base}.json / .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
