"""Figures of the structured-pruning artefacts (``experiments/structured_*.yaml``), for ``builder:`` manifests.

:func:`acc_vs_cost` — test accuracy after fine-tuning against FLOPs of one 32×32 image and against the
measured CPU latency (batch 1 and the largest measured batch), log x: one line per (method, network) through
its budgets (``keep``), mean over seeds; colour and marker per method from :mod:`coresetlab.report.style`
(the same look in every figure), line style per network; each network's parent as a star (black, grey). Signature
``fn(manifest, runs, records, out_dir) -> [paths]``.
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

NET_LINESTYLE = ["-", "--", ":", "-."]
NET_PARENT_COLOR = ["#000000", "#7f7f7f", "#bdbdbd", "#525252"]
NET_LABEL = {"vgg19": "VGG-19", "resnet56": "ResNet-56", "vgg16_head950": "VGG-16 (dense head)"}


def _mine(manifest: dict[str, Any], runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "status" not in runs.columns:
        return runs.iloc[0:0]
    ok = runs[runs["status"] == "ok"]
    prof = manifest.get("profile")
    return ok[ok["profile"] == prof] if prof is not None else ok


def _latency_cols(df: pd.DataFrame) -> list[tuple[str, str]]:
    """``(small-network column, parent column)`` for batch 1 and the largest measured batch."""
    sizes = sorted(int(c[len("latency_b"):-len("_ms")]) for c in df.columns
                   if c.startswith("latency_b") and c.endswith("_ms") and c[len("latency_b"):-len("_ms")].isdigit())
    return [(f"latency_b{b}_ms", f"latency_parent_b{b}_ms") for b in dict.fromkeys([sizes[0], sizes[-1]])] \
        if sizes else []


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(dtype=float, index=df.index)


def acc_vs_cost(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Panels: test accuracy vs FLOPs, vs CPU latency at batch 1 and at the largest batch (log x)."""
    data = _mine(manifest, runs)
    if data.empty or "test_acc" not in data.columns or "flops" not in data.columns:
        return []
    data = data.copy()
    data["keep"] = _num(data, "keep")
    panels = [("flops", "flops_parent", "FLOPs per 32×32 image")]
    panels += [(c, p, f"CPU latency, batch {c[len('latency_b'):-len('_ms')]} (ms)") for c, p in _latency_cols(data)]
    nets = sorted(data["model"].astype(str).unique())
    methods = style.order_methods(data["method"].astype(str).unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (xcol, pcol, xlabel) in zip(axes[0], panels):
        for ni, net in enumerate(nets):
            dn = data[data["model"].astype(str) == net]
            ls = NET_LINESTYLE[ni % len(NET_LINESTYLE)]
            if pcol in dn.columns:
                ax.plot(_num(dn, pcol).mean(), _num(dn, "parent_test_acc").mean(), marker="*", ms=12,
                        color=NET_PARENT_COLOR[ni % len(NET_PARENT_COLOR)],
                        ls="none", label=f"parent {NET_LABEL.get(net, net)}" if ax is axes[0][0] else None)
            for method in methods:
                g = dn[dn["method"].astype(str) == method]
                if g.empty or xcol not in g.columns:
                    continue
                s = (g.assign(x=_num(g, xcol), y=_num(g, "test_acc"))
                     .groupby("keep", dropna=False)[["x", "y"]].mean().sort_values("x"))
                kw = style.series(method, methods)
                kw["label"] = f"{kw['label']} · {NET_LABEL.get(net, net)}" if ax is axes[0][0] else None
                kw["linestyle"] = ls
                ax.plot(s["x"], s["y"], ms=5, lw=1.4, **kw)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels (2×10⁰, 3×10⁰, …) overlap
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (after fine-tuning)")
        ax.grid(True, alpha=0.3, which="both")
    fig.legend(fontsize=6.5, frameon=False, loc="lower center", ncol=min(4, max(1, len(methods))),
               bbox_to_anchor=(0.5, 0.0))
    style.finish(fig, f"{manifest.get('title', manifest['id'])} [profile={manifest.get('profile')}]", fontsize=9)
    n_rows = (len(methods) * len(nets) + len(nets) + 3) // 4
    fig.subplots_adjust(bottom=min(0.45, 0.14 + 0.045 * n_rows))
    name = (manifest.get("figure") or {}).get("name", "acc_vs_cost")
    return style.save_figure(fig, out_dir, f"{manifest['id'].replace('/', '_')}_{name}_{manifest.get('profile', 'all')}")
