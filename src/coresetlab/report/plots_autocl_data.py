"""AutoCL Figures 1 and 2: Err_opt and Err_avg (mean ± std) vs coreset size, one line per method.

Referenced from ``experiments/autocl_fig{1,2}.yaml`` as ``builder: coresetlab.report.plots_autocl_data.error_vs_size``.
Compared with the generic line figure it keeps the ±std bands readable on a log axis: where
``mean − std <= 0`` the lower edge is drawn as ``mean² / (mean + std)`` (the upper edge mirrored in log
space), which the caption states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coresetlab.report import style  # noqa: E402
from coresetlab.report.tables import select  # noqa: E402


def _bands(mean: np.ndarray, std: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray]:
    lower, upper = mean - std, mean + std
    if log:
        mirrored = np.divide(mean**2, upper, out=np.zeros_like(mean), where=upper > 0)
        lower = np.where(lower > 0, lower, mirrored)
    return lower, upper


def error_vs_size(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``<id>_<figure>_<profile>.png/.pdf`` under ``out_dir`` for the manifest's figure spec."""
    spec, profile = manifest["figure"], manifest["profile"]
    if records.empty:
        return []
    data = select(records, {"artefact": manifest["id"], "profile": profile, "status": "ok", **(spec.get("where") or {})})
    if data.empty:
        return []
    x, hue = spec.get("x", "size"), spec.get("hue", "method")
    ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
    methods = style.order_methods(data[hue].astype(str))  # learned, sensitivity, uniform: the paper's order
    fig, axes = plt.subplots(1, len(ys), figsize=(5.4 * len(ys), 4.2), squeeze=False)
    for ax, y in zip(axes[0], ys):
        for method in methods:
            sub = data[data[hue].astype(str) == method]
            g = sub.groupby(x)[y].agg(["mean", "std", "count"]).reset_index().sort_values(x)
            mean, std = g["mean"].to_numpy(float), g["std"].fillna(0.0).to_numpy(float)
            lower, upper = _bands(mean, std, bool(spec.get("logy")))
            kw = style.series(method, methods)
            kw["label"] += f" (n={int(g['count'].max())} per size)"
            ax.plot(g[x], mean, ms=3.5, lw=1.6, **kw)
            ax.fill_between(g[x], lower, upper, color=kw["color"], alpha=0.18, lw=0)
        if spec.get("logy"):
            ax.set_yscale("log")
        ax.set_xlabel(spec.get("xlabel", x))
        ax.set_ylabel((spec.get("ylabels") or {}).get(y, y))
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8, frameon=False)
    labels = ", ".join(sorted(set(map(str, data["dataset"].dropna())))) if "dataset" in data else ""
    seeds = sorted(set(data["seed"].dropna().astype(int))) if "seed" in data else []
    style.finish(fig, f"{manifest['title']} [{spec['name']}, profile={profile}; data: {labels}; seeds {seeds}]",
                 footer="mean ± 1 std over repetitions and seeds; on log axes a non-positive lower edge is "
                 "drawn as mean²/(mean+std)")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"{manifest['id'].replace('/', '_')}_{spec['name']}_{profile}"
    paths = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
