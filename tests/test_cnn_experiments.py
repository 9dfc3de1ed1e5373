"""vgg19_autocl and vgg19_slimming: configs in every profile, one shared parent, smoke runs end to end, report."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import load_results

EXPERIMENTS = ("vgg19_autocl", "vgg19_slimming")
SLIM70 = [49, 64, 128, 128, 256, 254, 234, 198, 114, 41, 24, 11, 14, 13, 19, 104]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_composes_for_every_profile(compose, name):
    for profile in ("paper", "fast", "smoke"):
        cfg = compose(f"+experiment={name}", f"profile={profile}")
        assert cfg.experiment == name and cfg.artefact == "autocl/table3"
        assert cfg.task._target_.startswith("coresetlab.tasks.cnn.")
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def _milestone_epochs(node) -> list[int]:
    return [round(f * node.epochs) for f in node.scheduler.milestones]


def test_paper_profile_is_the_papers_recipe_and_runs_on_a_gpu_trainer(compose):
    a = compose("+experiment=vgg19_autocl", "profile=paper", "trainer=gpu")
    assert a.trainer.accelerator == "gpu" and a.trainer.precision == "32-true"
    p = a.task.parent
    assert (p.epochs, p.batch_size, p.optimizer.lr, p.optimizer.momentum, p.optimizer.weight_decay) == (160, 64, 0.1, 0.9, 1e-4)
    assert p.scheduler.kind == "multistep" and _milestone_epochs(p) == [80, 120]
    m, f = a.task.match, a.task.finetune
    assert (m.epochs, m.batch_size, m.optimizer._target_, m.optimizer.lr) == (180, 500, "torch.optim.Adam", 1e-3)
    assert _milestone_epochs(m) == [60, 120] and m.monitor == "val_eps"
    assert (f.epochs, f.batch_size, f.optimizer.lr) == (180, 64, 0.1) and _milestone_epochs(f) == [90, 135]
    assert a.dataset.train_subset is None and a.dataset.test_subset is None
    s = compose("+experiment=vgg19_slimming", "profile=paper", "trainer=gpu")
    assert s.trainer.accelerator == "gpu" and s.coreset_method.percent == 0.7 and s.coreset_method.s == 1e-4
    sp = s.task.sparsity
    assert sp.from_scratch is True and (sp.epochs, sp.batch_size, sp.optimizer.lr) == (160, 64, 0.1)
    assert _milestone_epochs(sp) == [80, 120] and s.task.finetune.epochs == 160


@pytest.mark.parametrize("profile", ["paper", "fast", "smoke"])
def test_both_experiments_share_one_parent(compose, profile):
    from coresetlab.lit.parents import parent_key, parent_recipe
    from coresetlab.tasks.cnn.common import with_steps_per_epoch

    keys = set()
    for name in EXPERIMENTS:
        cfg = compose(f"+experiment={name}", f"profile={profile}")
        train = with_steps_per_epoch(cfg.task.parent, 45000)
        keys.add(parent_key(parent_recipe(cfg.model, cfg.dataset, train, cfg.seed)))
    assert len(keys) == 1


def test_fast_profile_gives_every_method_the_same_budget(compose):
    a = compose("+experiment=vgg19_autocl", "profile=fast")
    s = compose("+experiment=vgg19_slimming", "profile=fast")
    assert a.task.match.epochs == s.task.sparsity.epochs and a.task.finetune.epochs == s.task.finetune.epochs
    assert a.task.match.train_images == s.task.sparsity.train_images == a.task.finetune.train_images \
        == s.task.finetune.train_images
    assert a.dataset.train_subset == s.dataset.train_subset
    assert s.task.sparsity.from_scratch is False  # the documented fast-profile shortcut
    assert a.trainer.precision == "bf16-mixed" and a.task.parent.scheduler.kind == "onecycle"


@pytest.fixture(scope="module")
def smoke_runs(run_cli):
    """Both experiments in the smoke profile (the second reuses the first one's cached parent)."""
    out = {}
    for name in EXPERIMENTS:
        _, run_dir = run_cli(f"+experiment={name}", "profile=smoke", "torch_threads=2")
        out[name] = (load_results(run_dir), run_dir)
    return out


def _check_cnn_record(res):
    assert res["status"] == "ok" and res["profile"] == "smoke" and res["artefact"] == "autocl/table3"
    assert res["dataset"].startswith("cifar10") and res["params_before"] == 20_035_018
    m = res["metrics"]
    for key in ("test_acc", "test_loss", "test_acc_before_ft", "test_loss_before_ft", "parent_test_acc",
                "parent_test_loss", "delta_err", "compression_ratio", "flops", "flops_parent", "flops_reduction",
                "latency_b1_ms", "latency_parent_b1_ms", "speedup_b1", "latency_b32_ms", "latency_parent_b32_ms"):
        assert key in m, key
    assert m["flops_parent"] == 796_272_640 and 0 < m["flops"] < m["flops_parent"]
    assert m["latency_b1_ms"] > 0 and m["latency_parent_b1_ms"] > 0
    assert len(res["table"]) == 16 and res["table"][0]["width_parent"] == 64
    assert res["extra"]["widths"] == [m[f"width_l{i:02d}"] for i in range(1, 17)]


def test_vgg19_autocl_smoke(smoke_runs):
    res, _ = smoke_runs["vgg19_autocl"]
    _check_cnn_record(res)
    m = res["metrics"]
    assert res["method"] == "autocl_student" and res["params_after"] == 2_366_600
    assert res["extra"]["widths"] == SLIM70 and m["flops"] == 416_652_184
    assert abs(m["compression_ratio"] - 0.70) < 1e-3 and m["match_epochs"] == 1 and m["finetune_epochs"] == 1
    assert "eps_test" in m


def test_vgg19_slimming_smoke(smoke_runs):
    res, _ = smoke_runs["vgg19_slimming"]
    _check_cnn_record(res)
    m, ex = res["metrics"], res["extra"]
    assert res["method"] == "network_slimming" and res["params_after"] < res["params_before"]
    assert 0.69 <= m["compression_ratio"] <= 0.71 and m["sparsity_epochs"] == 1
    assert ex["slimming"]["from_scratch"] is False and all(w >= 1 for w in ex["widths"])
    assert [c for c in ex["cfg"] if c != "M"] == ex["widths"] and ex["cfg"].count("M") == 4
    # one parent for both experiments: the same cache entry, reused by the second run
    assert ex["parent"]["key"] == smoke_runs["vgg19_autocl"][0]["extra"]["parent"]["key"]
    assert ex["parent"]["cached"] is True


def test_report_renders_tables_1_and_3_with_the_figures(smoke_runs, tmp_path):
    from coresetlab.report.build import build_report

    dirs = [run_dir for _, run_dir in smoke_runs.values()]
    path = build_report(dirs, tmp_path / "report")
    text = path.read_text()
    t1 = text.split("## autocl/table1")[1].split("\n## ")[0]
    t3 = text.split("## autocl/table3")[1].split("\n## ")[0]
    assert "Network slimming 70 % (ours) | width_l12" in t1 and "quoted (AutoCL Table 1" in t1
    assert "No runs found" not in t1 and "No runs found" not in t3
    assert "Learned coreset (ours) | test_acc" in t3 and "Pruning via Coresets [48]" in t3
    assert "smoke profile" in t3
    figs = {p.name for p in (tmp_path / "report" / "figures").iterdir()}
    assert {"autocl_table3_acc_vs_cost_smoke.png", "autocl_table1_widths_smoke.png"} <= figs
    assert "autocl/table1" not in text.split("Artefacts with no runs yet:")[-1].split("\n")[0]


@pytest.mark.parametrize("overrides,needle", [
    (("+experiment=vgg19_slimming", "coreset_method.percent=1.5"), "percent"),
    (("+experiment=vgg19_autocl", "task.match.scheduler.kind=cosine"), "kind"),
    (("+experiment=vgg19_autocl", "task.measure.reps=[1]"), "task.measure"),
])
def test_bad_settings_stop_before_any_training(run_cli, overrides, needle):
    proc, run_dir = run_cli(*overrides, "profile=smoke", expect=2)
    assert "error:" in proc.stderr and needle in proc.stderr
    assert not (run_dir / "results.json").exists() and "stage parent" not in (proc.stdout + proc.stderr)
