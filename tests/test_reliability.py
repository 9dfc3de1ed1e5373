"""Failures are loud and nothing is lost: divergence, signals, bad values, Hydra errors (issue 14).

Through the real CLI on MNIST subsets (smoke profile); the runner directly where a task must misbehave.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, load_results

SMOKE = ["+experiment=lenet_autocl", "profile=smoke", "torch_threads=1"]
DIVERGE = ["optimizer=sgd", "optimizer.lr=1e9"]  # every loss is NaN after a few SGD steps


def _no_nan_numbers(path) -> None:
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text


def test_diverged_training_fails_with_phase_and_epoch(run_cli):
    proc, run_dir = run_cli(*SMOKE, *DIVERGE, expect=1)
    res = load_results(run_dir)
    assert res["status"] == "failed" and res["metrics"] == {}
    assert "diverged in phase 'parent' at epoch 0" in res["error"] and "nan" in res["error"]
    assert "diverged in phase 'parent' at epoch 0" in proc.stderr and "Traceback" not in proc.stderr
    _no_nan_numbers(run_dir / "results.json")


def _nan_task(cfg, ctx):
    return {"method": "m", "metrics": {"test_acc": 0.5, "test_loss": float("nan")},
            "table": [{"size": 1, "err": float("inf")}]}


def _wrapped_config_error_task(cfg, ctx):
    from hydra.utils import instantiate

    return instantiate({"_target_": "coresetlab.methods.neuron.coreset.NeuronSelector", "method": "no_such"})


def test_runner_refuses_nonfinite_results_and_unwraps_instantiation_errors(compose, tmp_path, capsys):
    from coresetlab.runner import execute

    rc, rec = execute(compose(*SMOKE, f"task._target_={__name__}._nan_task"), out_dir=tmp_path / "nan")
    assert rc == 1 and rec["status"] == "failed" and rec["metrics"] == {}
    assert "metrics.test_loss=nan" in rec["error"] and "table[0].err=inf" in rec["error"]
    assert load_results(tmp_path / "nan")["status"] == "failed"

    rc, rec = execute(compose(*SMOKE, f"task._target_={__name__}._wrapped_config_error_task"),
                      out_dir=tmp_path / "wrapped")
    err = capsys.readouterr().err
    assert rc == 2 and rec is None and "unknown neuron selection method 'no_such'" in err
    assert "InstantiationException" not in err and not (tmp_path / "wrapped" / "results.json").exists()


def _start(run_dir, *extra):
    args = [sys.executable, str(REPO / "run.py"), *SMOKE, "task.match.epochs=0", "task.finetune.epochs=25",
            f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
    return args, env, subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)


def _interrupt_mid_training(run_dir, sig):
    args, env, proc = _start(run_dir)
    ckpt = run_dir / "ckpt" / "finetune" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return args, env, proc.returncode, out, err


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_run_keeps_checkpoints_and_relaunch_resumes(tmp_path, sig, code):
    run_dir = tmp_path / "run"
    args, env, rc, _, err = _interrupt_mid_training(run_dir, sig)
    assert rc == code, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0]
    assert "relaunch the same command to resume" in lines[0] and "Traceback" not in err
    assert (run_dir / "ckpt" / "finetune" / "last.ckpt").exists()
    assert load_results(run_dir)["status"] == "interrupted"
    if sig != signal.SIGTERM:
        return
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipped" not in done.stderr
    res = load_results(run_dir)
    assert res["status"] == "ok"
    assert res["extra"]["fits"]["finetune"]["resumed_at_epoch"] >= 1
    assert not (run_dir / "ckpt").exists()


@pytest.mark.parametrize("override,expected", [
    ("coreset_method.method=no_such", "unknown neuron selection method 'no_such'"),
    ("coreset_method.size_mode=bogus", "size_mode must be one of"),
    ("coreset_method.weighting=bogus", "weighting must be one of"),
    ("task.compression.rate=1.5", "'task.compression.rate': 1.5"),
    ("optimizer.lr=-1", "optimizer.lr': -1"),
])
def test_bad_values_are_caught_before_any_data_is_loaded(run_cli, tmp_path, override, expected):
    # an empty data root: had the run loaded data, it would fail with a DataError instead
    empty = tmp_path / "nodata"
    empty.mkdir()
    proc, run_dir = run_cli("+experiment=lenet_neuron_coreset", "profile=smoke", override,
                            env={"CORESETLAB_DATA": str(empty)}, expect=2)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "stage data" not in proc.stdout
    assert not (run_dir / "results.json").exists()


@pytest.mark.parametrize("override,first,second", [
    ("coreset_method=nope", "error: unknown coreset_method 'nope'", "neuron_coreset"),
    ("profile=nope", "error: unknown profile 'nope'", "smoke"),
    ("no_such_key=1", "error: Could not override 'no_such_key'", "+no_such_key=1"),
])
def test_hydra_composition_errors_are_one_line(run_cli, override, first, second):
    proc, run_dir = run_cli("+experiment=lenet_neuron_coreset", override, expect=2)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(first) and len(lines) <= 2 and second in lines[-1], proc.stderr
    assert "HYDRA_FULL_ERROR" not in proc.stderr and not (run_dir / "results.json").exists()


def test_multirun_with_a_diverging_job_finishes_the_others_and_the_report_lists_it(run_cli, tmp_path):
    out = tmp_path / "outputs"
    run_cli("-m", *SMOKE, "task.match.epochs=1", "task.finetune.epochs=1", "optimizer=sgd",
            "optimizer.lr=1e9,0.01", env={"CORESETLAB_OUTPUTS": str(out)})
    results = sorted((out / "runs" / "lenet_autocl").glob("*/results.json"))
    status = {json.loads(p.read_text())["status"]: p.parent for p in results}
    assert sorted(status) == ["failed", "ok"]
    ok = load_results(status["ok"])
    assert all(math.isfinite(v) for v in ok["metrics"].values())
    rep = subprocess.run([sys.executable, "-m", "coresetlab.report", str(out / "runs"), "--out", str(tmp_path / "rep")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "REPRODUCTION.md").read_text()
    assert str(status["failed"]) in md and "diverged in phase 'parent'" in md


@pytest.mark.parametrize("experiment,override,expected", [
    ("lenet_neuron_coreset", "coreset_method.bound=bogus", "bound must be one of"),
    ("lenet_neuron_coreset", "task.compression.order=sideways", "task.compression.order"),
    ("lenet_neuron_coreset", "task.finetune.mode=up", "'min' or 'max'"),
    ("lenet_neuron_coreset", "task.finetune.epochs=-1", "task.finetune.epochs"),
    ("lenet_neuron_coreset", "dataset.batch_size=0", "dataset.batch_size"),
    ("lenet_neuron_coreset", "model.activation=bogus", "model: unknown activation 'bogus'"),
    ("lenet_neuron_coreset", "+optimizer.foo=1", "unexpected keyword argument 'foo'"),
    ("lenet_neuron_coreset", "trainer.precision=bogus", "trainer: Precision 'bogus' is invalid"),
    ("lenet_ablation", "task.rates=[0.5,1.0]", "task.rates"),
    ("lenet_autocl", "scheduler=multistep", None),  # a valid option passes
    ("activations", "task.methods.coreset.size_mode=bogus", "task.methods.coreset: size_mode"),
    ("linreg_autocl", "task.baselines.uniform.bound=bogus", "unknown sensitivity bound 'bogus'"),
    ("lenet5_dubey", "coreset_method.coreset.rank_search=bogus", "coreset_method.coreset.rank_search"),
    ("lenet5_dubey", "coreset_method.ap.eval_fraction=0", "eval_fraction"),
])
def test_value_errors_of_every_group_are_config_errors(compose, experiment, override, expected):
    from coresetlab.config_schema import validate_config
    from coresetlab.errors import ConfigError

    cfg = compose(f"+experiment={experiment}", "profile=smoke", override)
    if expected is None:
        validate_config(cfg)
        return
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("[", r"\[")) as info:
        validate_config(cfg)
    assert "\n" not in str(info.value)


def test_thread_limit_covers_blas_and_openmp_pools():
    """``torch_threads=n`` limits torch, the BLAS pools already loaded (numpy's OpenBLAS) and the ones loaded later
    (SciPy's OpenBLAS, scikit-learn's OpenMP): two runs side by side on two cores keep two busy threads."""
    import json
    import subprocess
    import sys

    code = ("import json, numpy, torch; from coresetlab.runner import _limit_threads; _limit_threads(1); "
            "import scipy.linalg, sklearn.decomposition; from threadpoolctl import threadpool_info; "
            "print(json.dumps([torch.get_num_threads(), [[p['internal_api'], p['num_threads']] "
            "for p in threadpool_info()]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    n_torch, pools = json.loads(out.strip().splitlines()[-1])
    assert n_torch == 1 and {api for api, _ in pools} >= {"openblas", "openmp"}
    assert all(n == 1 for _, n in pools), pools
