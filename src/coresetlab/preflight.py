"""Value checks of a composed config, run before any data is loaded or any model trained.

:func:`~coresetlab.config_schema.validate_config` checks types; :func:`check_values` checks *values*, so
that a wrong enumeration or an out-of-range number stops the run with one ``error:`` line (exit 2, no
``results.json``) instead of failing after the parent has trained. Three kinds of checks:

1. **Objects are built once, cheaply** (:func:`check_objects`): every coreset method (``coreset_method``,
   ``task.methods.<label>``, ``task.baselines.<label>``) is instantiated -- their constructors reject
   unknown choices (``coreset_method.method=no_such``, ``size_mode=bogus``, ``weighting=...``, a Dubey
   variant ...). Parameters left ``null`` (filled in by the task from its recipe) and parameters the
   constructor does not take (``size``: the run's grid) are left out; only a
   :class:`~coresetlab.errors.CoresetlabError` from the constructor counts (anything else is for the task to
   report). Models (``model``, ``coreset_method.model``) are built on the ``meta`` device (no memory, no
   init), optimizers on a dummy parameter, LR schedulers on a dummy optimizer and the Lightning ``trainer``
   without logger or callbacks: their ``ValueError`` / ``TypeError`` / ``MisconfigurationException``
   (``optimizer.lr=-1``, ``model.activation=bogus``, ``+optimizer.foo=1``, ``trainer.precision=bogus``,
   ``trainer=gpu`` without a GPU) are config errors.
2. **Ranges by key name** (:data:`RULES`), anywhere in the config: e.g. ``epochs`` and ``*_epochs`` >= 0,
   ``batch_size`` >= 1, ``reps`` >= 1, ``patience`` >= 0, ``lr`` > 0, ``*_fraction`` and ``fractions`` in
   (0, 1], a compression ``rate``/``rates`` in [0, 1), coreset ``size``/``sizes``/``ms`` >= 1.
3. **Enumerations by context**: ``mode`` next to a ``monitor`` is ``min``/``max``; a neuron-pruning
   ``order`` (``task.order``, ``task.compression.order``) is one of :data:`~coresetlab.methods.shared.mlp_surgery.ORDERS`.

A value a check cannot see (e.g. a rate that the chosen network cannot reach) is still reported by the
task, as a :class:`~coresetlab.errors.ConfigError`, which the runner prints the same way.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from coresetlab.errors import ConfigError, CoresetlabError, unwrap, user_error

Check = Callable[[Any], bool]


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _each(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _one_or_list(check: Check) -> Check:
    return lambda v: v is None or check(v) or _each(check)(v)


@dataclass(frozen=True)
class Rule:
    """Keys named ``names`` (or ending with ``suffix``) must satisfy ``check``; ``text`` says what is expected."""

    names: tuple[str, ...]
    check: Check
    text: str
    suffix: str | None = None

    def applies(self, key: str) -> bool:
        return key in self.names or (self.suffix is not None and key.endswith(self.suffix))


NONNEG_INT = _optional(lambda v: _int(v) and v >= 0)
POS_INT = _optional(lambda v: _int(v) and v >= 1)
FRACTION = lambda v: _number(v) and 0 < v <= 1  # noqa: E731
RATE = lambda v: _number(v) and 0 <= v < 1  # noqa: E731

RULES: tuple[Rule, ...] = (
    Rule(("epochs",), NONNEG_INT, "an integer >= 0 (or null)", suffix="_epochs"),
    Rule(("batch_size",), POS_INT, "an integer >= 1", suffix="batch_size"),
    Rule(("restarts", "prune_steps", "torch_threads", "test_limit", "subset", "train_images"), POS_INT,
         "an integer >= 1 (or null)"),
    Rule(("reps",), _one_or_list(lambda v: _int(v) and v >= 1), "an integer >= 1, a list of them, or null"),
    Rule(("train_subset", "val_subset", "test_subset"), POS_INT, "an integer >= 1 (or null)"),
    Rule(("val_size",), NONNEG_INT, "an integer >= 0"),
    Rule(("patience",), NONNEG_INT, "an integer >= 0 (or null: no early stopping)"),
    Rule(("lr",), _optional(lambda v: _number(v) and v > 0), "a number > 0"),
    Rule(("weight_decay",), _optional(lambda v: _number(v) and v >= 0), "a number >= 0"),
    Rule(("tol",), _optional(lambda v: _number(v) and v >= 0), "a number >= 0"),
    Rule(("fractions",), _optional(_each(FRACTION)), "a list of numbers in (0, 1]"),
    Rule((), _optional(FRACTION), "a number in (0, 1]", suffix="_fraction"),
    Rule(("rate",), RATE, "a compression rate (fraction of parameters removed) in [0, 1)"),
    Rule(("rates",), _optional(_each(RATE)), "a list of compression rates in [0, 1) (or null)"),
    Rule(("size",), _one_or_list(lambda v: _int(v) and v >= 1), "an integer >= 1, a list of them, or null"),
    Rule(("sizes", "ms"), lambda v: not isinstance(v, list) or _each(lambda x: _int(x) and x >= 1)(v),
         "a list of integers >= 1"),
)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    """``(path, key, value, parent)`` of every entry of a plain container (lists are leaves)."""
    if isinstance(node, dict):
        for key, value in node.items():
            p = f"{path}.{key}" if path else str(key)
            yield p, str(key), value, node
            if isinstance(value, dict):
                yield from _walk(value, p)


def check_ranges(conf: dict[str, Any]) -> None:
    """Apply :data:`RULES` and the context enumerations to a resolved config (``hydra`` left out)."""
    from coresetlab.methods.shared.mlp_surgery import ORDERS

    for path, key, value, parent in _walk({k: v for k, v in conf.items() if k != "hydra"}):
        for rule in RULES:
            if rule.applies(key) and not isinstance(value, dict) and not rule.check(value):
                raise ConfigError(f"invalid value for '{path}': {value!r}; expected {rule.text}")
        if key == "mode" and "monitor" in parent and value not in ("min", "max"):
            raise ConfigError(f"invalid value for '{path}': {value!r}; expected 'min' or 'max'")
        if key == "order" and path in ("task.order", "task.compression.order") and value not in ORDERS:
            raise ConfigError(f"invalid value for '{path}': {value!r}; expected one of {', '.join(ORDERS)}")


def _accepted(target: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without nulls and without keys ``target`` does not take (kept all if it takes ``**kw``)."""
    params = {k: v for k, v in params.items() if v is not None}
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return params
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return params
    return {k: v for k, v in params.items() if k.startswith("_") or k in sig.parameters}


def _method_nodes(conf: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    cm = conf.get("coreset_method")
    if isinstance(cm, dict) and "_target_" in cm:
        yield "coreset_method", cm
    task = conf.get("task") if isinstance(conf.get("task"), dict) else {}
    for group in ("methods", "baselines"):
        nodes = task.get(group)
        if isinstance(nodes, dict):
            for label, node in nodes.items():
                if isinstance(node, dict) and "_target_" in node:
                    yield f"task.{group}.{label}", node


def _instantiate(node: dict[str, Any], only_accepted: bool = False) -> Any:
    """``instantiate(node)``; with ``only_accepted`` the keys of :func:`_accepted` only."""
    from hydra.utils import get_object, instantiate

    return instantiate(_accepted(get_object(node["_target_"]), node) if only_accepted else node)


def _check_trainer(node: Any) -> None:
    """Build the ``pytorch_lightning.Trainer`` once (no logger, no callbacks, its device info not logged)."""
    if not isinstance(node, dict) or "_target_" not in node:
        return
    import logging

    from hydra.utils import instantiate
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from omegaconf import OmegaConf

    from coresetlab.lit.training import lightning_trainer_config, speed_options

    pl_log = logging.getLogger("pytorch_lightning")
    level = pl_log.level
    pl_log.setLevel(logging.WARNING)
    try:
        trainer_cfg = OmegaConf.create(node)
        speed_options(trainer_cfg)  # our keys (channels_last, batches_per_step) are not Trainer arguments
        instantiate(lightning_trainer_config(trainer_cfg), logger=False, enable_checkpointing=False, max_epochs=1)
    except Exception as e:
        err = unwrap(e)
        if isinstance(err, ValueError | TypeError | MisconfigurationException | CoresetlabError):
            raise _prefixed("trainer", err) from None
    finally:
        pl_log.setLevel(level)


def _prefixed(path: str, err: BaseException) -> ConfigError:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ConfigError(msg if msg.startswith(path) else f"{path}: {msg}")


def check_objects(conf: dict[str, Any]) -> None:
    """Build coreset methods, models, optimizers and schedulers once, cheaply (see the module docstring)."""
    import torch

    for path, node in _method_nodes(conf):
        try:
            _instantiate(node, only_accepted=True)
        except Exception as e:  # only bad input counts here; the task reports anything else itself
            err = user_error(e)
            if err is not None:
                raise _prefixed(path, err) from None
    cm = conf.get("coreset_method") if isinstance(conf.get("coreset_method"), dict) else {}
    for path, node in (("model", conf.get("model")), ("coreset_method.model", cm.get("model"))):
        if isinstance(node, dict) and str(node.get("_target_", "")).startswith("coresetlab.models."):
            try:
                with torch.device("meta"):
                    _instantiate(node)
            except Exception as e:
                err = unwrap(e)
                if isinstance(err, CoresetlabError | ValueError | TypeError):
                    raise _prefixed(path, err) from None
    _check_trainer(conf.get("trainer"))
    param = torch.nn.Parameter(torch.zeros(1))
    for path, _key, node, _ in _walk({k: v for k, v in conf.items() if k != "hydra"}):
        target = str(node.get("_target_", "")) if isinstance(node, dict) else ""
        if not target.startswith("torch.optim.") or not node.get("_partial_"):
            continue
        try:
            factory = _instantiate(node)
            if ".lr_scheduler." in target:
                factory(torch.optim.SGD([param], lr=0.1))
            else:
                factory([param])
        except Exception as e:
            err = unwrap(e)
            if isinstance(err, ValueError | TypeError | CoresetlabError):
                raise _prefixed(path, err) from None


def check_values(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for a wrong value of ``cfg`` (see the module docstring)."""
    conf = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(conf, dict)
    check_ranges(conf)
    check_objects(conf)
