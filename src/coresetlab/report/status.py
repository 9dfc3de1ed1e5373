"""Reproduction status per artefact, computed from the records against the manifest's ``reproduced_if``.

Manifest schema (``experiments/<id>.yaml``)::

    reproduced_if:
      - table: table2                       # a `source: runs` table of this manifest
        row: "Learned coreset 30-100 (ours)"  # one of its row labels
        metric: test_acc                    # paper value = that row's metrics.<metric>.paper
        tol: 0.003                          # |mean(ours) − paper| ≤ tol, in the metric's units
        per: parent_key                     # optional: a metric of the parent — one run per parent, any config
      - figure: fig4                        # a figure (or a `source: records` table) of this manifest
        metric: acc_before                  # y column
        index: rate                         # x column: checked at every x value of our records
        hue: method                         # default: the figure's hue, else "method"
        order: [neuron_coreset, neuron_uniform]   # the paper's ordering at every point, best first
        better: higher                      # or lower
        min_fraction: 1.0                   # optional: fraction of x values where the order must hold
        x_name: tolerance                   # optional: what the status calls the x values (default: index)
        where: {panel: lenet}               # optional extra filter (either kind of check)

Only ``paper``-profile runs of the manifest's recipe count (:func:`coresetlab.report.variants.eligible`).
Every check passes -> ``reproduced``; some -> ``partly``; none -> ``not reproduced (Δ …)``; no eligible
run -> ``no paper runs``. A check without eligible runs is neither passed nor failed: it is counted apart
(``no eligible runs``; only such checks -> ``no eligible runs for its checks``). If eligible runs of
one series hold several configs (code changed between runs), the newest config is used and the check
says so — except a ``per: parent_key`` check, whose metric belongs to the cached parent the runs share: it
takes one run per parent across configs (and says so). ``order`` names match a record's label or its method name (``coreset`` or ``neuron_coreset``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from coresetlab.report.collect import canonical_methods
from coresetlab.report.tables import fmt_delta, fmt_value, mean_std, select
from coresetlab.report.variants import eligible, reference_label

BEGIN, END = "<!-- status:begin -->", "<!-- status:end -->"


@dataclass
class Check:
    """One ``reproduced_if`` entry evaluated: ``passed`` is False when it has no eligible runs."""

    name: str
    passed: bool
    summary: str
    delta: str = ""
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    measured: bool = True  # False: no eligible run to check (neither a pass nor a failure)


@dataclass
class Status:
    artefact: str
    experiment: str
    status: str
    checks: list[Check]
    n_seeds: int
    source: str

    @property
    def versus(self) -> str:
        return "; ".join(dict.fromkeys(c.summary for c in self.checks)) or "–"


def _newest(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the newest config (``finished_at``) when ``df`` holds several, and a note saying so."""
    if df.empty or "config_id" not in df.columns or df["config_id"].nunique(dropna=False) < 2:
        return df, ""
    cid = df.sort_values("finished_at", na_position="first")["config_id"].iloc[-1]
    return df[df["config_id"] == cid], f" [newest of {df['config_id'].nunique(dropna=False)} configs: {cid}]"


def _one_per(df: pd.DataFrame, col: str) -> tuple[pd.DataFrame, str]:
    """One run per value of ``col`` (the newest, by ``finished_at``), across configs, and a note saying so.

    For a metric of a shared object (``per: parent_key``: the parent's test error), runs of different configs
    that started from the same cached parent measured the same model: pooling them is not mixing recipes, and
    counting each parent once keeps n = the number of parents."""
    if df.empty or col not in df.columns:
        return _newest(df)
    keyed = df[df[col].notna()]
    if keyed.empty:  # records without the key (written before it was recorded): the plain rule
        return _newest(df)
    one = keyed.sort_values("finished_at", na_position="first").drop_duplicates(col, keep="last")
    n_cfg = one["config_id"].nunique(dropna=False) if "config_id" in one.columns else 1
    unkeyed = len(df) - len(keyed)
    note = (f" [one run per {col}, {len(one)} of {len(df)} runs, {n_cfg} config(s)"
            f"{f'; {unkeyed} run(s) without {col} left out' if unkeyed else ''}]"
            if len(one) < len(df) or n_cfg > 1 else "")
    return one, note


def _table_check(m: dict[str, Any], chk: dict[str, Any], runs: pd.DataFrame) -> Check:
    spec = next(t for t in m["tables"] if t["name"] == chk["table"])
    row = next(r for r in spec.get("rows", []) if r["label"] == chk["row"])
    metric, tol = chk["metric"], float(chk["tol"])
    mspec = (row.get("metrics") or {})[metric] or {}
    paper, fmt = float(mspec["paper"]), mspec.get("fmt", "float")
    sel = select(select(runs, row.get("where")), chk.get("where"))
    # runs that measured the metric (a run of some of the variants lacks the others' metrics)
    measured = sel[sel[metric].notna()] if metric in sel.columns else sel
    sel, note = _one_per(measured, chk["per"]) if chk.get("per") else _newest(measured)
    name = f"{chk['table']} / {chk['row']} / {metric}"
    mean, _, n = mean_std(sel[metric]) if metric in sel.columns else (math.nan, math.nan, 0)
    if not n:
        return Check(name, False, f"{metric}: no eligible runs (paper {fmt_value(paper, fmt)})",
                     f"{metric}: no eligible runs", measured=False)
    d = mean - paper
    passed = abs(d) <= tol + 1e-12
    summary = (f"{metric} {fmt_value(mean, fmt)} vs {fmt_value(paper, fmt)} (Δ {fmt_delta(d, fmt)}, "
               f"tol ±{fmt_delta(tol, fmt).lstrip('+')}, n = {n}){note}")
    return Check(name, passed, summary, f"{metric} {fmt_delta(d, fmt)}", sel)


def _where_text(where: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items())


def _order_check(m: dict[str, Any], chk: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame,
                 tag: bool = False) -> Check:
    """An ordering check; ``tag``: prefix its lines with the figure's name (the manifest checks several)."""
    spec = next(s for s in [*m["figures"], *m["tables"]] if s["name"] == chk["figure"])
    data = records if spec.get("source", "records") == "records" else runs
    before = select(data, spec.get("where"))
    data = select(before, chk.get("where"))
    metric, order = chk["metric"], [str(o) for o in chk["order"]]
    if data.empty and not before.empty and chk.get("where"):  # e.g. only 3D Road runs count; these are a stand-in
        have = "; ".join(f"{k}: {', '.join(sorted(map(str, before[k].dropna().unique())))}"
                         for k in chk["where"] if k in before.columns)
        # the same reason for every metric of the figure: said once in the status (see artefact_status)
        why = f"only runs with {_where_text(chk['where'])} count (these runs have {have or 'none'})"
        return Check(f"{chk['figure']} / {metric}", False, why, why, measured=False)
    x = chk.get("index") or spec.get("x") or spec.get("index")
    x = x[0] if isinstance(x, list) and len(x) == 1 else x
    hue = chk.get("hue") or spec.get("hue") or spec.get("columns") or "method"
    higher = chk.get("better", "higher") == "higher"
    need = float(chk.get("min_fraction", 1.0))
    rel = " > " if higher else " < "
    name = f"{chk['figure']} / {metric}"
    label = f"{chk['figure']} {metric}" if tag else metric
    canon = canonical_methods(data, hue)[hue] if hue in data.columns else pd.Series(dtype=object)
    parts, notes = {}, []
    for o in order:
        part = data[(data[hue].astype(str) == o) | (canon.astype(str) == o)] if hue in data.columns else data.iloc[0:0]
        parts[o], note = _newest(part[part[metric].notna()] if metric in part.columns else part.iloc[0:0])
        notes.append(note)
    missing = [o for o, p in parts.items() if p.empty]
    if missing:
        return Check(name, False, f"{label}: no eligible runs of {', '.join(missing)}",
                     f"{label}: no eligible runs of {', '.join(missing)}", measured=False)
    means = {o: p.groupby(x)[metric].mean() for o, p in parts.items()}
    xs = sorted(set().union(*(set(s.index) for s in means.values())))
    held = [v for v in xs if all(v in s.index for s in means.values())
            and all((means[a][v] > means[b][v]) if higher else (means[a][v] < means[b][v])
                    for a, b in zip(order, order[1:]))]
    failed = [v for v in xs if v not in held]
    passed = bool(xs) and len(held) / len(xs) >= need - 1e-12
    seeds = sorted({int(s) for p in parts.values() for s in p["seed"].dropna()}) if "seed" in data.columns else []
    xn = chk.get("x_name") or x  # what the status calls the x values (a column named `value`: its knob)
    summary = (f"{label}: {rel.join(order)} at {len(held)}/{len(xs)} {xn} values"
               f"{f' (needs {need:.0%})' if need < 1 else ''}, n = {len(seeds)} seed(s)" + "".join(dict.fromkeys(notes)))
    delta = f"{label}: {rel.join(order)} at {len(held)}/{len(xs)} {xn} values" + (
        f", fails at {xn} = {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in failed[:6])}"
        + (" …" if len(failed) > 6 else "") if failed else "")
    used = pd.concat(parts.values())
    return Check(name, passed, summary, delta, used)


def artefact_status(m: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame) -> Status:
    """The status of one manifest's artefact from ``runs``/``records`` (with the ``recipe`` column)."""
    mine = select(runs, {"artefact": m["id"]}) if not runs.empty else runs
    ok = eligible(mine)
    recs = records
    if not records.empty and "run_dir" in records.columns:
        recs = records[records["run_dir"].isin(set(ok["run_dir"]))] if not ok.empty else records.iloc[0:0]
    if ok.empty:
        n_mod = len(mine[(mine["profile"] == "paper") & (mine["status"] == "ok")]) if not mine.empty else 0
        extra = f" ({n_mod} paper-profile run(s) of a modified recipe not counted)" if n_mod else ""
        return Status(m["id"], m["experiment"], "no paper runs" + extra, [], 0, "–")
    checks = []
    specs = m.get("reproduced_if") or []
    tag = len({c["figure"] for c in specs if "table" not in c}) > 1  # several figures: say which one
    for chk in specs:
        checks.append(_table_check(m, chk, ok) if "table" in chk else _order_check(m, chk, ok, recs, tag))
    used = pd.concat([c.runs for c in checks if not c.runs.empty] or [ok])
    seeds = {int(s) for s in used["seed"].dropna()} if "seed" in used.columns else set()
    run_dirs = set(used["run_dir"]) if "run_dir" in used.columns else set()
    src = ok[ok["run_dir"].isin(run_dirs)] if run_dirs else ok
    origins = set(src["origin"].dropna()) if "origin" in src.columns else {"outputs"}
    source = " + ".join(([reference_label(src[src["origin"] == "reference"])] if "reference" in origins else [])
                        + (["outputs"] if "outputs" in origins else [])) or "outputs"
    measured = [c for c in checks if c.measured]
    if not checks:
        status = "no criterion declared"
    elif not measured:
        status = "no eligible runs for its checks (" + "; ".join(dict.fromkeys(c.delta for c in checks)) + ")"
    elif all(c.passed for c in measured):
        status = "reproduced"
    elif any(c.passed for c in measured):
        status = "partly (Δ " + "; ".join(dict.fromkeys(c.delta for c in measured if not c.passed)) + ")"
    else:
        status = "not reproduced (Δ " + "; ".join(dict.fromkeys(c.delta for c in measured)) + ")"
    if measured and len(measured) < len(checks):
        status += f"; {len(checks) - len(measured)} check(s) without eligible runs"
    return Status(m["id"], m["experiment"], status, checks, len(seeds), source)


def status_line(s: Status) -> str:
    """The line above an artefact's section of REPRODUCTION.md."""
    if not s.n_seeds and not s.checks:
        return f"**Status: {s.status}**"
    checks = "".join(f"\n  - {'✓' if c.passed else '✗'} {c.name}: {c.summary}" for c in s.checks)
    return f"**Status: {s.status}** — n seeds {s.n_seeds}; source: {s.source}{checks}"


def status_table(statuses: list[Status]) -> str:
    """Markdown table: artefact, status, ours vs paper, n seeds, source."""
    lines = ["| Artefact | Status | Ours vs paper | n seeds | Source |", "|---|---|---|---|---|"]
    for s in statuses:
        cells = [f"`{s.artefact}` ({s.experiment})", s.status, s.versus, str(s.n_seeds), s.source]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def status_markdown(statuses: list[Status], sources: str) -> str:
    """The content of ``status.md`` (and of the README's status block)."""
    return "\n".join([
        "Reproduction status per artefact, computed by `python -m coresetlab.report` from the records "
        f"({sources}) against the tolerances declared in `experiments/*.yaml` (`reproduced_if`). Only "
        "`paper`-profile runs of the manifest's recipe count.", "", status_table(statuses), ""])


def rewrite_block(text: str, block: str) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise ValueError(f"no '{BEGIN}' … '{END}' block")
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{rest.split(END, 1)[1]}"
