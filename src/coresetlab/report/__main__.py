"""``python -m coresetlab.report [RUN_DIR ...] --out DIR``: build the reproduction report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coresetlab.paths import output_root
from coresetlab.report.build import build_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coresetlab.report", description=__doc__)
    ap.add_argument("runs", nargs="*", type=Path, help="run folders or parents of run folders (default: outputs/)")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: outputs/report/)")
    ap.add_argument("--manifests", type=Path, default=None, help="manifest folder (default: experiments/)")
    args = ap.parse_args(argv)
    runs = args.runs or [output_root()]
    missing = [p for p in runs if not p.exists()]
    if missing:
        print(f"error: no such run folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    out = args.out or output_root() / "report"
    path = build_report(runs, out, args.manifests, owned=args.out is None)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
