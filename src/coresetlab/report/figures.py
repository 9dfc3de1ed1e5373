"""Generic figures: mean ± std of metrics vs an x column, one line per ``hue``, one panel per metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from coresetlab.report import style  # noqa: E402
from coresetlab.report.tables import select  # noqa: E402


def line_figure(spec: dict[str, Any], data: pd.DataFrame, out_base: Path, title: str) -> list[Path]:
    """Plot ``spec['y']`` (one panel each) against ``spec['x']`` with one line per ``spec['hue']``.

    Shaded bands are ± one standard deviation over seeds/repetitions. Methods keep their look from
    :mod:`coresetlab.report.style`. Writes ``out_base``.png/.pdf.
    """
    ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
    data = select(data, spec.get("where"))
    if data.empty:
        return []
    hue = spec.get("hue")
    fig, axes = plt.subplots(1, len(ys), figsize=(5.2 * len(ys), 4.0), squeeze=False)
    for ax, y in zip(axes[0], ys):
        if y not in data.columns:
            ax.set_visible(False)
            continue
        names = style.order_methods(data[hue].astype(str)) if hue else ["all"]
        for label in names:
            g = data[data[hue].astype(str) == label] if hue else data
            s = g.groupby(spec["x"])[y].agg(["mean", "std"]).reset_index().sort_values(spec["x"])
            kw = style.series(label, names)
            ax.plot(s[spec["x"]], s["mean"], ms=3.5, lw=1.6, **kw)
            ax.fill_between(s[spec["x"]], s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0),
                            color=kw["color"], alpha=0.2, lw=0)
        if spec.get("logy"):
            ax.set_yscale("log")
        if spec.get("logx"):
            ax.set_xscale("log")
        ax.set_xlabel(spec.get("xlabel", spec["x"]))
        ax.set_ylabel((spec.get("ylabels") or {}).get(y, y))
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8, frameon=False)
    style.finish(fig, title, fontsize=10)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_base.with_suffix(".png"), out_base.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
