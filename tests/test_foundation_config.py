"""Compose the real configs: every experiment, the +experiment form, profiles and validation."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from coresetlab.config_schema import validate_config
from coresetlab.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def test_experiment_is_not_in_primary_defaults():
    primary = OmegaConf.load(REPO / "conf" / "config.yaml")
    groups = [next(iter(d)) if isinstance(d, dict) else d for d in primary.defaults]
    assert "experiment" not in groups, "`+experiment=<name>` requires experiment outside the defaults list"


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_every_experiment_composes_and_instantiates(compose, name, profile):
    cfg = compose(f"+experiment={name}", f"profile={profile}")
    validate_config(cfg)
    assert cfg.experiment == name
    assert cfg.profile.name == profile
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    task_module = importlib.import_module(cfg.task._target_.rsplit(".", 1)[0])
    for group in ("dataset", "model", "coreset_method", "optimizer"):
        node = cfg.get(group)
        if node is None or "_target_" not in node:
            continue
        if group == "coreset_method" and hasattr(task_module, "run_methods"):
            assert task_module.run_methods(cfg), f"{name}: no coreset methods"  # built by the task, with its recipe
            continue
        try:
            assert instantiate(node) is not None, f"{name}: cannot instantiate {group}"
        except InstantiationException as e:
            # a dataset whose file is not in this data root (the UCI 3D Road Network here) must say so clearly
            cause = e.__cause__
            assert group == "dataset" and isinstance(cause, DataError) and "missing" in str(cause), e


def test_by_profile_picks_the_profile_and_cli_override_wins(compose):
    assert compose("+experiment=lenet_autocl").task.finetune.epochs == 400
    assert compose("+experiment=lenet_autocl", "profile=fast").task.finetune.epochs == 20
    assert compose("+experiment=lenet_autocl", "profile=smoke").task.finetune.epochs == 1
    assert compose("+experiment=lenet_autocl", "profile=smoke", "task.finetune.epochs=7").task.finetune.epochs == 7


def test_paper_recipe_of_lenet_autocl(compose):
    t = compose("+experiment=lenet_autocl").task
    assert (t.parent.epochs, t.parent.batch_size, t.parent.optimizer.lr) == (40, 64, 1e-3)
    assert (t.match.epochs, t.match.batch_size, t.match.optimizer.lr) == (400, 500, 1e-3)
    assert (t.finetune.epochs, t.finetune.batch_size, t.finetune.optimizer.weight_decay) == (400, 128, 1e-4)


def test_wrong_type_is_a_config_error(compose):
    cfg = compose("+experiment=lenet_autocl", "dataset.batch_size=big")
    with pytest.raises(ConfigError, match="wrong type for .dataset.batch_size"):
        validate_config(cfg)


def test_missing_task_is_a_config_error(compose):
    with pytest.raises(ConfigError, match="choose an experiment"):
        validate_config(compose())


def test_unknown_profile_is_rejected(compose):
    cfg = compose("+experiment=lenet_autocl")
    cfg.profile.name = "huge"
    with pytest.raises(ConfigError, match="unknown profile"):
        validate_config(cfg)
