"""Every neuron-coreset experiment runs end to end under profile=smoke (real CLI, MNIST subsets)."""

from __future__ import annotations

import pytest

from conftest import load_results

NEURON_EXPERIMENTS = {
    "lenet_neuron_coreset": "neuron/table1",
    "neuron_approx": "neuron/fig2",
    "lenet200_compare": "neuron/fig3",
    "lenet_ablation": "neuron/fig4",
    "activations": "neuron/table2",
    "neuron_worst_case": "neuron/worst_case",
}


@pytest.mark.parametrize("name", sorted(NEURON_EXPERIMENTS))
def test_experiment_composes_for_every_profile(compose, name):
    for profile in ("paper", "fast", "smoke"):
        cfg = compose(f"+experiment={name}", f"profile={profile}")
        assert cfg.experiment == name and cfg.artefact == NEURON_EXPERIMENTS[name]
        assert cfg.task._target_.startswith("coresetlab.tasks.neuron.")


def _ok(run_cli, name, *extra):
    # single-threaded: these tiny MLPs run several times faster than with oversubscribed threads
    _, run_dir = run_cli(f"+experiment={name}", "profile=smoke", "torch_threads=1", *extra)
    res = load_results(run_dir)
    assert res["status"] == "ok" and res["artefact"] == NEURON_EXPERIMENTS[name] and res["profile"] == "smoke"
    return res


def test_lenet_neuron_coreset_smoke(run_cli):
    res = _ok(run_cli, "lenet_neuron_coreset")
    assert res["method"] == "neuron_coreset"
    assert res["params_before"] == 266610 and res["params_after"] == 25890  # 784-28-100-10
    assert abs(res["compression"] - (1 - 25890 / 266610)) < 1e-9
    m = res["metrics"]
    for key in ("test_err", "test_acc", "parent_test_err", "test_err_before_ft", "finetune_epochs", "val_err",
                "finetune_best_epoch", "finetune_epochs_run", "finetune_epochs_to_tol"):
        assert key in m
    assert 0.0 <= m["test_err"] <= 1.0 and m["finetune_epochs"] >= 1
    assert m["finetune_best_epoch"] == m["finetune_epochs"] - 1 and m["finetune_epochs_run"] >= m["finetune_epochs"]
    assert res["table"][0]["hidden"] == "28-100" and res["table"][0]["reweight"] == "incoming"  # the default


def test_lenet_neuron_coreset_from_scratch_smoke(run_cli):
    res = _ok(run_cli, "lenet_neuron_coreset", "coreset_method=from_scratch")
    row = res["table"][0]
    assert res["method"] == "from_scratch" and row["reweight"] == "scratch" and row["draws"] == 0
    assert res["params_after"] == 25890 and row["hidden"] == "28-100"  # the pruned width, not the parent's
    assert res["metrics"]["test_acc_before_ft"] < 0.3  # freshly initialised: chance level before training


def test_lenet_neuron_coreset_recipe_options_smoke(run_cli):
    res = _ok(run_cli, "lenet_neuron_coreset", "task.compression.reweight=incoming", "task.finetune.distill.alpha=0.5",
              "task.finetune.epochs=2",
              "task.finetune.scheduler=cosine")
    assert res["method"] == "neuron_coreset+distill"  # the distillation extension is labelled
    assert res["extra"]["reweight"] == "incoming" and res["extra"]["distill"] is True
    assert res["metrics"]["finetune_epochs_run"] == 2
    assert res["extra"]["finetune_last_lr"]["neuron_coreset+distill_r0.9"][0] < 1e-2  # cosine over the 2 epochs
    (hist,) = res["extra"]["finetune_val_acc_history"]["neuron_coreset+distill_r0.9"]
    assert len(hist) == 2


@pytest.mark.slow
def test_lenet_neuron_coreset_uniform_and_bottom_up(run_cli):
    res = _ok(run_cli, "lenet_neuron_coreset", "coreset_method=neuron_uniform", "task.compression.prune_layers=null",
              "task.compression.order=bottom_up", "task.finetune.epochs=0")
    assert res["method"] == "neuron_uniform"
    assert res["table"][0]["hidden"] != "28-100" and res["params_after"] <= 0.1 * 266610


def test_lenet_ablation_smoke(run_cli):
    res = _ok(run_cli, "lenet_ablation")
    assert {r["method"] for r in res["table"]} == {"coreset", "uniform"}
    for r in res["table"]:
        assert {"rate", "acc_before", "acc_after", "finetune_epochs"} <= set(r)


def test_neuron_approx_smoke(run_cli):
    res = _ok(run_cli, "neuron_approx")
    rows = res["table"]
    assert {r["panel"] for r in rows} == {"gaussian", "uniform", "lenet", "abs_gaussian"}
    assert {r["method"] for r in rows} == {"coreset", "uniform", "percentile"}
    assert all(r["coreset_size"] == r["size"] and r["err_avg"] >= 0 for r in rows)


def test_activations_smoke(run_cli):
    res = _ok(run_cli, "activations")
    acts = {r["activation"] for r in res["table"]}
    assert acts == {"relu", "sigmoid", "binary_step", "softplus", "soft_clipping", "gaussian"}
    assert all(r["draws"] == r["m"] for r in res["table"])  # the paper's m-draws mode
    assert "slope_relu_coreset" in res["metrics"]


def test_lenet200_compare_smoke(run_cli):
    res = _ok(run_cli, "lenet200_compare")
    methods = {r["method"] for r in res["table"]}
    assert methods == {"uniform", "svd", "l1", "l2", "l1l2", "corenet", "corenet+", "corenet++",
                       "neuron_coreset", "neuron_uniform"}
    assert res["params_before"] == 784 * 200 + 200 + 200 * 105 + 105 + 105 * 10 + 10
    for r in res["table"]:
        assert 0 < r["kept_frac"] < 0.2 and r["err"] >= 0
        # both readings of Figure 3 in every row: without fine-tuning, and after the fixed budget
        assert {"err", "test_acc", "test_acc_ft", "err_ft", "val_acc_ft"} <= set(r) and r["ft_epochs_run"] == 1
    assert res["extra"]["readings"] == ["no_finetune", "finetuned"]
    assert "acc_ft_neuron_coreset_f0.1" in res["metrics"] and "err_neuron_coreset_f0.1" in res["metrics"]


def test_neuron_worst_case_smoke(run_cli):
    res = _ok(run_cli, "neuron_worst_case")
    for r in res["table"]:
        assert r["err_worst"] >= r["err_max_test"] - 1e-9  # the search starts from the worst test images
        assert r["worst_norm"] <= res["extra"]["beta_x"] * (1 + 1e-9)


def test_bad_neuron_config_is_a_config_error(run_cli):
    proc, run_dir = run_cli("+experiment=lenet_neuron_coreset", "profile=smoke", "task.compression.rate=1.5", expect=2)
    assert "compression rate" in proc.stderr
    assert not (run_dir / "results.json").exists()
