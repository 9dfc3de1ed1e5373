"""``python -m coresetlab.report [RUN_DIR ...] --out DIR``: build the reproduction report.

Without run folders it reads ``outputs/`` and the committed reference records in ``results/``; with run
folders, only those (add ``--reference results`` to include the reference records). ``--readme`` instead
rewrites the status block of README.md (``<!-- status:begin -->`` … ``<!-- status:end -->``) from the
committed records in ``results/`` alone, so that the README shows what a fresh clone reproduces.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from coresetlab.paths import output_root, repo_root
from coresetlab.report.build import build_report


def readme(manifests: Path | None, reference: list[Path], path: Path) -> int:
    """Rewrite the status block of ``path`` from the records below ``reference``."""
    from coresetlab.report.status import rewrite_block

    with tempfile.TemporaryDirectory() as tmp:
        build_report([], Path(tmp) / "report", manifests, reference=reference)
        table = (Path(tmp) / "report" / "status.md").read_text().split("\n", 2)[2]
    try:
        path.write_text(rewrite_block(path.read_text(), table))
    except (OSError, ValueError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 2
    print(f"status table -> {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coresetlab.report", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders or parents of run folders (default: outputs/)")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: outputs/report/)")
    ap.add_argument("--manifests", type=Path, default=None, help="manifest folder (default: experiments/)")
    ap.add_argument("--reference", type=Path, action="append", default=None,
                    help="reference record folder(s) (default: results/ when no run folders are given)")
    ap.add_argument("--no-reference", action="store_true", help="ignore the reference records in results/")
    ap.add_argument("--readme", action="store_true",
                    help="only rewrite README.md's status block from the reference records in results/")
    args = ap.parse_args(argv)
    default_ref = [repo_root() / "results"]
    reference = [] if args.no_reference else (args.reference or ([] if args.runs else default_ref))
    if args.readme:
        return readme(args.manifests, args.reference or default_ref, repo_root() / "README.md")
    runs = args.runs or [output_root()]
    missing = [p for p in [*args.runs, *(args.reference or [])] if not p.exists()]
    if missing:
        print(f"error: no such run folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    out = args.out or output_root() / "report"
    path = build_report([p for p in runs if p.exists()], out, args.manifests, owned=args.out is None,
                        reference=reference)
    print(f"report: {path}")
    print(f"status: {path.parent / 'status.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
