"""Sweeps and scale-out: run identity (skip/resume), launchers, Optuna, trainer presets, wandb, reproduce."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from conftest import REPO, load_results

SMOKE = ["+experiment=lenet_autocl", "profile=smoke", "task.match.epochs=1", "task.finetune.epochs=1"]


def _compose_hydra(*overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_run_identity_ignores_cosmetic_keys_and_tracks_the_recipe(compose):
    from coresetlab.resolvers import run_id

    base = run_id(compose(*SMOKE))
    assert base == run_id(compose(*SMOKE, "logger=tensorboard", "torch_threads=1", "trainer.enable_progress_bar=false"))
    assert base != run_id(compose(*SMOKE, "seed=1"))
    assert base != run_id(compose(*SMOKE, "task.finetune.optimizer.lr=0.01"))


def test_config_id_ignores_the_seed_but_not_the_recipe(compose):
    from coresetlab.resolvers import config_id

    base = config_id(compose(*SMOKE))
    assert base == config_id(compose(*SMOKE, "seed=7"))  # dataset.seed = ${seed} follows the seed
    assert base != config_id(compose(*SMOKE, "task.finetune.optimizer.lr=0.01"))


def _fake_run(root, cfg, name, record_config_id=True):
    """A finished run folder (results.json + resolved_config.yaml) for ``cfg``, without training."""
    import json

    from coresetlab.resolvers import config_id, run_id

    d = root / name
    d.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), d / "resolved_config.yaml")
    res = {"schema": 1, "experiment": cfg.experiment, "artefact": cfg.artefact, "profile": cfg.profile.name,
           "seed": int(cfg.seed), "run_id": run_id(cfg), "method": "autocl", "model": "lenet300-100",
           "dataset": "mnist", "status": "ok", "metrics": {"test_acc": 0.9}, "table": [], "wall_time_s": 1.0}
    if record_config_id:
        res["config_id"] = config_id(cfg)
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_report_warns_when_runs_of_different_recipes_would_be_pooled(compose, tmp_path):
    from coresetlab.report.build import build_report
    from coresetlab.report.collect import load_runs

    same = tmp_path / "same"
    _fake_run(same, compose(*SMOKE, "seed=0"), "a")
    _fake_run(same, compose(*SMOKE, "seed=1"), "b", record_config_id=False)  # recomputed from its config
    runs, _ = load_runs([same])
    assert runs["config_id"].nunique() == 1
    assert "recipes pooled" not in build_report([same], tmp_path / "rep1").read_text()

    mixed = tmp_path / "mixed"
    _fake_run(mixed, compose(*SMOKE, "seed=0"), "a")
    _fake_run(mixed, compose(*SMOKE, "seed=1", "task.finetune.optimizer.lr=0.01"), "b", record_config_id=False)
    md = build_report([mixed], tmp_path / "rep2").read_text()
    assert "2 different recipes, not pooled" in md and "`task.finetune.optimizer.lr`" in md
    assert "dataset.seed" not in md  # derived from the seed: not a recipe difference


def test_report_rebuilds_its_own_tables_and_figures_but_never_empties_a_foreign_folder(compose, tmp_path):
    from coresetlab.report.build import MARKER, build_report

    runs = tmp_path / "runs"
    _fake_run(runs, compose(*SMOKE), "a")
    ours = tmp_path / "rep"
    build_report([runs], ours)  # a new folder becomes ours
    assert (ours / MARKER).exists()
    stale = ours / "figures" / "from_a_deleted_run.png"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"old")
    build_report([runs], ours)
    assert not stale.exists() and (ours / "REPRODUCTION.md").exists()

    foreign = tmp_path / "mine"
    (foreign / "figures").mkdir(parents=True)
    keep = foreign / "figures" / "my_plot.png"
    keep.write_bytes(b"mine")
    build_report([runs], foreign)
    assert keep.exists() and not (foreign / MARKER).exists()


def test_relaunched_multirun_skips_finished_runs(run_cli, tmp_path):
    env = {"CORESETLAB_OUTPUTS": str(tmp_path)}
    first, _ = run_cli("-m", *SMOKE, "seed=0,1", env=env)
    assert first.stderr.count("skipped (already done)") == 0
    results = sorted((tmp_path / "runs" / "lenet_autocl").glob("*/results.json"))
    assert len(results) == 2
    stamps = [p.stat().st_mtime_ns for p in results]
    again, _ = run_cli("-m", *SMOKE, "seed=0,1", env=env)
    assert again.stderr.count("skipped (already done)") == 2
    assert [p.stat().st_mtime_ns for p in results] == stamps  # untouched
    forced, _ = run_cli("-m", *SMOKE, "seed=0", "force=true", env=env)
    assert "skipped" not in forced.stderr


@pytest.mark.slow  # SIGKILL mid-run (60 epochs); the default suite covers resume through SIGTERM in test_reliability
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    run_dir = tmp_path / "killed"
    args = [sys.executable, str(REPO / "run.py"), "+experiment=lenet_autocl", "profile=smoke", "task.match.epochs=0",
            "task.finetune.epochs=60", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / "ckpt" / "finetune" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert ckpt.exists(), "the run never wrote a checkpoint"
    assert not (run_dir / "results.json").exists(), "killed before finishing: no result"
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    res = load_results(run_dir)
    fit = res["extra"]["fits"]["finetune"]
    # it really resumed mid-training (not after the phase had finished), and completed all epochs
    assert res["status"] == "ok" and 1 <= fit["resumed_at_epoch"] < 60 and fit["epochs"] == 60
    assert not (run_dir / "ckpt").exists()  # cleaned once the run is ok


def test_slurm_launcher_composes_and_the_job_is_picklable():
    cfg = _compose_hydra(*SMOKE, "hydra/launcher=slurm", "hydra.launcher.partition=debug")
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert launcher.partition == "debug" and launcher.gpus_per_node == 1 and launcher.array_parallelism == 64
    import cloudpickle
    import run as entry

    from coresetlab.runner import execute

    job_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for obj in (entry.main, execute, job_cfg):
        assert cloudpickle.loads(cloudpickle.dumps(obj)) is not None
    assert pickle.loads(pickle.dumps(execute)) is execute


def test_joblib_launcher_and_optuna_search_compose():
    cfg = _compose_hydra(*SMOKE, "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4")
    assert "JoblibLauncher" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.n_jobs == 4
    cfg = _compose_hydra("+experiment=lenet_autocl", "hparams_search=lenet_autocl_lr")
    assert "OptunaSweeper" in cfg.hydra.sweeper._target_
    assert cfg.optimized_metric == "val_acc"  # a validation metric, never test
    assert "task.match.optimizer.lr" in cfg.hydra.sweeper.params



def test_coreset_s_lambda_search_is_multi_objective_on_validation_data():
    cfg = _compose_hydra("+experiment=lenet5_dubey", "hparams_search=dubey_coreset_s_lam", "profile=fast")
    sweeper = cfg.hydra.sweeper
    assert "OptunaSweeper" in sweeper._target_ and "MOTPESampler" in sweeper.sampler._target_
    assert list(cfg.optimized_metric) == ["val_err", "compression_factor"]  # never a test metric
    assert list(sweeper.direction) == ["minimize", "maximize"]
    assert sweeper.params["coreset_method.coreset.alpha"].startswith("tag(log, interval(")
    assert sweeper.params["coreset_method"] == "dubey_ap_s"


def test_objective_returns_one_value_per_metric():
    from coresetlab.runner import objective

    rec = {"status": "ok", "metrics": {"val_err": 0.02, "compression_factor": 90.0}}
    assert objective(rec, "val_err") == 0.02
    assert objective(rec, ["val_err", "compression_factor"]) == (0.02, 90.0)
    failed = objective({"status": "failed", "metrics": {}}, ["val_err", "compression_factor"])
    assert all(v != v for v in failed)  # NaN: Optuna records the trial as failed
    assert objective(rec, None) is None
    with pytest.raises(KeyError):
        objective(rec, "test_err_typo")


def test_stock_plugin_launcher_names_compose():
    # the plugins' own names work too: hydra/launcher=joblib (n_jobs=-1: one job per core, 1 thread each)
    cfg = _compose_hydra(*SMOKE, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert "JoblibLauncher" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.n_jobs == 2
    cfg = _compose_hydra(*SMOKE, "hydra/launcher=submitit_slurm", "hydra.launcher.partition=long",
                         "hydra.launcher.timeout_min=30", "hydra.launcher.gpus_per_node=2",
                         "hydra.launcher.array_parallelism=8")
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node, launcher.array_parallelism) == (
        "long", 30, 2, 8)


def test_threads_are_divided_between_joblib_jobs(monkeypatch):
    from coresetlab import runner

    class _Hydra:
        def __init__(self, n_jobs):
            self.launcher = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                             "n_jobs": n_jobs}

    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    for n_jobs, expected in ((4, 4), (-1, 8), (None, 1)):
        monkeypatch.setattr("hydra.core.hydra_config.HydraConfig.get", staticmethod(lambda n=n_jobs: _Hydra(n)))
        assert runner._launcher_jobs() == expected


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_trainer_presets_compose(compose, trainer):
    cfg = compose(*SMOKE, f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    assert cfg.trainer.accelerator == ("cpu" if trainer == "cpu" else "gpu")
    if trainer == "ddp":
        assert cfg.trainer.strategy == "ddp"


def test_bf16_mixed_precision_runs_on_cpu(run_cli):
    _, run_dir = run_cli(*SMOKE, "trainer.precision=bf16-mixed")
    assert load_results(run_dir)["status"] == "ok"


def test_wandb_offline_finishes_even_when_the_task_raises(run_cli, tmp_path):
    # the fine-tuning optimizer is broken on purpose: the run fails after wandb started
    proc, run_dir = run_cli(*SMOKE, "logger=wandb", "task.finetune.optimizer._target_=builtins.len",
                            env={"WANDB_DIR": str(tmp_path)}, expect=1)
    assert load_results(run_dir)["status"] == "failed"
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert runs, "wandb wrote no offline run"


def test_reproduce_plan_lists_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "coresetlab.reproduce", "--profile", "smoke", "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, env={**__import__("os").environ,
                                                                         "CORESETLAB_OUTPUTS": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "autocl/table2" in out.stdout and "estimated" in out.stdout


def test_reproduce_plan_takes_a_runs_own_estimate(monkeypatch, tmp_path):
    """lenet5_dubey's paper plan: the Coreset-S runs carry their own (longer) estimate, the others the artefact's."""
    from coresetlab import reproduce

    monkeypatch.setenv("CORESETLAB_OUTPUTS", str(tmp_path))
    spec = OmegaConf.load(REPO / "experiments" / "dubey_table2.yaml").reproduce
    s_runs = [r for r in spec.runs if "coreset_method.variants=[ap_s,s]" in r.overrides]
    assert s_runs and all(r.get("est_minutes") for r in s_runs)
    runs, _ = reproduce.plan("paper", only=["dubey/table2"])
    est = {r.est_minutes for r in runs if "coreset_method.variants=[ap_s,s]" in r.overrides}
    rest = {r.est_minutes for r in runs if "coreset_method.variants=[ap_k,ap_a,k,a,svd,dc]" in r.overrides}
    assert est == {float(r.est_minutes.paper) for r in s_runs} and rest == {float(spec.est_minutes.paper)}
    n_planned = sum(len(r.seeds.paper) for r in spec.runs)
    assert max(est) > max(rest) and len(runs) == n_planned
    # an ablation run is planned like any other (its records are labelled modified by the report)
    assert any("coreset_method.coreset.sample_fraction=0.05" in r.overrides for r in runs)


@pytest.mark.slow
def test_coreset_s_lambda_search_runs_and_keeps_the_pareto_front(run_cli, tmp_path):
    env = {"CORESETLAB_OUTPUTS": str(tmp_path)}
    sweep_dir = tmp_path / "runs" / "lenet5_dubey"  # the experiment's folder holds its runs and the summary
    run_cli("-m", "+experiment=lenet5_dubey", "hparams_search=dubey_coreset_s_lam", "profile=smoke",
            "torch_threads=1", env=env)
    res = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert res.solutions and all(len(t["values"]) == 2 for t in res.solutions)  # the Pareto front
    runs = [load_results(p.parent) for p in sweep_dir.glob("*/results.json")]
    assert len(runs) == 2 and all(r["method"] == "dubey_ap_s" and r["status"] == "ok" for r in runs)


@pytest.mark.slow
def test_four_job_joblib_multirun_and_one_table(run_cli, tmp_path):
    env = {"CORESETLAB_OUTPUTS": str(tmp_path)}
    run_cli("-m", *SMOKE, "seed=0,1,2,3", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4", env=env)
    results = [load_results(p.parent) for p in (tmp_path / "runs" / "lenet_autocl").glob("*/results.json")]
    assert len(results) == 4 and {r["seed"] for r in results} == {0, 1, 2, 3}
    assert all(r["status"] == "ok" for r in results)
    rep = subprocess.run([sys.executable, "-m", "coresetlab.report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")],
                         cwd=REPO, capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    tables = list((tmp_path / "rep" / "tables").glob("autocl_table2_table2_smoke.csv"))
    assert len(tables) == 1
    import pandas as pd

    t = pd.read_csv(tables[0])
    assert (t.loc[t["source"] == "ours", "n"] == 4).all()
