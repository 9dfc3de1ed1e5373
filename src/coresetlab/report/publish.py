"""``python -m coresetlab.report.publish [--profile paper] [--experiment X ...]``: copy reference records.

Copies every ok run of the chosen profile (default ``paper``) from ``outputs/`` into the tracked
``results/`` folder, as ``results/<experiment>/<run folder name>/{results.json, resolved_config.yaml}``
(a few kB per run), plus the small figure inputs a run writes (``filters/*.npy``: the conv1 filter banks of
Dubey et al. supp. Figs 8–10, a few kB each). Failed runs are never copied, nor runs of another profile: ``fast`` or ``smoke`` runs
are copied only when ``--profile`` names them, and they stay labelled with their profile in the report.
A run already in ``results/`` is replaced by a newer copy of the same run folder. The report reads
``results/`` as well as ``outputs/`` and marks these rows ``reference run (<sha>, <date>)``.

Regenerate the reference results::

    make reproduce PROFILE=paper     # hours on a 2-core CPU
    make publish                     # = python -m coresetlab.report.publish --profile paper
    git add results && git commit
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from coresetlab.paths import output_root, repo_root
from coresetlab.records import RESULTS_FILE
from coresetlab.report.collect import find_result_files

FILES = (RESULTS_FILE, "resolved_config.yaml")
FIGURE_INPUTS = ("filters/*.npy",)   # small per-run arrays the report draws (conv1 filter grids)


@dataclass
class Published:
    copied: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # failed, unreadable or incomplete runs
    other_profile: int = 0


def _files(run: Path) -> list[str]:
    """The published files of a run folder, relative to it."""
    extra = sorted(f.relative_to(run).as_posix() for pattern in FIGURE_INPUTS for f in run.glob(pattern))
    return [f for f in FILES if (run / f).is_file()] + extra


def _same(src: Path, dst: Path) -> bool:
    return all((dst / f).is_file() and (src / f).read_bytes() == (dst / f).read_bytes() for f in _files(src))


def publish(source: Path, dest: Path, profile: str = "paper", experiments: list[str] | None = None,
            dry_run: bool = False) -> Published:
    """Copy the ok ``profile`` runs below ``source`` (optionally only ``experiments``) into ``dest``."""
    out = Published()
    dest = dest.resolve()
    for f in find_result_files([source]):
        run = f.parent
        if dest in run.resolve().parents:
            continue
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            out.skipped.append(f"{run}: unreadable ({e})")
            continue
        exp = rec.get("experiment")
        if experiments and exp not in experiments:
            continue
        if rec.get("profile") != profile:
            out.other_profile += 1
            continue
        if rec.get("status") != "ok":
            out.skipped.append(f"{run}: status {rec.get('status')} (never published)")
            continue
        if not exp or not (run / "resolved_config.yaml").is_file():
            out.skipped.append(f"{run}: no experiment name or no resolved_config.yaml")
            continue
        target = dest / str(exp) / run.name
        if _same(run, target):
            out.unchanged.append(target)
            continue
        if not dry_run:
            target.mkdir(parents=True, exist_ok=True)
            for name in _files(run):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, target / name)
        out.copied.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coresetlab.report.publish", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper", choices=["paper", "fast", "smoke"],
                    help="profile of the runs to publish (default: paper)")
    ap.add_argument("--experiment", action="append", default=None, help="only this experiment (repeatable)")
    ap.add_argument("--from", dest="source", type=Path, default=None, help="run folders (default: outputs/runs)")
    ap.add_argument("--to", dest="dest", type=Path, default=None, help="reference folder (default: results/)")
    ap.add_argument("--dry-run", action="store_true", help="list what would be copied")
    args = ap.parse_args(argv)
    source = args.source or output_root() / "runs"
    if not source.exists():
        print(f"error: no such folder: {source}", file=sys.stderr)
        return 2
    dest = args.dest or repo_root() / "results"
    res = publish(source, dest, args.profile, args.experiment, args.dry_run)
    verb = "would copy" if args.dry_run else "copied"
    for p in res.copied:
        print(f"{verb}: {p}")
    for s in res.skipped:
        print(f"skipped: {s}")
    print(f"== {verb} {len(res.copied)} {args.profile} run(s) to {dest}; {len(res.unchanged)} unchanged, "
          f"{len(res.skipped)} skipped, {res.other_profile} of other profiles left out")
    if res.copied and not args.dry_run:
        print(f"next: git add {dest} && git commit; python -m coresetlab.report --readme")
    return 0


if __name__ == "__main__":
    sys.exit(main())
