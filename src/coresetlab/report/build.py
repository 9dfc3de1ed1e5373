"""Build the report folder: ``REPRODUCTION.md`` + per-artefact tables (.md/.csv/.tex) and figures (.png/.pdf).

For each manifest in ``experiments/`` and each profile that has runs: our mean ± std over seeds, n,
recipe, the paper's value and Δ. Only ``paper``-profile runs of the manifest's recipe are reproductions;
the report says so next to every other profile and labels modified recipes ``paper (modified: …)``.
Runs of different recipes are split, never pooled. Runs come from ``outputs/`` and the committed
reference records in ``results/`` (labelled ``reference run (<sha>, <date>)``). Each artefact's status
(:mod:`coresetlab.report.status`) heads its section and the top-level status table (also ``status.md``).
Failed and unreadable runs are listed explicitly, and so are artefacts with no runs.
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from coresetlab.report.collect import canonical_methods, config_differences, load_runs
from coresetlab.report.figures import line_figure
from coresetlab.report.manifests import load_manifests
from coresetlab.report.status import Status, artefact_status, status_line, status_markdown
from coresetlab.report.tables import (
    profiles_present,
    records_table,
    runs_table,
    runs_table_markdown,
    select,
    to_markdown,
)
from coresetlab.report.variants import label_recipes, source_label, variant_labels, with_variant

log = logging.getLogger("coresetlab.report")

PROFILE_NOTE = {
    "paper": "paper profile: the paper's recipe — a reproduction attempt",
    "fast": "**fast profile: reduced recipe — NOT a reproduction of the paper**",
    "smoke": "**smoke profile: pipeline check only — numbers are meaningless**",
}


def _slug(s: str) -> str:
    return s.replace("/", "_").replace(" ", "_")


def _write_table(df: pd.DataFrame, base: Path, markdown: str) -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(base.with_suffix(".csv"), index=False)
    base.with_suffix(".md").write_text(markdown + "\n")
    tex = df.drop(columns=[c for c in ("fmt",) if c in df.columns]).to_latex(index=False, na_rep="--", float_format="%.4g")
    base.with_suffix(".tex").write_text(tex)
    return [base.with_suffix(s) for s in (".md", ".csv", ".tex")]


def _call_builder(path: str, manifest, runs, records, out_dir) -> list[Path]:
    mod, fn = path.rsplit(".", 1)
    return list(getattr(importlib.import_module(mod), fn)(manifest, runs, records, out_dir))


def missing_runs(m: dict[str, Any], mine: pd.DataFrame) -> dict[str, list[int]]:
    """Seeds planned by the manifest (``reproduce.runs[].seeds``) without an ok run, per profile present."""
    rep = m.get("reproduce") or {}
    out: dict[str, list[int]] = {}
    for profile in profiles_present(mine):
        planned: set[int] = set()
        for spec in rep.get("runs", []):
            seeds = spec.get("seeds", {})
            planned |= set(seeds.get(profile, []) if isinstance(seeds, dict) else seeds)
        ok = mine[(mine["profile"] == profile) & (mine["status"] == "ok")]
        have = set(ok["seed"].dropna().astype(int))
        if planned - have:
            out[profile] = sorted(planned - have)
    return out


def recipe_splits(ok: pd.DataFrame) -> list[str]:
    """Notes for methods whose runs hold several recipes (``config_id``): shown as separate rows, not pooled.

    Runs of one (method, model, dataset) normally differ only by seed; a command-line override on some of
    them makes another recipe. Returns one markdown line per such group, naming the differing config keys.
    """
    if ok.empty or "config_id" not in ok.columns:
        return []
    keys = [c for c in ("method", "model", "dataset") if c in ok.columns]
    lines = []
    for name, g in ok.fillna({k: "–" for k in keys}).groupby(keys, dropna=False) if keys else [("all", ok)]:
        labels = variant_labels(g)
        if not labels:
            continue
        cid = g["config_id"].fillna("?")
        reps = [Path(g[cid == i]["run_dir"].iloc[0]) for i in labels]
        counts = "; ".join(f"`{i}` [{lab}]: {int((cid == i).sum())} run(s)" for i, lab in labels.items())
        differ = ", ".join(f"`{k}`" for k in config_differences(reps)) or "unknown (no resolved_config.yaml)"
        label = "/".join(map(str, name if isinstance(name, tuple) else (name,)))
        lines.append(f"- **{label}: {len(labels)} different recipes, not pooled** ({counts}); they differ in "
                     f"{differ}. Each recipe has its own rows (`[…]` after the row label) and figure lines.")
    return lines


def _figure_data(data: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """Figure input: method labels mapped to method names (one look everywhere), recipes kept apart."""
    if data.empty:
        return data
    hue = spec.get("hue") or ("variant" if "variant" in data.columns else "method")
    return with_variant(canonical_methods(data, hue), hue)


def build_artefact(m: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out: Path,
                   status: Status | None = None) -> list[str]:
    """Write one artefact's tables and figures; return its section of REPRODUCTION.md."""
    md = [f"## {m['id']} — {m['title']}", ""]
    if status is not None:
        md += [status_line(status), ""]
    md.append(f"Experiment `{m['experiment']}`; command: `{m.get('command', 'python run.py +experiment=' + m['experiment'])}`")
    md.append("")
    for note in m["notes"]:
        md.append(f"> {note}")
    if m["notes"]:
        md.append("")
    ids = m.get("artefacts") or [m["id"]]  # a manifest may read the runs of other artefacts (AutoCL Table 1)
    mine = select(runs, {"artefact": ids}) if not runs.empty else runs
    recs = select(records, {"artefact": ids}) if not records.empty else records
    if mine.empty:
        md += ["_No runs found for this artefact._", ""]
        # still show quoted paper values so the reader knows what is to be reproduced
        for spec in m["tables"]:
            if spec.get("source", "runs") == "runs":
                t = runs_table(spec, runs.iloc[0:0] if not runs.empty else pd.DataFrame(), "paper")
                if not t.empty:
                    md += [f"Paper values ({spec['name']}):", "", runs_table_markdown(t[t["source"] != "ours"]), ""]
        return md
    failed = mine[mine["status"] != "ok"]
    counts = mine.groupby(["profile", "status"]).size().reset_index(name="runs")
    md += ["Runs: " + ", ".join(f"{r.profile}/{r.status}: {r.runs}" for r in counts.itertuples()), ""]
    for profile in profiles_present(mine):
        md += [f"### Profile `{profile}`", "", PROFILE_NOTE.get(profile, profile), ""]
        ok = mine[(mine["profile"] == profile) & (mine["status"] == "ok")]
        if not ok.empty:
            ds = ", ".join(sorted(set(map(str, ok["dataset"].dropna()))))
            md += [f"Dataset(s): {ds}; seeds: {sorted(set(ok['seed'].dropna().astype(int)))}; "
                   f"wall time per run: {ok['wall_time_s'].mean():.0f} s (mean); source: {source_label(ok)}", ""]
            recipes = sorted(set(ok["recipe"].dropna())) if "recipe" in ok.columns else []
            if any(r != profile for r in recipes):
                md += ["Recipe(s): " + "; ".join(f"`{r}`" for r in recipes) + " — only the manifest's own "
                       "recipe (plain `paper`) is a reproduction and counts for the status.", ""]
            splits = recipe_splits(ok)
            if splits:
                md += ["Runs of different recipes (shown separately):", "", *splits, ""]
        for spec in m["tables"]:
            base = out / "tables" / f"{_slug(m['id'])}_{spec['name']}_{profile}"
            if spec.get("source", "runs") == "runs":
                t = runs_table(spec, mine, profile)
                text = runs_table_markdown(t)
            else:
                t = records_table(spec, recs, profile)
                text = to_markdown(t)
            if t.empty:
                continue
            _write_table(t, base, text)
            md += [f"**{spec.get('title', spec['name'])}**", "", text, ""]
        for spec in m["figures"]:
            data = recs if spec.get("source", "records") == "records" else mine
            data = data[(data["profile"] == profile) & (data["status"] == "ok")] if not data.empty else data
            data = _figure_data(data, spec)
            base = out / "figures" / f"{_slug(m['id'])}_{spec['name']}_{profile}"
            title = f"{m['title']} [{spec['name']}, profile={profile}]"
            if spec.get("builder"):
                paths = _call_builder(spec["builder"], {**m, "figure": spec, "profile": profile}, mine,
                                      _figure_data(recs, spec), base.parent)
            else:
                paths = line_figure(spec, data, base, title)
            for p in paths:
                if p.suffix == ".png":
                    md += [f"![{spec['name']} ({profile})]({p.relative_to(out)})", ""]
            if spec.get("paper_shape"):
                md += [f"Paper's shape: {spec['paper_shape']}", ""]
    missing = missing_runs(m, mine)
    if missing:
        md += ["Missing runs (planned in the manifest's `reproduce` section, no ok result found):", ""]
        md += [f"- profile `{p}`: seeds {seeds}" for p, seeds in missing.items()]
        md.append("")
    if not failed.empty:
        md += ["Failed runs:", ""]
        md += [f"- `{r.run_dir}` ({r.profile}, seed {r.seed}): {r.error}" for r in failed.itertuples()]
        md.append("")
    return md


MARKER = ".coresetlab-report"


def _fresh_report_dir(out: Path, owned: bool = False) -> None:
    """Create ``out``. In a folder that is ours (``owned``: the default ``outputs/report``, or an earlier
    build left :data:`MARKER` there) the old tables, figures and CSVs are deleted first, so that none from a
    run since deleted outlives it; a folder that is new or empty becomes ours. Others are never emptied."""
    import shutil

    ours = owned or (out / MARKER).exists() or not out.exists() or not any(out.iterdir())
    if ours:
        for sub in ("tables", "figures"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for name in ("runs.csv", "records.csv", "status.md"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if ours:
        (out / MARKER).write_text("made by python -m coresetlab.report: tables/ and figures/ are rebuilt each time\n")


def build_report(run_paths: list[Path], out: Path, manifest_dir: Path | None = None, owned: bool = False,
                 reference: list[Path] | None = None) -> Path:
    """Aggregate the runs below ``run_paths`` (and the reference records below ``reference``, e.g. ``results/``)
    into ``out``; return the path of REPRODUCTION.md. ``out/status.md`` holds the status table.

    ``owned``: ``out`` is the project's own report folder, rebuilt from scratch (see :func:`_fresh_report_dir`).
    """
    _fresh_report_dir(out, owned)
    reference = [p for p in (reference or []) if Path(p).exists()]
    manifests = load_manifests(manifest_dir)
    runs, records = label_recipes(*load_runs(run_paths, reference), manifests)
    _csv(runs, out / "runs.csv")
    if not records.empty:
        _csv(records, out / "records.csv")
    sources = ", ".join([f"`{_shown(p)}`" for p in run_paths]
                        + [f"reference records `{_shown(p)}`" for p in reference]) or "none"
    statuses = {m["id"]: artefact_status(m, runs, records) for m in manifests}
    status_md = status_markdown(list(statuses.values()), sources)
    (out / "status.md").write_text("# Reproduction status\n\n" + status_md)
    md = [
        "# coresetlab reproduction report", "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(runs)} run folder(s): "
        + sources, "",
        "Only runs with profile `paper` and the manifest's recipe are reproductions; `fast` and `smoke` numbers "
        "are shown for pipeline checks and are labelled as such, and a paper-profile run with a recipe override "
        "is shown as `paper (modified: …)`. Paper values come from the manifests in `experiments/`; rows marked "
        "*quoted* were not run by us; rows from the committed records in `results/` are marked *reference run*.",
        "", "## Status", "", status_md,
    ]
    if not runs.empty:
        inv = runs.groupby(["experiment", "profile", "status", "origin"], dropna=False).size().reset_index(name="runs")
        md += ["## Run inventory", "", inv.to_markdown(index=False), ""]
        bad = runs[runs["status"] != "ok"]
        if not bad.empty:
            md += [f"**{len(bad)} failed/unreadable run(s)** — see the artefact sections and runs.csv.", ""]
    known = {m["id"] for m in manifests}
    if not runs.empty:
        unknown = sorted(set(runs["artefact"].dropna()) - known)
        if unknown:
            md += ["Runs whose artefact has no manifest: " + ", ".join(unknown), ""]
    missing = [m["id"] for m in manifests
               if runs.empty or not set(m.get("artefacts") or [m["id"]]) & set(runs["artefact"].dropna())]
    if missing:
        md += ["Artefacts with no runs yet: " + ", ".join(missing), ""]
    for m in manifests:
        md += build_artefact(m, runs, records, out, statuses[m["id"]])
    path = out / "REPRODUCTION.md"
    path.write_text("\n".join(md) + "\n")
    return path


def _shown(p: Path) -> str:
    """``p`` relative to the repository when inside it (``results``, ``outputs``), else as given."""
    from coresetlab.paths import repo_root

    try:
        return str(Path(p).resolve().relative_to(repo_root().resolve()))
    except ValueError:
        return str(p)


def _csv(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV, override tuples written as space-separated strings."""
    df = df.copy()
    for col in ("overrides", "recipe_overrides"):
        if col in df.columns:
            df[col] = [" ".join(v) if isinstance(v, tuple) else v for v in df[col]]
    df.to_csv(path, index=False)
