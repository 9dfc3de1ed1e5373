"""Custom figures of the neuron-coreset artefacts (Mussay et al., ICLR 2020), for ``builder:`` manifests.

Each builder has the aggregator's signature ``fn(manifest, runs, records, out_dir) -> list[Path]``;
``manifest["figure"]`` is the figure spec and ``manifest["profile"]`` the profile to draw.

* :func:`fig3_panels` -- Figure 3: (a) all methods, (b) the three with the lowest mean error;
* :func:`facet_by` -- one panel per value of ``spec["facet"]`` (Table 2: one per activation).
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


def _records(manifest: dict[str, Any], records: pd.DataFrame) -> pd.DataFrame:
    spec = manifest["figure"]
    if records.empty or "profile" not in records.columns:
        return records.iloc[0:0]
    rec = records[(records["profile"] == manifest["profile"]) & (records["status"] == "ok")]
    return select(rec, spec.get("where"))


def _lines(ax, data: pd.DataFrame, spec: dict[str, Any], y: str, title: str) -> None:
    x, hue = spec["x"], spec.get("hue")
    names = style.order_methods(data[hue].astype(str)) if hue else ["all"]
    for label in names:
        g = data[data[hue].astype(str) == label] if hue else data
        s = g.groupby(x)[y].agg(["mean", "std"]).reset_index().sort_values(x)
        kw = style.series(label, names)
        ax.plot(s[x], s["mean"], ms=3, lw=1.5, **kw)
        ax.fill_between(s[x], s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0), color=kw["color"],
                        alpha=0.2, lw=0)
    if spec.get("logy"):
        ax.set_yscale("log")
    if spec.get("logx"):
        ax.set_xscale("log")
    style.set_title(ax, title, fontsize=9)
    ax.set_xlabel(spec.get("xlabel", x))
    ax.set_ylabel((spec.get("ylabels") or {}).get(y, y))
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)


def _save(fig, manifest: dict[str, Any], out_dir: Path) -> list[Path]:
    base = out_dir / f"{manifest['id'].replace('/', '_')}_{manifest['figure']['name']}_{manifest['profile']}"
    style.finish(fig, f"{manifest['title']} [{manifest['figure']['name']}, profile={manifest['profile']}]")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def fig3_panels(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Figure 3: error vs fraction kept; (a) every method, (b) the ``top`` (3) lowest mean errors."""
    spec = manifest["figure"]
    data = _records(manifest, records)
    y = spec["y"] if isinstance(spec["y"], str) else spec["y"][0]
    if data.empty or y not in data.columns:
        return []
    top = data.groupby(spec["hue"])[y].mean().nsmallest(int(spec.get("top", 3))).index.tolist()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    _lines(axes[0], data, spec, y, "(a) all methods")
    labels = ", ".join(style.series(t)["label"] for t in top)
    _lines(axes[1], data[data[spec["hue"]].isin(top)], spec, y, f"(b) top {len(top)}: {labels}")
    return _save(fig, manifest, out_dir)


def facet_by(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One panel per value of ``spec['facet']`` (e.g. activation), lines by ``hue``, ``y`` vs ``x``."""
    spec = manifest["figure"]
    data = _records(manifest, records)
    y = spec["y"] if isinstance(spec["y"], str) else spec["y"][0]
    if data.empty or y not in data.columns or spec["facet"] not in data.columns:
        return []
    facets = list(dict.fromkeys(data[spec["facet"]]))
    cols = min(3, len(facets))
    rows = -(-len(facets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, f in zip(axes.flat, facets):
        _lines(ax, data[data[spec["facet"]] == f], spec, y, f"{spec['facet']} = {f}")
    for ax in list(axes.flat)[len(facets):]:
        ax.set_visible(False)
    return _save(fig, manifest, out_dir)
