"""The Dubey et al. (ECCV 2018) pipeline as a ``coreset_method`` option: which variants to run and how.

A *variant* names the stages it chains:

* ``k`` / ``s`` / ``a`` — Coreset-K / -S / -A of every layer (§3.3–3.5), rank by search (§3.6);
* ``svd`` — the SVD baseline (Denton et al. 2014: weight-only truncated SVD, same rank search);
* ``ap_<kind>`` — activation-based pruning (§3.2) first, then the coreset: AP composes with any kind;
* ``ap`` — AP alone; ``dc`` — Deep Compression of the parent alone (Han et al. 2016's row);
* any variant listed in ``dc_variants`` ends with Deep Compression (§4: "coupled with quantisation and
  Huffman coding"), which is what Table 2's storage factors include.

Deep Compression's pruning rates are a named *schedule* (``prune_schedules``: ``flat`` = one rate per
layer kind, ``han`` = Han et al. 2015's per-layer LeNet-5 rates) or an explicit dict, times a
``keep_scale`` on every layer's kept fraction. :class:`DCCurveSettings` lists the operating points
(schedule × keep scale) run per variant; one is chosen on *validation* error (never test).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from coresetlab.errors import ConfigError
from coresetlab.methods.dubey.compress import KINDS, CoresetConfig
from coresetlab.methods.dubey.deep_compression import DCConfig

LABELS = {"k": "Coreset-K", "s": "Coreset-S", "a": "Coreset-A", "svd": "SVD"}


@dataclass(frozen=True)
class Variant:
    name: str
    ap: bool
    kind: str | None
    deep_compression: bool

    @property
    def label(self) -> str:
        parts = (["AP"] if self.ap else []) + ([LABELS[self.kind]] if self.kind else [])
        if self.name == "dc":
            return "Deep Compression (Han et al. 2016)"
        return "+".join(parts) + (" + DC" if self.deep_compression else "")


def parse_variant(name: str, dc_variants: set[str]) -> Variant:
    """``ap_k`` -> AP then Coreset-K; ``k``; ``ap``; ``dc`` (see module docstring)."""
    if name == "dc":
        return Variant(name, False, None, True)
    if name == "ap":
        return Variant(name, True, None, name in dc_variants)
    ap = name.startswith("ap_")
    kind = name[3:] if ap else name
    if kind not in KINDS:
        raise ConfigError(
            f"unknown Dubey variant '{name}': use one of {', '.join(KINDS)}, 'ap_' + any of them, 'ap' or 'dc'"
        )
    return Variant(name, ap, kind, name in dc_variants)


@dataclass
class APSettings:
    """AP (§3.2). ``tol``: allowed absolute accuracy drop (0.005 = 0.5 %), measured on a fraction
    ``eval_fraction`` of the training set (paper: all of it); filters are ranked on ``score_fraction``."""

    tol: float = 0.005
    order: str = "params"
    eval_fraction: float = 1.0
    score_fraction: float = 1.0
    batch_size: int = 2000
    min_params: int = 0  # only layers with at least this many parameters (0 = every prunable layer, the paper)


@dataclass
class CoresetSettings:
    """Rank search (§3.6): ``tol`` vs the pre-coreset network on a random fraction ``sample_fraction`` of
    the training data (paper: s = 0.005, tol = 0.5 %). Coreset-A's importance (Eq. 6) is averaged over
    ``importance_fraction`` of the training data."""

    tol: float = 0.005
    sample_fraction: float = 0.005
    importance_fraction: float = 0.1
    order: str = "forward"  # paper §3.6: "for each layer in the network, starting from the shallowest";
    # "params" (ours before issue 10): descending parameter count, AP's order (§3.6 step 1)
    rank_search: str = "exponential"  # or "binary" (same answer for a monotone accuracy; see .search)
    budget: str = "cumulative"  # or "independent" (per-layer sensitivity; see .compress.coreset_compress)
    batch_size: int = 2000
    layers: list[str] | None = None  # only these layers (names); None = every conv/linear layer (the paper)
    min_params: int = 0  # only layers with at least this many parameters in the parent (0 = all, the paper)


@dataclass
class DCCurveSettings:
    """Deep Compression operating points per variant, chosen on validation data.

    Every variant in ``variants`` (that ends with Deep Compression) runs each schedule of ``schedules``
    at each ``keep_scales`` multiplier of its kept fractions (:func:`.deep_compression.deep_compress_path`:
    one pruning chain per schedule, least pruning first; the first point follows the ``deep_compression``
    recipe, each later point prunes further from the previous one and retrains ``retrain_epochs``, then
    shares weights and fine-tunes ``finetune_epochs``). ``stop_after_fail``: a chain stops after its first
    point that fails the selection bound (the chain only prunes further, so the later points are assumed
    to fail too; this saves their retraining, and the failing point is still recorded).
    The chosen point (:func:`.deep_compression.select_point`) has the largest compression factor among
    the points whose validation error is <= ``select_tol`` + the validation error of ``select_ref``
    (``pre_dc``: the variant's network before Deep Compression; ``parent``: the uncompressed network).
    Variants not listed get one point: their own ``deep_compression`` settings.
    """

    variants: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=lambda: ["flat"])
    keep_scales: list[float] = field(default_factory=lambda: [1.0])
    retrain_epochs: int | None = None  # later points; None = deep_compression.retrain_epochs
    finetune_epochs: int | None = None  # later points; None = deep_compression.finetune_epochs
    stop_after_fail: bool = True
    select_ref: str = "pre_dc"
    select_tol: float = 0.0


def _build(cls: type, values: dict[str, Any] | None, what: str):
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from None


def _fraction(x: float, what: str) -> None:
    if not 0 < float(x) <= 1:
        raise ConfigError(f"{what} must be in (0, 1], got {x}")


class DubeyMethod:
    """Settings of the whole pipeline, built from ``conf/coreset_method/dubey*.yaml``.

    ``coreset`` holds the rank-search settings (:class:`CoresetSettings`) and the algorithm settings
    shared by the kinds (:class:`.compress.CoresetConfig`: Coreset-S ``alpha`` = λ, ``alpha_grid``,
    Coreset-A ``em_max_iter``, ...).
    """

    def __init__(
        self,
        name: str = "dubey",
        variants: list[str] | tuple[str, ...] = ("ap_k", "ap_s", "ap_a"),
        dc_variants: list[str] | tuple[str, ...] = ("ap_k", "ap_s", "ap_a", "dc"),
        ap: dict[str, Any] | None = None,
        coreset: dict[str, Any] | None = None,
        deep_compression: dict[str, Any] | None = None,
        deep_compression_by_variant: dict[str, dict[str, Any]] | None = None,
        prune_schedules: dict[str, Any] | None = None,
        dc_curve: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        dc_set = set(dc_variants or ())
        self.variants = [parse_variant(v, dc_set) for v in (variants or ())]
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ConfigError(f"coreset_method.variants has duplicates: {list(variants)}")
        self.ap = _build(APSettings, ap, "coreset_method.ap")
        coreset = dict(coreset or {})
        search_keys = {f.name for f in fields(CoresetSettings)}
        self.search = _build(CoresetSettings, {k: v for k, v in coreset.items() if k in search_keys},
                             "coreset_method.coreset")
        self._algo = {k: v for k, v in coreset.items() if k not in search_keys}
        _build(CoresetConfig, {**self._algo, "kind": "k"}, "coreset_method.coreset")  # validate early
        self._dc = dict(deep_compression or {})
        self._dc_by_variant = dict(deep_compression_by_variant or {})
        self.prune_schedules = dict(prune_schedules or {})
        for name in [None, *self._dc_by_variant]:
            self.dc_config(name)  # validate early
        self.curve = _build(DCCurveSettings, dc_curve, "coreset_method.dc_curve")
        self._check_curve()
        for value, what in ((self.ap.eval_fraction, "ap.eval_fraction"), (self.ap.score_fraction, "ap.score_fraction"),
                            (self.search.sample_fraction, "coreset.sample_fraction"),
                            (self.search.importance_fraction, "coreset.importance_fraction")):
            _fraction(value, f"coreset_method.{what}")
        for value, what in ((self.ap.min_params, "ap.min_params"), (self.search.min_params, "coreset.min_params")):
            if int(value) < 0:
                raise ConfigError(f"coreset_method.{what} must be >= 0, got {value}")
        for value, what in ((self.ap.tol, "ap.tol"), (self.search.tol, "coreset.tol")):
            if not 0 <= float(value) < 1:
                raise ConfigError(f"coreset_method.{what} must be in [0, 1), got {value}")
        if self.ap.order not in ("params", "forward") or self.search.order not in ("params", "forward"):
            raise ConfigError("coreset_method.{ap,coreset}.order must be 'params' or 'forward'")
        if self.search.budget not in ("cumulative", "independent"):
            raise ConfigError(f"coreset_method.coreset.budget must be 'cumulative' or 'independent', "
                              f"got {self.search.budget!r}")
        if self.search.rank_search not in ("binary", "exponential"):
            raise ConfigError(f"coreset_method.coreset.rank_search must be 'binary' or 'exponential', "
                              f"got {self.search.rank_search!r}")
        alpha_grid = self._algo.get("alpha_grid")
        if alpha_grid is not None and (not alpha_grid or any(float(a) < 0 for a in alpha_grid)):
            raise ConfigError(f"coreset_method.coreset.alpha_grid must be a non-empty list of λ >= 0, got {alpha_grid}")

    def _check_curve(self) -> None:
        c, what = self.curve, "coreset_method.dc_curve"
        if not c.schedules or not c.keep_scales:
            raise ConfigError(f"{what}: schedules and keep_scales must be non-empty lists")
        for name in c.schedules if c.variants else ():  # no curve: schedules are not used
            self.schedule(name)
        if any(float(k) <= 0 for k in c.keep_scales):
            raise ConfigError(f"{what}.keep_scales must be > 0, got {list(c.keep_scales)}")
        if len(set(map(float, c.keep_scales))) != len(c.keep_scales):
            raise ConfigError(f"{what}.keep_scales has duplicates: {list(c.keep_scales)}")
        for e in (c.retrain_epochs, c.finetune_epochs):
            if e is not None and int(e) < 0:
                raise ConfigError(f"{what}: retrain_epochs / finetune_epochs must be >= 0 or null")
        if c.select_ref not in ("pre_dc", "parent"):
            raise ConfigError(f"{what}.select_ref must be 'pre_dc' or 'parent', got {c.select_ref!r}")
        if not 0 <= float(c.select_tol) < 1:
            raise ConfigError(f"{what}.select_tol must be in [0, 1), got {c.select_tol}")
        for name in c.variants:  # a typo is an error; a variant not run, or run without Deep Compression
            parse_variant(name, set())  # (not in dc_variants), has no operating points

    def schedule(self, name: str) -> dict[str, float]:
        """The pruning fractions of the named schedule in ``prune_schedules``."""
        if name not in self.prune_schedules:
            raise ConfigError(f"unknown Deep Compression pruning schedule '{name}': "
                              f"choose from {sorted(self.prune_schedules)} (coreset_method.prune_schedules)")
        return dict(self.prune_schedules[name])

    def dc_config(self, variant: str | None, **override: Any) -> DCConfig:
        """Deep Compression settings of ``variant``: ``deep_compression`` updated by
        ``deep_compression_by_variant[variant]`` (e.g. Han et al.'s per-layer pruning for ``dc``) and by
        ``override``; a string ``prune`` names a schedule of ``prune_schedules``."""
        values = {**self._dc, **self._dc_by_variant.get(variant or "", {}), **override}
        if isinstance(values.get("prune"), str):
            values["prune"] = self.schedule(values["prune"])
        return _build(DCConfig, values, f"coreset_method.deep_compression ({variant or 'default'})")

    def dc_schedule_name(self, variant: str | None) -> str:
        """The schedule name ``variant``'s own Deep Compression settings use (``custom`` for an explicit dict)."""
        prune = {**self._dc, **self._dc_by_variant.get(variant or "", {})}.get("prune")
        return prune if isinstance(prune, str) else "custom"

    def dc_points(self, variant: str) -> list[tuple[str, DCConfig, list[float]]]:
        """``(schedule name, DC settings, keep scales)`` per pruning chain of ``variant`` (see
        :class:`DCCurveSettings`); one chain with one point for a variant without a curve."""
        if variant not in self.curve.variants:
            cfg = self.dc_config(variant)
            return [(self.dc_schedule_name(variant), cfg, [float(cfg.keep_scale)])]
        return [(name, self.dc_config(variant, prune=name, keep_scale=1.0), [float(k) for k in self.curve.keep_scales])
                for name in self.curve.schedules]

    def coreset_config(self, kind: str, seed: int = 0) -> CoresetConfig:
        return CoresetConfig(**{**self._algo, "kind": kind, "seed": seed})

    @property
    def needs_ap(self) -> bool:
        return any(v.ap for v in self.variants)
