"""Dubey et al. Table 2 as curves: error vs storage compression factor of the Deep Compression operating points
(``dc_curve`` record rows of ``lenet5_dubey``), called by the report builder (``builder:`` in
``experiments/dubey_table2.yaml``) as ``fn(manifest, runs, records, out_dir) -> [paths]``.

One line per (variant, pruning schedule): each point is one ``keep_scale``, at the mean factor and mean error
over seeds (bars: ± one standard deviation in both). Open circles mark the points chosen on validation (one per
variant and seed); the paper's Table 2 points (``paper_points`` of the figure spec) are black crosses. Runs of
different recipes (``config_id``) are never averaged together: each gets its own lines, labelled by its id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from coresetlab.report import style  # noqa: E402
from coresetlab.report.plots_dubey import _base, _mine, _save  # noqa: E402

SCHEDULE_LS = {"flat": "--", "han": "-", "custom": ":"}


def _panel(ax, data: pd.DataFrame, y: str, several_recipes: bool) -> None:
    keys = ["config_id", "variant", "schedule"] if several_recipes else ["variant", "schedule"]
    for key, g in data.groupby(keys, dropna=False):
        cid, variant, schedule = key if several_recipes else (None, *key)
        s = g.groupby("keep_scale").agg(x=("factor", "mean"), xe=("factor", "std"), y=(y, "mean"), ye=(y, "std"))
        s = s.sort_values("x")
        st = style.method_style(variant)  # the project-wide colour of each variant (report/style.py)
        color = st.color
        name = "Deep Compression of the parent" if variant == "dc" else st.label
        label = f"{name}, {schedule} rates" + (f" [{str(cid)[:8]}]" if cid else "")
        ax.errorbar(s["x"], s["y"], xerr=s["xe"].fillna(0), yerr=s["ye"].fillna(0), color=color,
                    ls=SCHEDULE_LS.get(schedule, "-."), marker="o", ms=3.5, lw=1.4, capsize=2, label=label)
        sel = g[g["selected"].astype(bool)]
        ax.scatter(sel["factor"], sel[y], s=70, facecolors="none", edgecolors=color or "k", lw=1.2, zorder=5)


def dc_curve(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Validation and test error vs compression factor of every Deep Compression operating point."""
    data = _mine(manifest, records, "dc_curve")
    if data.empty:
        return []
    several = "config_id" in data.columns and data["config_id"].nunique(dropna=False) > 1
    spec = manifest.get("figure", {})
    ys = [y for y in ("val_err", "test_err") if y in data.columns]
    fig, axes = plt.subplots(1, len(ys), figsize=(6.2 * len(ys), 4.6), squeeze=False)
    for ax, y in zip(axes[0], ys):
        _panel(ax, data, y, several)
        if y == "test_err":
            for i, p in enumerate(spec.get("paper_points") or []):
                ax.scatter([p["factor"]], [p["test_err"]], marker="x", color="k", s=40, zorder=6)
                if p.get("label"):  # alternate above / below so that close points stay readable
                    ax.annotate(p["label"], (p["factor"], p["test_err"]), fontsize=6,
                                xytext=(3, 4 if i % 2 == 0 else -10), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("storage compression factor (parent file / compressed file)")
        ax.set_ylabel({"val_err": "validation error (selection)", "test_err": "test error"}[y])
        ax.grid(True, alpha=0.3, which="both")
    axes[0][0].legend(fontsize=6, frameon=False)
    fig.suptitle(f"Deep Compression operating points, LeNet-5 [profile={manifest.get('profile')}]; "
                 "o = chosen on validation, x = paper", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, _base(manifest, spec.get("name", "dc_curve")))
