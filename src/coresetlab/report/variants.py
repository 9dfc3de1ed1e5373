"""Which recipe a run used, and labels that keep runs of different recipes apart.

* ``recipe`` column (:func:`label_recipes`): ``paper`` for a paper-profile run of the manifest's recipe;
  ``paper (modified: key=value, …)`` when its command line changed the recipe beyond the overrides the
  manifest plans (``reproduce.runs[].overrides``, e.g. ``dataset=california_housing``);
  ``paper (overrides not recorded)`` for records written before overrides were recorded. The same for
  ``fast`` / ``smoke``. Only ``paper`` runs are reproductions (and count for the status). A recipe is
  judged per ``config_id``: if any run of a config is unmodified, the config is the manifest's recipe.
* :func:`variant_labels`: when runs of several ``config_id`` meet in one table row or figure series, each
  config gets a label from its differing overrides or config keys, and the rows are split, never pooled.
* :func:`source_label`: ``ours`` (outputs/) or ``reference run (<sha>, <date>)`` (committed in results/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from coresetlab.report.collect import differing_keys, recipe_flat
from coresetlab.resolvers import is_recipe_override

UNKNOWN_CONFIG = "?"


def planned_recipes(manifest: dict[str, Any] | None) -> list[frozenset[str]]:
    """The recipe overrides of every run the manifest plans; the experiment's own recipe (no override) first.
    An ``ablation: true`` run is planned (``coresetlab.reproduce`` runs it) but is not the paper's recipe: its runs
    stay ``paper (modified: …)``, shown apart and never counted for the status."""
    specs = ((manifest or {}).get("reproduce") or {}).get("runs") or []
    return [frozenset()] + [frozenset(o for o in spec.get("overrides", []) if is_recipe_override(o))
                            for spec in specs if not spec.get("ablation")]


def extra_overrides(recipe_overrides: Any, planned: list[frozenset[str]]) -> tuple[str, ...] | None:
    """Recipe overrides of a run beyond the closest planned recipe; None when they were not recorded."""
    if recipe_overrides is None or (isinstance(recipe_overrides, float) and pd.isna(recipe_overrides)):
        return None
    given = tuple(recipe_overrides)
    return min((tuple(o for o in given if o not in p) for p in planned), key=len)


def _recipe_label(profile: str, extras: list[tuple[str, ...] | None]) -> str:
    if any(e == () for e in extras):
        return str(profile)
    known = sorted({o for e in extras if e for o in e})
    if not known:
        return f"{profile} (overrides not recorded)"
    return f"{profile} (modified: {', '.join(known)})"


def label_recipes(runs: pd.DataFrame, records: pd.DataFrame,
                  manifests: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of ``runs`` and ``records`` with a ``recipe`` column (see the module docstring)."""
    if runs.empty:
        return runs.assign(recipe=pd.Series(dtype=object)), records
    by_id = {m["id"]: m for m in manifests}
    runs = runs.copy()
    runs["recipe"] = None
    cfg = runs["config_id"].fillna(UNKNOWN_CONFIG) if "config_id" in runs else pd.Series(UNKNOWN_CONFIG, runs.index)
    keys = pd.DataFrame({"a": runs["artefact"].fillna(""), "p": runs["profile"].fillna("?"), "c": cfg})
    for (art, profile, _), idx in keys.groupby(["a", "p", "c"]).groups.items():
        planned = planned_recipes(by_id.get(art))
        extras = [extra_overrides(runs.at[i, "recipe_overrides"], planned) for i in idx]
        runs.loc[idx, "recipe"] = _recipe_label(profile, extras)
    if not records.empty and "run_dir" in records.columns:
        records = records.copy()
        records["recipe"] = records["run_dir"].map(dict(zip(runs["run_dir"], runs["recipe"])))
    return runs, records


def eligible(runs: pd.DataFrame) -> pd.DataFrame:
    """Ok paper-profile runs of the manifest's recipe: the only ones that count as reproductions."""
    if runs.empty or "recipe" not in runs.columns:
        return runs.iloc[0:0]
    return runs[(runs["status"] == "ok") & (runs["profile"] == "paper") & (runs["recipe"] == "paper")]


def _short(v: Any, width: int = 28) -> str:
    s = str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def variant_labels(df: pd.DataFrame, max_keys: int = 3) -> dict[str, str]:
    """``{config_id: label}`` when ``df`` holds runs (or records) of more than one config, else ``{}``.

    The label lists what sets that config apart: its recorded recipe overrides when they tell the configs
    apart, else its values of the config keys that differ (at most ``max_keys``).
    """
    if df.empty or "config_id" not in df.columns:
        return {}
    cids = list(dict.fromkeys(df["config_id"].fillna(UNKNOWN_CONFIG)))
    if len(cids) < 2:
        return {}
    first = df.assign(_c=df["config_id"].fillna(UNKNOWN_CONFIG)).drop_duplicates("_c").set_index("_c")
    ovs = {c: first.at[c, "recipe_overrides"] if "recipe_overrides" in first.columns else None for c in cids}
    if all(isinstance(o, tuple) for o in ovs.values()) and len(set(ovs.values())) == len(cids):
        common = set.intersection(*(set(o) for o in ovs.values()))
        return {c: ", ".join(o for o in ovs[c] if o not in common) or "experiment defaults" for c in cids}
    flats = {c: recipe_flat(Path(first.at[c, "run_dir"])) if "run_dir" in first.columns else None for c in cids}
    keys = differing_keys([f for f in flats.values() if f is not None])
    out = {}
    for c in cids:
        f = flats[c]
        if f is None or not keys:
            out[c] = f"config {c}"
            continue
        parts = [f"{k}={_short(f.get(k, '<absent>'))}" for k in keys[:max_keys]]
        out[c] = ", ".join(parts) + (f", +{len(keys) - max_keys} more keys" if len(keys) > max_keys else "")
    return out


def variant_labels_within(df: pd.DataFrame, by: str) -> dict[str, str]:
    """:func:`variant_labels` computed inside each group of ``by`` (e.g. ``experiment``), for tables whose rows
    are already split by that column: configs alone in their group need no label (``""``); configs that share a
    group get labels from what differs between them only. ``{}`` when no group mixes configs."""
    if by not in df.columns or "config_id" not in df.columns:
        return variant_labels(df)
    out: dict[str, str] = {}
    for _, g in df.groupby(by, dropna=False):
        out.update(variant_labels(g))
    if not out:
        return {}
    return {c: out.get(c, "") for c in dict.fromkeys(df["config_id"].fillna(UNKNOWN_CONFIG))}


def split_by_recipe(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``[(variant label, rows)]``: one part per ``config_id`` (label ``""`` when there is only one)."""
    labels = variant_labels(df)
    if not labels:
        return [("", df)]
    cid = df["config_id"].fillna(UNKNOWN_CONFIG)
    return [(labels[c], df[cid == c]) for c in labels]


def with_variant(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """``df`` with ``col`` suffixed ``" [<variant>]"`` where a series would mix configs (for figure hues).

    Labels are computed per value of ``col`` (:func:`variant_labels_within`): configs that share a series get
    what differs between them; a config alone in its series keeps the plain name (e.g. the curves of split runs,
    one variant per run) — unless its recipe is a modified one (``recipe`` column), which is always named."""
    if col not in df.columns or "config_id" not in df.columns:
        return df
    cids = df["config_id"].fillna(UNKNOWN_CONFIG)
    labels = dict(variant_labels_within(df, col))
    if "recipe" in df.columns:
        modified = set(cids[df["recipe"].astype(str).str.contains("(modified", regex=False)])
        if modified - {c for c, lab in labels.items() if lab}:
            every = variant_labels(df)
            for c in modified:
                labels[c] = labels.get(c) or every.get(c) or "modified recipe"
    if not any(labels.values()):
        return df
    out = df.copy()
    out[col] = [f"{v} [{labels[c]}]" if labels.get(c) else v for v, c in zip(out[col], cids)]
    return out


def reference_label(df: pd.DataFrame) -> str:
    """``reference run (<sha>, <date>)`` for runs loaded from results/ (several: every sha, the date range)."""
    shas = sorted({str(s)[:7] + ("-dirty" if str(s).endswith("-dirty") else "")
                   for s in df.get("git_sha", pd.Series(dtype=object)).dropna()}) or ["sha unknown"]
    when = df["finished_at"] if "finished_at" in df.columns else pd.Series(dtype=object)
    dates = sorted({str(d)[:10] for d in when.dropna()}) or ["date unknown"]
    span = dates[0] if len(dates) == 1 else f"{dates[0]} – {dates[-1]}"
    return f"reference run{'s' if len(df) > 1 else ''} ({', '.join(shas)}, {span})"


def source_label(df: pd.DataFrame) -> str:
    """``ours`` (runs in outputs/), the reference label (runs from results/), or both joined by ``+``."""
    if df.empty or "origin" not in df.columns:
        return "ours"
    ref = df[df["origin"] == "reference"]
    if ref.empty:
        return "ours"
    label = reference_label(ref)
    return label if len(ref) == len(df) else f"{label} + ours ({len(df) - len(ref)} of {len(df)})"
