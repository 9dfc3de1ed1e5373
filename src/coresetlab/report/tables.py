"""Artefact tables: our mean ± std over seeds next to the paper's value, per profile.

Runs of different recipes (``config_id``) are never averaged together: a table row whose runs hold
several configs is split into one row per config, labelled ``"<row> [<what differs>]"``
(:mod:`coresetlab.report.variants`). One run prints its value with ``n = 1``, never ``± 0``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from coresetlab.report.variants import source_label, split_by_recipe, variant_labels, variant_labels_within

PROFILE_ORDER = ["paper", "fast", "smoke"]


def fmt_value(x: Any, fmt: str = "float") -> str:
    """Format one number: ``pct`` (fraction shown as %), ``pct3`` (% with 3 decimals), ``int``, ``sci`` or ``float``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if fmt == "pct":
        return f"{100 * x:.2f} %"
    if fmt == "pct3":
        return f"{100 * x:.3f} %"
    if fmt == "int":
        return f"{int(round(x)):,}"
    if fmt == "sci":
        return f"{x:.3g}"
    return f"{x:.4g}"


def fmt_delta(d: float, fmt: str = "float") -> str:
    """A signed difference; for fractions shown as % it is in percentage points (``-0.21 pt``)."""
    if fmt == "pct":
        return f"{100 * d:+.2f} pt" if round(100 * d, 2) else "0.00 pt"  # never "-0.00"
    return f"{'+' if d > 0 else ''}{fmt_value(d, fmt)}"


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), int(len(v))


def fmt_mean_std(mean: float, std: float, n: int, fmt: str = "float") -> str:
    """``mean ± std``; one value (``n = 1``) prints as ``value (n = 1)``, never with ``± 0``; none as ``–``."""
    if not n:
        return "–"
    if n == 1 or std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{fmt_value(mean, fmt)} (n = {n})"
    return f"{fmt_value(mean, fmt)} ± {fmt_value(std, fmt)}"


def select(df: pd.DataFrame, where: dict[str, Any] | None) -> pd.DataFrame:
    """Rows of ``df`` whose columns equal every ``where`` value (a list means 'any of')."""
    if df.empty:
        return df
    mask = pd.Series(True, index=df.index)
    for col, val in (where or {}).items():
        if col not in df.columns:
            return df.iloc[0:0]
        mask &= df[col].isin(val) if isinstance(val, list) else (df[col] == val)
    return df[mask]


def profiles_present(df: pd.DataFrame) -> list[str]:
    if df.empty or "profile" not in df.columns:
        return []
    present = set(df["profile"].dropna())
    return [p for p in PROFILE_ORDER if p in present] + sorted(present - set(PROFILE_ORDER))


def relative_values(ok: pd.DataFrame, part: pd.DataFrame, rel: dict[str, Any]) -> pd.Series | None:
    """A derived column: ``mean(ref metric over the runs matching rel['where']) / part[rel['of']]`` per run, e.g.
    Dubey et al. Table 4's "Rel. to AlexNet" = our AlexNet proxy parent's bytes / a SqueezeNet variant's bytes
    (``relative_to: {of: ap_s_bytes, where: {experiment: alexnet_dubey}, metric: parent_bytes}``); both from the
    same profile's ok runs. None when either side is missing."""
    ref = select(ok, rel.get("where"))
    if ref.empty or rel["metric"] not in ref.columns or rel["of"] not in part.columns:
        return None
    return float(ref[rel["metric"]].mean()) / part[rel["of"]]


def runs_table(spec: dict[str, Any], runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Long table: one line per (row label, recipe, metric) with ours (mean, std, n), paper value and Δ.

    ``recipe`` is the run's recipe label (``paper``, ``paper (modified: …)``); ``source`` says ``ours``
    or ``reference run (<sha>, <date>)`` for runs loaded from results/.
    """
    out = []
    ok = runs[(runs.get("status") == "ok") & (runs.get("profile") == profile)] if not runs.empty else runs
    for row in spec.get("rows", []):
        sel = select(ok, row.get("where"))
        for variant, part in split_by_recipe(sel):
            recipe = "/".join(sorted(set(part["recipe"].dropna()))) if "recipe" in part.columns and len(part) else profile
            for metric, mspec in (row.get("metrics") or {}).items():
                mspec = mspec or {}
                values = relative_values(ok, part, mspec["relative_to"]) if "relative_to" in mspec else (
                    part[metric] if metric in part.columns else None)
                mean, std, n = mean_std(values) if values is not None else (float("nan"), float("nan"), 0)
                paper = mspec.get("paper")
                out.append({
                    "row": f"{row['label']} [{variant}]" if variant else row["label"], "metric": metric,
                    "source": source_label(part) if n else "ours", "profile": profile, "recipe": recipe or profile,
                    "config_id": ", ".join(sorted(set(map(str, part["config_id"].dropna())))) if n else "",
                    "mean": mean, "std": std, "n": n, "paper": paper,
                    "delta": (mean - paper) if (paper is not None and n) else float("nan"),
                    "fmt": mspec.get("fmt", "float"),
                })
    for q in spec.get("quoted", []):
        for metric, val in (q.get("values") or {}).items():
            out.append({
                "row": q["label"], "metric": metric, "source": f"quoted ({q.get('source', 'paper')})",
                "profile": "–", "recipe": "–", "config_id": "", "mean": float("nan"), "std": float("nan"), "n": 0,
                "paper": val, "delta": float("nan"), "fmt": _fmt_of(spec, metric),
            })
    return pd.DataFrame(out)


def _fmt_of(spec: dict[str, Any], metric: str) -> str:
    """Format of a quoted value: the ``fmt`` of that metric in ``rows``, else a quoted row's ``fmt: {metric: …}``."""
    for row in spec.get("rows", []):
        m = (row.get("metrics") or {}).get(metric)
        if m and "fmt" in m:
            return m["fmt"]
    for q in spec.get("quoted", []):
        if metric in (q.get("fmt") or {}):
            return q["fmt"][metric]
    return "float"


def runs_table_markdown(t: pd.DataFrame) -> str:
    """Human table: Row | metric | ours (mean ± std, or the value with n = 1) | n | recipe | paper | Δ | source."""
    lines = ["| Row | Metric | Ours (mean ± std) | n | Recipe | Paper | Δ (ours − paper) | Source |",
             "|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        ours = fmt_mean_std(r.mean, r.std, r.n, r.fmt)
        delta = "–" if (isinstance(r.delta, float) and math.isnan(r.delta)) else fmt_delta(r.delta, r.fmt)
        lines.append(f"| {r.row} | {r.metric} | {ours} | {r.n} | {r.recipe} | "
                     f"{fmt_value(r.paper, r.fmt) if r.paper is not None else '–'} | {delta} | {r.source} |")
    return "\n".join(lines)


def records_table(spec: dict[str, Any], records: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Pivot of mean ± std of each metric by ``index`` (rows) and ``columns`` (e.g. method)."""
    if records.empty:
        return pd.DataFrame()
    rec = select(records[(records["profile"] == profile) & (records["status"] == "ok")], spec.get("where"))
    if rec.empty:
        return pd.DataFrame()
    index = spec.get("index", [])
    index = [index] if isinstance(index, str) else list(index)
    cols = spec.get("columns")
    # rows already split by experiment: only configs that share an experiment need a recipe label
    labels = variant_labels_within(rec, "experiment") if "experiment" in [*index, cols] else variant_labels(rec)
    if labels:  # runs of different recipes: one row per recipe, never pooled
        col = "variant" if "variant" not in rec.columns else "config_variant"  # Dubey records have a 'variant' column
        rec = rec.assign(**{col: rec["config_id"].fillna("?").map(labels)})
        index = [col, *index]
    if "recipe" in rec.columns and (rec["recipe"].fillna(profile) != profile).any():
        index = ["recipe", *index]  # a modified recipe says so in every output
    keys = index + ([cols] if cols else [])
    frames = []
    for metric in spec.get("metrics", []):
        if metric not in rec.columns:
            continue
        g = rec.groupby(keys, dropna=False)[metric].agg(["mean", "std", "count"]).reset_index()
        g["metric"] = metric
        frames.append(g)
    if not frames:
        return pd.DataFrame()
    long = pd.concat(frames, ignore_index=True)
    long["cell"] = [fmt_mean_std(m, s, int(c), spec.get("fmt", "sci"))
                    for m, s, c in zip(long["mean"], long["std"], long["count"])]
    if cols:
        wide = long.pivot_table(index=["metric", *index], columns=cols, values="cell", aggfunc="first")
        return wide.reset_index()
    return long


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no runs_"
    return df.to_markdown(index=False)
