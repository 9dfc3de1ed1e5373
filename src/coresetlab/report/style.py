"""One look per method, shared by every figure of the report, and titles that fit their panel.

:data:`METHODS` maps a method's canonical name (its ``coreset_method`` name, or the label a task gives a
baseline) to a colour, marker, line style and display label, so the same method looks the same in every
figure. Records use per-experiment labels (``coreset``, ``uniform`` in ``task.methods``); the report maps
them to canonical names first (:func:`coresetlab.report.collect.canonical_methods`). A series of a
method run with a different recipe is called ``"<method> [<recipe>]"``: same colour and marker, its own
line style (:func:`series`). Unknown methods get a stable colour from a fallback palette.
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    label: str
    linestyle: str = "-"


METHODS: dict[str, Style] = {
    # AutoCL (Maalouf et al.): learned data coresets vs sampling; the learned small network
    "learned": Style("#d62728", "o", "learned coreset"),
    "autocl_student": Style("#d62728", "o", "learned coreset (AutoCL)"),
    "sensitivity": Style("#1f77b4", "s", "sensitivity sampling"),
    "uniform": Style("#2ca02c", "^", "uniform sampling"),
    # Neuron coresets (Mussay et al.) and their baselines
    "neuron_coreset": Style("#c51b7d", "o", "neuron coreset"),
    "neuron_uniform": Style("#66a61e", "v", "uniform neurons"),
    "neuron_percentile": Style("#8c564b", "D", "percentile (largest ‖p‖)"),
    "svd": Style("#17becf", "P", "SVD"),
    "l1": Style("#ff7f0e", "<", "L1 sparsification"),
    "l2": Style("#bcbd22", ">", "L2 sparsification"),
    "l1l2": Style("#7f7f7f", "h", "L1+L2 sparsification"),
    "corenet": Style("#9ecae1", "x", "CoreNet"),
    "corenet+": Style("#4292c6", "X", "CoreNet+"),
    "corenet++": Style("#08306b", "*", "CoreNet++"),
    # Dubey et al.: coreset kinds without (dashed) and with (solid) activation-based pruning
    "k": Style("#e6550d", "o", "Coreset-K", "--"),
    "s": Style("#3182bd", "s", "Coreset-S", "--"),
    "a": Style("#756bb1", "^", "Coreset-A", "--"),
    "ap_k": Style("#e6550d", "o", "AP+Coreset-K"),
    "ap_s": Style("#3182bd", "s", "AP+Coreset-S"),
    "ap_a": Style("#756bb1", "^", "AP+Coreset-A"),
    "prune": Style("#636363", "d", "pruning + retraining (Han et al.)", "-."),
    "ap": Style("#843c39", "p", "AP"),
    "dc": Style("#393b79", "H", "Deep Compression"),
    # Structured (channel / filter) pruning of CNNs (issue 12) and the CNN baselines
    "filter_coreset": Style("#6a3d9a", "o", "filter coreset"),
    "channel_uniform": Style("#33a02c", "^", "uniform channels"),
    "l1_filter": Style("#fdbf6f", "<", "L1-norm filters (Li et al.)"),
    "network_slimming": Style("#e31a1c", "s", "network slimming"),
    "slimming_no_sparsity": Style("#fb9a99", "s", "slimming (no sparsity phase)"),
    "parent": Style("#000000", "", "parent", "--"),
}
# Same method, other names: the Dubey methods' config names, the SVD baseline of Dubey (Denton et al.).
ALIASES = {"dubey_k": "k", "dubey_s": "s", "dubey_a": "a", "dubey_ap_k": "ap_k", "dubey_ap_s": "ap_s",
           "dubey_ap_a": "ap_a", "dubey_ap": "ap", "dubey_dc": "dc", "dubey_svd": "svd"}
_FALLBACK = ["#a6761d", "#e7298a", "#1b9e77", "#7570b3", "#d95f02", "#666666", "#e6ab02", "#a6cee3",
             "#fb9a99", "#cab2d6"]
_VARIANT_LS = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1))]


def split_series(name: str) -> tuple[str, str]:
    """``"neuron_coreset [lr=0.01]"`` -> ``("neuron_coreset", "lr=0.01")``; no suffix -> ``(name, "")``."""
    name = str(name)
    if name.endswith("]") and " [" in name:
        base, rest = name.split(" [", 1)
        return base, rest[:-1]
    return name, ""


def method_style(name: str) -> Style:
    """The style of a method (canonical name or alias); a stable fallback colour for unknown names."""
    base = ALIASES.get(str(name), str(name))
    if base in METHODS:
        return METHODS[base]
    return Style(_FALLBACK[zlib.crc32(base.encode()) % len(_FALLBACK)], "o", base)


def series(name: str, names: Sequence[str] = ()) -> dict:
    """Matplotlib keyword arguments (color, marker, linestyle, label) for one plotted series.

    ``names``: every series of the panel; recipe variants of one method (``"m [..]"``) get distinct line styles.
    """
    base, recipe = split_series(name)
    st = method_style(base)
    ls = st.linestyle
    if recipe:
        recipes = sorted({split_series(n)[1] for n in names if split_series(n)[0] == base and split_series(n)[1]})
        ls = _VARIANT_LS[(recipes.index(recipe) + 1) % len(_VARIANT_LS)] if recipe in recipes else ":"
    return {"color": st.color, "marker": st.marker or None, "linestyle": ls,
            "label": st.label + (f" [{recipe}]" if recipe else "")}


def order_methods(names: Sequence[str]) -> list[str]:
    """Series in the map's order (then alphabetical): legends list the methods the same way everywhere."""
    rank = {m: i for i, m in enumerate(METHODS)}
    return sorted(dict.fromkeys(map(str, names)),
                  key=lambda n: (rank.get(ALIASES.get(split_series(n)[0], split_series(n)[0]), len(rank)), n))


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points (≈ 0.55 em per char)."""
    chars = max(12, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False)) or text


def set_title(ax, text: str, fontsize: float = 9) -> None:
    """A panel title wrapped to the panel's width."""
    width = ax.get_position().width * ax.figure.get_figwidth()
    ax.set_title(wrap(text, width, fontsize), fontsize=fontsize)


def finish(fig, title: str, fontsize: float = 9, footer: str | None = None) -> None:
    """Figure title wrapped to the figure's width, a small footer, and a layout that leaves room for both."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    fig.suptitle(wrap(title, width * 0.95, fontsize), fontsize=fontsize)  # tight_layout makes room for it
    bottom = 0.0
    if footer:
        foot = wrap(footer, width * 0.95, 7)
        fig.text(0.5, 0.005, foot, ha="center", va="bottom", fontsize=7, color="0.35")
        bottom = (foot.count("\n") + 1) * 7 * 1.35 / (72 * height) + 0.005
    fig.tight_layout(rect=(0, bottom, 1, 1))


def save_figure(fig, out_dir, name: str) -> list:
    """Write ``<name>.png`` and ``<name>.pdf`` (150 dpi) into ``out_dir``, close the figure, return the paths."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
