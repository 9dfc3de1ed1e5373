"""Figures of the CNN artefacts (AutoCL Tables 1 and 3), called by the report builder (``builder:`` in
``experiments/autocl_table{1,3}.yaml``) as ``fn(manifest, runs, records, out_dir) -> [paths]``.

* :func:`acc_vs_cost` — test accuracy vs parameters and vs FLOPs (log x): the parent, each pruned network
  before and after fine-tuning (mean ± std over seeds), and the paper's accuracies where the manifest
  gives them (plotted at our parameter count of the same architecture; the paper gives no FLOPs).
* :func:`widths` — conv widths per layer: VGG-19, AutoCL Table 1's compressed widths, and ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from coresetlab.report import style  # noqa: E402

LABELS = {"autocl_student": "Learned coreset (AutoCL)", "network_slimming": "Network slimming"}
COLORS = {"autocl_student": "C0", "network_slimming": "C1"}
MARKERS = {"autocl_student": "o", "network_slimming": "s"}


def _mine(manifest: dict[str, Any], runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "status" not in runs.columns:
        return runs.iloc[0:0]
    ok = runs[runs["status"] == "ok"]
    prof = manifest.get("profile")
    return ok[ok["profile"] == prof] if prof is not None else ok


_save = style.save_figure  # one PNG + PDF writer for every figure module


def _base(manifest: dict[str, Any], default: str) -> str:
    name = (manifest.get("figure") or {}).get("name", default)
    return f"{manifest['id'].replace('/', '_')}_{name}_{manifest.get('profile', 'all')}"


def _paper_values(manifest: dict[str, Any], metric: str) -> list[tuple[dict[str, Any], float]]:
    """``(row where-filter, paper value)`` for every table row of the manifest giving ``metric`` a paper value."""
    out = []
    for spec in manifest.get("tables", []):
        for row in spec.get("rows", []):
            m = (row.get("metrics") or {}).get(metric) or {}
            if m.get("paper") is not None:
                out.append((row.get("where") or {}, float(m["paper"])))
    return out


def _select(df: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    for col, val in where.items():
        if col not in df.columns:
            return df.iloc[0:0]
        df = df[df[col].isin(val) if isinstance(val, list) else df[col] == val]
    return df


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(dtype=float)


def _std(s: pd.Series) -> float:
    v = s.dropna()
    return float(v.std()) if len(v) > 1 else 0.0


def acc_vs_cost(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Two panels: test accuracy vs parameters, vs FLOPs of one image (log x)."""
    data = _mine(manifest, runs)
    if data.empty or "test_acc" not in data.columns:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.2), squeeze=False)
    for ax, (xcol, pcol, xlabel) in zip(axes[0], [("params_after", "params_before", "parameters"),
                                                  ("flops", "flops_parent", "FLOPs per 32×32 image")]):
        if pcol in data.columns and "parent_test_acc" in data.columns:
            ax.errorbar(_num(data, pcol).mean(), _num(data, "parent_test_acc").mean(),
                        yerr=_std(_num(data, "parent_test_acc")), color="k", marker="*",
                        ms=11, ls="none", capsize=2, label="parent (ours)")
        for method, g in data.groupby("method"):
            if xcol not in g.columns:
                continue
            x = _num(g, xcol).mean()
            c, mk = COLORS.get(method, None), MARKERS.get(method, "o")
            label = LABELS.get(method, str(method))
            if "test_acc_before_ft" in g.columns:
                ax.errorbar(x, _num(g, "test_acc_before_ft").mean(), yerr=_std(_num(g, "test_acc_before_ft")),
                            color=c, marker=mk, mfc="none", ms=8, ls="none", capsize=2, label=f"{label}, before ft")
            ax.errorbar(x, _num(g, "test_acc").mean(), yerr=_std(_num(g, "test_acc")), color=c, marker=mk,
                        ms=8, ls="none", capsize=2, label=f"{label}, fine-tuned")
        if xcol == "params_after":  # paper accuracies at our parameter count of the same architecture
            for (where, val), xc in [(w, "params_after") for w in _paper_values(manifest, "test_acc")] + \
                                    [(w, "params_before") for w in _paper_values(manifest, "parent_test_acc")]:
                sel = _select(data, where)
                if not sel.empty and xc in sel.columns:
                    ax.plot(_num(sel, xc).mean(), val, marker="x", color="C3", ms=9, ls="none")
            ax.plot([], [], marker="x", color="C3", ls="none", label="paper (same architecture)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.grid(True, alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, frameon=False, loc="lower left")
    fig.suptitle(f"VGG-19 / CIFAR-10: accuracy vs cost [profile={manifest.get('profile')}]", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, _base(manifest, "acc_vs_cost"))


def widths(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Conv widths per layer: original VGG-19, the paper's compressed widths and ours (mean over seeds)."""
    data = _mine(manifest, runs)
    cols = sorted(c for c in data.columns if str(c).startswith("width_l")) if not data.empty else []
    if not cols:
        return []
    layers = list(range(1, len(cols) + 1))
    fig, ax = plt.subplots(figsize=(7.6, 4.0))
    paper = [next((v for _, v in _paper_values(manifest, c)), float("nan")) for c in cols]
    ax.plot(layers, paper, color="C3", marker="x", ls="--", label="AutoCL Table 1 (paper, compressed)")
    for method, g in data.groupby("method"):
        ax.plot(layers, [_num(g, c).mean() for c in cols], color=COLORS.get(method), marker=MARKERS.get(method, "o"),
                ms=4, label=f"{LABELS.get(method, method)} (ours)")
    if not records.empty and {"layer", "width_parent"} <= set(records.columns):
        rec = records[(records["profile"] == manifest.get("profile")) & (records["status"] == "ok")]
        parent = rec.groupby("layer")["width_parent"].first().reindex(layers)
        ax.plot(layers, parent.values, color="k", lw=1, label="VGG-19 (original)")
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("conv layer")
    ax.set_ylabel("channels")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"VGG-19 widths, 70 % of the channels pruned [profile={manifest.get('profile')}]", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, _base(manifest, "widths"))
