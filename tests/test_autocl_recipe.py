"""AutoCL Table 2: the two readings of the training recipe (``task.recipe``: the authors' code vs §4.2.1's text)."""

from __future__ import annotations

import pytest

from conftest import load_results

SMOKE = ["+experiment=lenet_autocl", "profile=smoke", "torch_threads=1", "task.match.epochs=1"]


def test_recipe_defaults_to_the_code_and_text_is_one_phase_with_l2(compose, run_cli):
    cfg = compose("+experiment=lenet_autocl")
    assert cfg.task.recipe == "code" and cfg.task.match.epochs == 400 and cfg.task.match.batch_size == 500
    assert cfg.task.finetune.epochs == 400 and "weight_decay" not in cfg.task.match.optimizer
    _, run_dir = run_cli(*SMOKE, "task.recipe=text")
    res = load_results(run_dir)
    assert res["status"] == "ok" and res["method"] == "autocl_student_text"  # never pooled with the code recipe
    assert res["extra"]["recipe"] == "text"
    assert "finetune" not in res["stage_times_s"] and "finetune_epochs" not in res["metrics"]  # one phase only
    assert res["metrics"]["match_epochs"] == 1
    assert res["extra"]["optimizers"] == {"match": {"lr": 1e-3, "weight_decay": 1e-4}}  # "with L2 regularization"
    assert 0 <= res["metrics"]["test_acc"] <= 1 and res["params_after"] == 27_660


def test_unknown_recipe_or_missing_l2_is_a_config_error(compose):
    from coresetlab.errors import ConfigError
    from coresetlab.tasks.autocl.compression import _recipe

    assert _recipe(compose(*SMOKE).task) == "code"
    for bad in (["task.recipe=paper"], ["task.recipe=text", "task.text.l2=null"], ["task.recipe=text", "task.text.l2=-1"]):
        with pytest.raises(ConfigError, match="task"):
            _recipe(compose(*SMOKE, *bad).task)
