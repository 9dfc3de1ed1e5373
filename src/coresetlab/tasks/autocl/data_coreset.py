"""Data coresets (AutoCL §4.1; Figures 1 and 2): learned vs sampled coresets for regression losses.

Pipeline of one run (``python run.py +experiment=linreg_autocl`` / ``logreg_autocl``):

1. ``data``: the tabular input set P (``cfg.dataset``, a loader of :mod:`coresetlab.data.tabular`) and
   the loss (``task.loss``);
2. ``queries``: the query set (Adam trajectories on P, cached on disk; :mod:`coresetlab.methods.autocl.queries`);
3. ``reference``: the full-data minimiser ``q*_P`` and ``f(P, q*_P)``;
4. ``coresets_<method>``: ``reps`` coresets of every size for the method under study
   (``coreset_method``) and every baseline (``task.baselines``), each a batched tensor program;
5. ``metrics``: Err_opt and Err_avg (test queries) of every coreset.

Methods: ``coreset_method`` and the entries of ``task.baselines`` are ``conf/coreset_method/*_data.yaml``
entries. Their ``null`` parameters are filled from the experiment's ``task.recipe.<method name>``
(e.g. ``task.recipe.learned.epochs``), so that any data-coreset method can be plugged into any
data-coreset experiment; a parameter set on the method itself (``coreset_method.epochs=3``) wins.

Sizes: ``coreset_method.size`` (an int or a list) restricts the run's grid, ``task.sizes`` otherwise;
every method of the run is evaluated on that grid. Random draws are seeded per (seed, method, size,
rep), so a size's numbers do not depend on the rest of the grid.

Record: ``table`` has one row per (method, size, rep) with ``err_opt`` and ``err_avg``; ``metrics``
holds their mean per (method, size) (``<method>_<measure>_m<size>``), per method over sizes
(``<method>_<measure>``), and ``paper_shape_<measure>``: the fraction of sizes at which
learned < sensitivity < uniform holds for the means (the paper's shape).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from coresetlab.data.tabular import TabularData
from coresetlab.errors import ConfigError
from coresetlab.methods.autocl.data_coresets import (
    DataCoresetMethod,
    DataLoss,
    DataProblem,
    err_avg,
    err_opt,
    evaluate,
)
from coresetlab.methods.autocl.queries import QueryRecipe, load_or_make_query_set

log = logging.getLogger("coresetlab")

MEASURES = ("err_opt", "err_avg")
PAPER_ORDER = ("learned", "sensitivity", "uniform")  # the paper's shape: smaller error first


def load_tabular(cfg: DictConfig) -> TabularData:
    """Instantiate ``cfg.dataset``; it must be a tabular loader (road3d, california_housing, htru2)."""
    target = str(cfg.dataset.get("_target_", ""))
    if not target.startswith("coresetlab.data.tabular."):
        raise ConfigError(
            f"dataset '{cfg.dataset.get('name')}' is not a tabular data set; data-coreset experiments take "
            "dataset=road3d, california_housing or htru2"
        )
    loader = instantiate(cfg.dataset, _partial_=True)  # called here, so a DataError is not wrapped by Hydra
    data = loader()
    if not isinstance(data, TabularData):
        raise ConfigError(f"dataset loader {target} did not return TabularData")
    return data


def grid_sizes(cfg: DictConfig) -> list[int]:
    """``coreset_method.size`` (int or list) if set, else ``task.sizes``; sorted, unique, positive."""
    raw = cfg.coreset_method.get("size")
    if raw is None:
        raw = cfg.task.get("sizes")
    if raw is None:
        raise ConfigError("no coreset sizes: set task.sizes or coreset_method.size")
    values = list(raw) if isinstance(raw, ListConfig | list | tuple) else [raw]
    try:
        sizes = sorted({int(v) for v in values})
    except (TypeError, ValueError):
        raise ConfigError(f"coreset sizes must be integers, got {values}") from None
    if not sizes or sizes[0] <= 0:
        raise ConfigError(f"coreset sizes must be positive, got {values}")
    return sizes


def build_method(node: DictConfig, recipe: DictConfig | None) -> DataCoresetMethod:
    """Instantiate a ``*_data.yaml`` method, filling its ``null`` parameters from ``recipe[name]``."""
    params: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    params.pop("size", None)  # the run's grid, see grid_sizes
    name = params.get("name")
    if not name or "_target_" not in params:
        raise ConfigError(f"a data-coreset method needs `_target_` and `name`, got {sorted(params)}")
    fill = OmegaConf.to_container(recipe.get(name), resolve=True) if recipe is not None and recipe.get(name) else {}
    unknown = sorted(set(fill) - set(params))  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"task.recipe.{name} sets {unknown}, which method '{name}' does not have "
                          f"(its parameters: {sorted(k for k in params if k != '_target_')})")
    for key, value in fill.items():  # type: ignore[union-attr]
        if params[key] is None:
            params[key] = value
    method = instantiate({k: v for k, v in params.items() if v is not None})
    if not isinstance(method, DataCoresetMethod):
        raise ConfigError(f"coreset method '{name}' ({params['_target_']}) is not a data-coreset method")
    return method


def run_methods(cfg: DictConfig) -> list[DataCoresetMethod]:
    """The method under study (``coreset_method``) first, then the baselines not named like it."""
    recipe = cfg.task.get("recipe")
    methods = [build_method(cfg.coreset_method, recipe)]
    for node in (cfg.task.get("baselines") or {}).values():
        if node is not None and node.get("name") not in {m.name for m in methods}:
            methods.append(build_method(node, recipe))
    return methods


def summarise(rows: Sequence[dict[str, Any]], sizes: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """Flat metrics: mean per (method, measure, size), per (method, measure), and the paper-shape fraction."""
    metrics: dict[str, float] = {}
    means: dict[tuple[str, str, int], float] = {}
    for name in names:
        for measure in MEASURES:
            per_size = []
            for m in sizes:
                vals = [r[measure] for r in rows if r["method"] == name and r["size"] == m]
                if vals:
                    means[name, measure, m] = sum(vals) / len(vals)
                    metrics[f"{name}_{measure}_m{m}"] = means[name, measure, m]
                    per_size.append(means[name, measure, m])
            if per_size:
                metrics[f"{name}_{measure}"] = sum(per_size) / len(per_size)
    if all(n in names for n in PAPER_ORDER):
        for measure in MEASURES:
            holds = [means[PAPER_ORDER[0], measure, m] < means[PAPER_ORDER[1], measure, m]
                     < means[PAPER_ORDER[2], measure, m] for m in sizes]
            metrics[f"paper_shape_{measure}"] = sum(holds) / len(holds)
    return metrics


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    with ctx.stage("data"):
        data = load_tabular(cfg)
        loss: DataLoss = instantiate(t.loss)
        problem = DataProblem.from_arrays(loss, data.x, data.y)
        sizes = grid_sizes(cfg)
        methods = run_methods(cfg)
        recipe = QueryRecipe(**OmegaConf.to_container(t.queries, resolve=True))  # type: ignore[arg-type]
    log.info("data %s: n=%d d=%d; loss %s; sizes %s; methods %s", data.label, data.n, data.d, loss.name, sizes,
             [m.name for m in methods])

    with ctx.stage("queries"):
        queries = load_or_make_query_set(problem, recipe, ctx.cache_dir, f"{data.name}:{data.fingerprint()}",
                                         progress=ctx.progress)

    with ctx.stage("reference"):
        q_opt = loss.minimize(problem.x, problem.y, problem.w)
        f_opt = evaluate(loss, problem.x, problem.y, problem.w, q_opt.unsqueeze(0))[0]

    rows: list[dict[str, Any]] = []
    method_info: dict[str, Any] = {}
    val_err_avg: dict[str, float] = {}
    for method in methods:
        with ctx.stage(f"coresets_{method.name}"):
            batch = method.build(problem, sizes, ctx.seed, queries=queries, progress=ctx.progress)
        with ctx.stage("metrics"):
            batch64 = batch.to(torch.float64)
            e_avg = err_avg(loss, batch64, queries.test, queries.f_test)
            e_val = err_avg(loss, batch64, queries.val, queries.f_val)  # for model selection / sweeps
            e_opt = err_opt(loss, batch64, problem, f_opt)
        rows += [
            {"method": method.name, "size": int(m), "rep": int(r), "err_opt": float(eo), "err_avg": float(ea)}
            for m, r, eo, ea in zip(batch.sizes.tolist(), batch.reps.tolist(), e_opt.tolist(), e_avg.tolist())
        ]
        method_info[method.name] = {"params": method.describe(), **batch.info}
        val_err_avg[method.name] = float(e_val.mean())
        log.info("%s: mean Err_avg %.3g, Err_opt %.3g over %d coresets", method.name, float(e_avg.mean()),
                 float(e_opt.mean()), len(batch))

    metrics = summarise(rows, sizes, [m.name for m in methods])
    # Err_avg on the *validation* queries (mean over the run's coresets): what sweeps optimise, never test
    metrics.update({f"{name}_val_err_avg": v for name, v in val_err_avg.items()})
    return {
        "method": methods[0].name,
        "model": f"{loss.name} regression",
        "dataset": data.label,
        "metrics": metrics,
        "table": rows,
        "extra": {
            "dataset": data.describe(),
            "loss": loss.describe(),
            "sizes": sizes,
            "methods": [m.name for m in methods],
            "queries": {**queries.sizes(), **queries.info, "recipe": OmegaConf.to_container(t.queries, resolve=True)},
            "reference": {"q_opt": q_opt.tolist(), "f_opt": float(f_opt)},
            "method_info": method_info,
        },
    }
