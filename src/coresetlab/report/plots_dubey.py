"""Figures of the Dubey et al. (ECCV 2018) artefacts, called by the report builder (``builder:`` in
``experiments/dubey_*.yaml``) as ``fn(manifest, runs, records, out_dir) -> [paths]``.

* :func:`fig7` — supplement Fig. 7: test accuracy vs fraction of retained weights per variant (coreset kinds
  with/without AP, SVD, pruning with retraining): every point, each curve's Pareto front, parent dashed.
* :func:`table5_bars` — Table 5 / supp. Table 4 as grouped bars: retained fraction per layer and variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter  # noqa: E402

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


def pareto_front(x: pd.Series, y: pd.Series) -> list[int]:
    """Positions (into ``x``/``y``) of the points no other point dominates — fewer weights (``x``) and at least
    the same accuracy (``y``) — sorted by ``x``: the curve's best accuracy at each budget."""
    order = sorted(range(len(x)), key=lambda i: (float(x.iloc[i]), -float(y.iloc[i])))
    keep, best = [], float("-inf")
    for i in order:
        if float(y.iloc[i]) > best:
            keep.append(i)
            best = float(y.iloc[i])
    return keep


def _fig7_panel(ax, data: pd.DataFrame, parent_acc: float | None) -> None:
    bases = data["variant"].astype(str).map(lambda n: style.split_series(n)[0])
    n_cfg = data.groupby(bases)["config_id"].nunique() if "config_id" in data.columns else None
    names = style.order_methods(data["variant"].astype(str))
    for variant in names:
        g = data[data["variant"].astype(str) == variant]
        base = style.split_series(variant)[0]
        shown = base if n_cfg is not None and n_cfg.get(base, 1) == 1 else variant  # one config: no suffix needed
        kw = style.series(shown, [shown] if shown == base else names)
        s = g.groupby("value").agg(x=("retained_fraction", "mean"), y=("test_acc", "mean"),
                                   e=("test_acc", "std")).sort_values("x")
        ax.errorbar(s["x"], s["y"], yerr=s["e"].fillna(0), ms=4, lw=0, elinewidth=1, capsize=2, alpha=0.8,
                    color=kw["color"], marker=kw["marker"], linestyle="none")
        front = s.iloc[pareto_front(s["x"], s["y"])]
        ax.plot(front["x"], front["y"], lw=1.5, color=kw["color"], marker=kw["marker"], ms=4,
                linestyle=kw["linestyle"], label=kw["label"])
    if parent_acc is not None:
        st = style.method_style("parent")
        ax.axhline(parent_acc, color=st.color, lw=0.8, ls=st.linestyle, label=st.label)
    ax.set_xscale("log")
    ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    ax.xaxis.set_major_locator(FixedLocator(ticks))  # a range under a decade would get crowded minor labels
    ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("fraction of retained weights (vs parent)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False, loc="lower right")


def fig7(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy vs fraction of retained weights (mean ± std over seeds), log-scale x: every sweep point as a
    marker, each curve's Pareto front as a line (a rank search's retained fraction need not fall as its
    tolerance grows). Runs of another recipe than the profile's own (ablations) get a panel of their own."""
    data = _mine(manifest, records, "sweep")
    if data.empty:
        return []
    prof = manifest.get("profile")
    own = data[data["recipe"].astype(str) == str(prof)] if "recipe" in data.columns else data
    other = data.drop(own.index)
    panels = [(f"{prof} recipe", own)] if not own.empty else []
    if not other.empty:
        recipes = "; ".join(sorted(set(other["recipe"].astype(str)))) if "recipe" in other.columns else "other configs"
        panels.append((f"not counted: {recipes}", other))
    parent_acc = None
    if not runs.empty and "parent_test_acc" in runs.columns:
        ok = runs[(runs["profile"] == prof) & (runs["status"] == "ok")]
        parent_acc = float(ok["parent_test_acc"].mean()) if not ok.empty else None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, d) in zip(axes[0], panels):
        _fig7_panel(ax, d, parent_acc)
        ax.set_title(style.wrap(title, 6.0, 8), fontsize=8)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].set_ylim(max(0.0, float(data["test_acc"].min()) - 0.02), 1.0)
    style.finish(fig, f"supp. Fig. 7, LeNet-5 / MNIST [profile={prof}]",
                 footer="markers: every sweep point, mean ± std of the test accuracy over seeds (coreset curves: "
                        "one per rank-search tolerance; pruning: one per kept fraction); lines: each curve's Pareto "
                        "front (no point with fewer weights is more accurate)")
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
