"""``python -m coresetlab.reproduce --profile fast|paper|smoke``: every artefact's runs, then the report.

Reads the ``reproduce:`` section of each manifest in ``experiments/``::

    reproduce:
      order: 10                      # lower runs first (artefacts that train shared parents first)
      data: [MNIST/raw/train-images-idx3-ubyte.gz]   # skipped (and said so) when missing from the data root
      est_minutes: {paper: 20, fast: 1.5, smoke: 0.2}   # per run, on a 2-core CPU
      runs:
        - overrides: ["+experiment=lenet_autocl"]
          seeds: {paper: [0, 1, 2], fast: [0], smoke: [0]}
          est_minutes: {paper: 11}   # optional: this run's estimate instead of the artefact's
          ablation: true             # optional: a measured ablation of the recipe (run here, shown in the report
                                     # as "paper (modified: …)", never counted for the status)

Prints the plan (runs, estimated time) first and one progress line per run. Runs whose folder already
holds an ok result are skipped (run identity), failed runs do not stop the others, and the report
lists failed and missing runs. SIGTERM/SIGINT stop the current run cleanly (it keeps its checkpoints)
and the whole plan (exit 143/130): relaunching the same command skips the finished runs and resumes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from coresetlab import paths
from coresetlab.errors import RunInterrupted
from coresetlab.interrupts import interruptible
from coresetlab.records import read_results
from coresetlab.report.manifests import load_manifests


@dataclass
class PlannedRun:
    artefact: str
    overrides: list[str]
    est_minutes: float
    run_dir: Path | None = None


def run_dir_of(overrides: list[str]) -> Path | None:
    """The run folder that ``python run.py <overrides>`` would use (composed, not run)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import coresetlab.resolvers  # noqa: F401

    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(paths.repo_root() / "conf")):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        return Path(OmegaConf.select(cfg, "hydra.run.dir"))
    except Exception:
        return None


def plan(profile: str, only: list[str] | None = None) -> tuple[list[PlannedRun], list[str]]:
    """Runs to make for ``profile`` (manifest order), and notes about artefacts left out."""
    runs: list[PlannedRun] = []
    notes: list[str] = []
    root = paths.data_root()
    manifests = [m for m in load_manifests() if m.get("reproduce")]
    for m in sorted(manifests, key=lambda m: (m["reproduce"].get("order", 100), m["id"])):
        if only and m["id"] not in only and m["experiment"] not in only:
            continue
        rep = m["reproduce"]
        missing = [f for f in rep.get("data", []) if not (root / f).exists()]
        if missing:
            notes.append(f"{m['id']}: skipped, data missing under {root}: {', '.join(missing)}")
            continue
        est = float((rep.get("est_minutes") or {}).get(profile, 1.0))
        for spec in rep["runs"]:
            seeds = spec.get("seeds", {}).get(profile, [0]) if isinstance(spec.get("seeds"), dict) else spec.get("seeds", [0])
            run_est = float((spec.get("est_minutes") or {}).get(profile, est))  # a run's own estimate wins
            for seed in seeds:
                ov = [*spec["overrides"], f"profile={profile}", f"seed={seed}"]
                runs.append(PlannedRun(m["id"], ov, run_est, run_dir_of(ov)))
    return runs, notes


def _run(cmd: list[str]) -> tuple[int, str, bool]:
    """Run one ``run.py`` command -> ``(exit status, stderr, interrupted)``; a SIGTERM/SIGINT sent to us is
    passed on and the run allowed to stop cleanly."""
    with tempfile.TemporaryFile("w+") as err, interruptible():
        proc = subprocess.Popen(cmd, cwd=paths.repo_root(), env={**os.environ, "PYTHONWARNINGS": "ignore"},
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        stopped = False
        try:
            proc.wait()
        except RunInterrupted as e:  # Ctrl-C reaches the run too; a repeat is ignored there
            stopped = True
            proc.send_signal(e.signum)
            proc.wait()
        err.seek(0)
        return proc.returncode, err.read(), stopped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coresetlab.reproduce", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="fast", choices=["paper", "fast", "smoke"])
    ap.add_argument("--only", nargs="*", help="artefact ids or experiment names to restrict to")
    ap.add_argument("--dry-run", action="store_true", help="print the plan only")
    ap.add_argument("--force", action="store_true", help="rerun runs that already have an ok result")
    args = ap.parse_args(argv)

    runs, notes = plan(args.profile, args.only)
    todo = [r for r in runs if args.force or not (r.run_dir and (read_results(r.run_dir) or {}).get("status") == "ok")]
    print(f"== reproduce, profile={args.profile}: {len(runs)} runs, {len(runs) - len(todo)} already done, "
          f"estimated {sum(r.est_minutes for r in todo):.0f} min for the rest (2-core CPU)")
    for note in notes:
        print(f"   note: {note}")
    for r in runs:
        when = f"~{r.est_minutes:g} min" if r in todo else "done"
        print(f"   {r.artefact:24s} {' '.join(r.overrides)}  ({when})")
    if args.dry_run:
        return 0
    t_all, failed = time.perf_counter(), 0
    for i, r in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {r.artefact} {' '.join(r.overrides)}"
        if r not in todo:
            print(f"{label}: already done")
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, str(paths.repo_root() / "run.py"), *r.overrides] + (["force=true"] if args.force else [])
        returncode, stderr, stopped = _run(cmd)
        if stopped or returncode in (130, 143, -2, -15):  # interrupted: the run kept its checkpoints; stop
            print(f"{label}: interrupted; relaunch `python -m coresetlab.reproduce --profile {args.profile}` to resume "
                  "(finished runs are skipped)", file=sys.stderr, flush=True)
            return 128 - returncode if returncode < 0 else returncode if returncode in (130, 143) else 130
        status = "ok" if returncode == 0 else f"FAILED (exit {returncode}): {stderr.strip()[-300:]}"
        failed += returncode != 0
        print(f"{label}: {status} in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"== {len(todo)} runs in {(time.perf_counter() - t_all) / 60:.1f} min, {failed} failed")
    from coresetlab.report.build import build_report

    report = build_report([paths.output_root()], paths.output_root() / "report", owned=True,
                          reference=[paths.repo_root() / "results"])
    print(f"report: {report}")
    print(f"status: {report.parent / 'status.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
