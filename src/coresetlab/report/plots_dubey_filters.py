"""Dubey et al. supp. Figs 8–10: the first conv layer's filters before (parent) and after Coreset-S, as image
grids, from the ``filters/<layer>_<name>.npy`` files a run of the ``*_dubey`` experiments writes
(:meth:`coresetlab.tasks.dubey.pipeline.Pipeline.save_filters`). Called by the report builder (``builder:`` in
``experiments/dubey_supp.yaml``) as ``fn(manifest, runs, records, out_dir) -> [paths]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coresetlab.report import style  # noqa: E402


def filter_grid(w: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile filters ``(n, C, h, w)`` into one image (rows × cols, near square, ``pad`` pixels apart); each filter
    is min–max scaled to [0, 1] on its own; 3 input channels give RGB, others their channel mean (grey)."""
    n, c, h, wd = w.shape
    img = w.transpose(0, 2, 3, 1) if c == 3 else w.mean(1, keepdims=True).transpose(0, 2, 3, 1)
    lo = img.reshape(n, -1).min(1)[:, None, None, None]
    hi = img.reshape(n, -1).max(1)[:, None, None, None]
    img = (img - lo) / np.where(hi > lo, hi - lo, 1.0)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.ones((rows * (h + pad) + pad, cols * (wd + pad) + pad, img.shape[-1]))
    for i in range(n):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (wd + pad): pad + q * (wd + pad) + wd] = img[i]
    return out[..., 0] if out.shape[-1] == 1 else out


def conv1_filters(manifest: dict[str, Any], runs: pd.DataFrame, records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per experiment (its first ok run of the profile): parent's conv1 | each Coreset-S variant's."""
    if runs.empty or "run_dir" not in runs.columns:
        return []
    prof = manifest.get("profile")
    ok = runs[(runs["status"] == "ok") & (runs["profile"] == prof)] if prof is not None else runs[runs["status"] == "ok"]
    paths: list[Path] = []
    for exp, g in ok.groupby("experiment"):
        folder = Path(g.sort_values("seed")["run_dir"].iloc[0]) / "filters"
        parent = sorted(folder.glob("*_parent.npy"))
        if not parent:
            continue
        layer = parent[0].name[: -len("_parent.npy")]
        panels = [("parent (original filters)", parent[0])] + [
            (f"{p.stem[len(layer) + 1:]} (coreset filters)", p) for p in sorted(folder.glob(f"{layer}_*.npy"))
            if p != parent[0]]
        if len(panels) < 2:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
        for ax, (title, p) in zip(axes[0], panels):
            w = np.load(p)
            ax.imshow(filter_grid(w), cmap="gray", interpolation="nearest")
            ax.set_title(f"{title}: {w.shape[0]}", fontsize=8)
            ax.axis("off")
        style.finish(fig, f"{layer} filters, {exp} [profile={prof}]", fontsize=9)
        name = f"{manifest['id'].replace('/', '_')}_{manifest.get('figure', {}).get('name', 'filters')}_{exp}_{prof}"
        paths += style.save_figure(fig, out_dir, name)
    return paths
