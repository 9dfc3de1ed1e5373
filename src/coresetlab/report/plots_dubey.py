"""Figures of the Dubey et al. (ECCV 2018) artefacts, called by the report builder (``builder:`` in
``experiments/dubey_*.yaml``) as ``fn(manifest, runs, records, out_dir) -> [paths]``.

* :func:`fig7` — supplement Fig. 7: test accuracy vs fraction of retained weights, one line per
  variant (coreset kinds with/without AP, SVD, pruning with retraining), parent accuracy dashed.
* :func:`table5_bars` — Table 5 / supp. Table 4 as grouped bars: retained fraction per layer and variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from coresetlab.report import style  # noqa: E402
from coresetlab.report.tables import select  # noqa: E402


def _mine(manifest: dict[str, Any], df: pd.DataFrame, table: str) -> pd.DataFrame:
    if df.empty or "table" not in df.columns:
        return df.iloc[0:0]
    prof = manifest.get("profile")
    sel = df[(df["table"] == table) & (df["status"] == "ok")]
    sel = sel[sel["profile"] == prof] if prof is not None else sel
    return select(sel, (manifest.get("figure") or {}).get("where"))  # the figure spec's filter, if any


_save = style.save_figure  # one PNG + PDF writer for every figure module


def _base(manifest: dict[str, Any], figure: str) -> str:
    return f"{manifest['id'].replace('/', '_')}_{figure}_{manifest.get('profile', 'all')}"


def fig7(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy vs fraction of retained weights (mean ± std over seeds), log-scale x."""
    data = _mine(manifest, records, "sweep")
    if data.empty:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    names = style.order_methods(data["variant"].astype(str))
    for variant in names:
        g = data[data["variant"].astype(str) == variant]
        s = g.groupby("value").agg(x=("retained_fraction", "mean"), y=("test_acc", "mean"),
                                   e=("test_acc", "std")).sort_values("x")
        ax.errorbar(s["x"], s["y"], yerr=s["e"].fillna(0), ms=3.5, lw=1.5, capsize=2, **style.series(variant, names))
    if not runs.empty and "parent_test_acc" in runs.columns:
        prof = runs[(runs["profile"] == manifest.get("profile")) & (runs["status"] == "ok")]
        if not prof.empty:
            st = style.method_style("parent")
            ax.axhline(float(prof["parent_test_acc"].mean()), color=st.color, lw=0.8, ls=st.linestyle, label=st.label)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of retained weights (vs parent)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(max(0.0, float(data["test_acc"].min()) - 0.02), 1.0)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    style.finish(fig, f"supp. Fig. 7, LeNet-5 / MNIST [profile={manifest.get('profile')}]")
    return _save(fig, out_dir, _base(manifest, manifest.get("figure", {}).get("name", "fig7")))


def table5_bars(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Retained fraction of parameters per layer (grouped by layer, one bar per variant), log-scale y."""
    data = _mine(manifest, records, "layers")
    if not data.empty:
        data = data[data["variant"] != "dc"]  # Deep Compression alone keeps every layer's architecture
    if data.empty:
        return []
    piv = data.groupby(["layer", "variant"])["fraction"].mean().unstack("variant")
    piv = piv[style.order_methods(piv.columns)]
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    width = 0.8 / max(1, len(piv.columns))
    for i, variant in enumerate(piv.columns):
        kw = style.series(variant, list(piv.columns))
        ax.bar([j + i * width for j in range(len(piv))], piv[variant], width=width, color=kw["color"],
               alpha=1.0 if str(variant).startswith("ap_") else 0.55, label=kw["label"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(piv))], list(piv.index))
    ax.set_yscale("log")
    ax.set_ylabel("fraction of parameters retained")
    ax.grid(True, axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    style.finish(fig, f"Table 5 / supp. Table 4 [profile={manifest.get('profile')}]", fontsize=8)
    return _save(fig, out_dir, _base(manifest, manifest.get("figure", {}).get("name", "table5")))
