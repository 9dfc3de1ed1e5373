"""End-to-end checks of the Dubey et al. (ECCV 2018) experiments through the real CLI (smoke profile)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import load_results
from coresetlab.methods.dubey.serialize import load_model

THREADS = "torch_threads=1"


@pytest.fixture(scope="module")
def table2_run(run_cli):
    _, run_dir = run_cli("+experiment=lenet5_dubey", "profile=smoke", THREADS)
    return run_dir


def test_lenet5_dubey_smoke_end_to_end(table2_run):
    res = load_results(table2_run)
    assert res["status"] == "ok" and res["artefact"] == "dubey/table2" and res["model"] == "lenet5"
    m = res["metrics"]
    assert m["parent_params"] == 431_080
    for v in ("ap_k", "ap_s", "ap_a", "dc"):
        assert 0 <= m[f"{v}_test_err"] <= 1
        assert m[f"{v}_factor"] == pytest.approx(m["parent_bytes"] / m[f"{v}_bytes"])
        assert m[f"{v}_ms_per_batch"] > 0
    assert m["test_err"] == m["ap_k_test_err"] and res["params_after"] == m["ap_k_params"]
    # validation metrics (what searches optimise) are measured on the validation split, not copied from test
    assert m["val_err"] == m["ap_k_val_err"] and 0 <= m["val_err"] <= 1 and 0 < m["parent_val_acc"] <= 1
    stages = res["stage_times_s"]
    for s in ("parent", "ap", "coreset_ap_k", "dc_ap_k", "serialize", "runtime"):
        assert s in stages
    tables = {r["table"] for r in res["table"]}
    assert tables == {"variants", "layers", "dc_curve"}
    layers = [r for r in res["table"] if r["table"] == "layers" and r["variant"] == "ap_k"]
    assert [r["layer"] for r in layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert all(0 < r["fraction"] <= 1.0 for r in layers)


def test_serialised_size_on_disk_matches_report(table2_run):
    res = load_results(table2_run)
    for v in ("ap_k", "dc"):
        info = res["extra"]["variants"][v]["file"]
        path = Path(info["path"])
        assert path.stat().st_size == info["bytes"] == res["metrics"][f"{v}_bytes"]
        model, header = load_model(path)
        assert header["extra"]["variant"] == v
        with torch.no_grad():
            assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert (Path(table2_run) / "models" / "parent.dcnn").stat().st_size == res["metrics"]["parent_bytes"]


def test_report_builds_dubey_artefacts(table2_run, tmp_path):
    from coresetlab.report.build import build_report

    md = build_report([Path(table2_run)], tmp_path).read_text()
    assert "dubey/table2" in md and "AP+Coreset-K + DC (ours)" in md and "quoted" in md
    assert list((tmp_path / "figures").glob("dubey_table2_table5_bars_smoke.png"))


def test_lenet5_dubey_fig7_smoke(run_cli):
    _, run_dir = run_cli("+experiment=lenet5_dubey_fig7", "profile=smoke", THREADS,
                         "task.sweep.variants=[k,ap_a,svd,prune]")
    res = load_results(run_dir)
    assert res["status"] == "ok" and res["artefact"] == "dubey/fig7"
    rows = [r for r in res["table"] if r["table"] == "sweep"]
    assert {r["variant"] for r in rows} == {"k", "ap_a", "svd", "prune"}
    assert len(rows) == 4 * 2
    assert {r["knob"] for r in rows if r["variant"] == "prune"} == {"fraction"}
    assert {r["knob"] for r in rows if r["variant"] != "prune"} == {"tol"}
    for r in rows:
        assert 0 < r["retained_fraction"] <= 1 and 0 <= r["test_acc"] <= 1


def test_min_params_restricts_ap_and_the_rank_search_to_large_layers(run_cli):
    """Fast-profile restriction for the deep ResNets: only layers with >= min_params parameters in the parent
    are pruned (AP) and factorised (rank search); LeNet-5 has conv1 520, conv2 25,000, fc1 400,000 and
    fc2 5,000 parameters. Retraining on a fraction of the training set runs too."""
    _, run_dir = run_cli("+experiment=lenet5_dubey", "profile=smoke", THREADS, "coreset_method=dubey_ap_k",
                         "+coreset_method.ap.min_params=10000", "+coreset_method.coreset.min_params=10000",
                         "+task.retrain.train_fraction=0.5")
    res = load_results(run_dir)
    assert res["status"] == "ok"
    assert sorted(res["extra"]["ap"]["filters"]) == ["conv2", "fc1"]
    assert [o["name"] for o in res["extra"]["variants"]["ap_k"]["coreset"]["layers"]] == ["conv2", "fc1"]


@pytest.mark.parametrize("override", [
    "coreset_method.variants=[ap_x]",
    "task.sweep.fractions=[2.0]",
    "+coreset_method.deep_compression.bogus=1",
    "+coreset_method.ap.min_params=-1",
    "+task.retrain.train_fraction=0",
    "+task.eval_precision=fp8",
])
def test_bad_input_is_a_config_error(run_cli, override):
    proc, run_dir = run_cli("+experiment=lenet5_dubey", "profile=smoke", THREADS, override, expect=2)
    assert "error:" in proc.stderr
    assert not (Path(run_dir) / "results.json").exists()


@pytest.mark.parametrize("option,variants", [("dubey_ap_a", ["ap_a"]), ("dubey_svd", ["svd"]), ("dubey_dc", ["dc"])])
def test_single_variant_options_compose(compose, option, variants):
    from omegaconf import OmegaConf

    cfg = compose("+experiment=lenet5_dubey", f"coreset_method={option}", "profile=fast")
    cm = OmegaConf.to_container(cfg.coreset_method, resolve=True)
    assert cm["variants"] == variants and cm["name"] == option
    assert cm["coreset"]["sample_fraction"] == 0.005  # experiment settings still apply


def test_interrupted_run_resumes_finished_variants(compose, tmp_path, monkeypatch):
    """A relaunch after an interruption reads the variants finished before it back from ``ckpt/variants/``
    (their stage times included) and runs only the rest; ``ckpt/`` is removed once the run ends ok."""
    import signal

    from coresetlab.errors import RunInterrupted
    from coresetlab.runner import execute
    from coresetlab.tasks.dubey.pipeline import Pipeline

    calls: list[str] = []
    real = Pipeline.run_variant

    def interrupted_at_k(self, v):
        calls.append(v.name)
        if v.name == "k":
            raise RunInterrupted(signal.SIGTERM)
        return real(self, v)

    cfg = compose("+experiment=lenet5_dubey", "profile=smoke", THREADS, "coreset_method.variants=[svd,k]")
    monkeypatch.setattr(Pipeline, "run_variant", interrupted_at_k)
    rc, rec = execute(cfg, out_dir=tmp_path)
    assert rc == 143 and rec["status"] == "interrupted" and calls == ["svd", "k"]
    assert (tmp_path / "ckpt" / "variants" / "svd.json").is_file()
    assert not (tmp_path / "ckpt" / "variants" / "k.json").exists()

    calls.clear()
    monkeypatch.setattr(Pipeline, "run_variant", lambda self, v: (calls.append(v.name), real(self, v))[1])
    rc, rec = execute(cfg, out_dir=tmp_path)
    assert rc == 0 and rec["status"] == "ok" and calls == ["k"]  # svd was not recomputed
    assert rec["extra"]["variants"]["svd"]["resumed"] is True and "resumed" not in rec["extra"]["variants"]["k"]
    assert "coreset_svd" in rec["stage_times_s"] and "coreset_k" in rec["stage_times_s"]
    for v in ("svd", "k"):
        assert 0 <= rec["metrics"][f"{v}_test_err"] <= 1
        assert [r["layer"] for r in rec["table"] if r["table"] == "layers" and r["variant"] == v] == \
            ["conv1", "conv2", "fc1", "fc2"]
    assert not (tmp_path / "ckpt").exists()


def test_interrupted_sweep_resumes_finished_points(compose, tmp_path, monkeypatch):
    """Fig. 7's sweep keeps every finished (variant, tolerance) point in ``ckpt/sweep/``; a relaunch after an
    interruption recomputes only the points that were not finished."""
    import json
    import signal

    from coresetlab.errors import RunInterrupted
    from coresetlab.runner import execute
    from coresetlab.tasks.dubey.pipeline import Pipeline

    calls: list[float] = []
    real = Pipeline.coreset

    def counted(self, base, v, tol, interrupt_at=None):
        calls.append((v.name, tol))
        if len(calls) == interrupt_at:
            raise RunInterrupted(signal.SIGTERM)
        return real(self, base, v, tol)

    cfg = compose("+experiment=lenet5_dubey_fig7", "profile=smoke", THREADS, "task.sweep.variants=[k,svd]")
    monkeypatch.setattr(Pipeline, "coreset", lambda self, b, v, t: counted(self, b, v, t, interrupt_at=2))
    rc, _ = execute(cfg, out_dir=tmp_path)
    assert rc == 143 and calls == [("k", 0.01), ("k", 0.1)]
    saved = json.loads((tmp_path / "ckpt" / "sweep" / "k_tol_0.01.json").read_text())["result"]

    calls.clear()
    monkeypatch.setattr(Pipeline, "coreset", lambda self, b, v, t: counted(self, b, v, t))
    rc, rec = execute(cfg, out_dir=tmp_path)
    assert rc == 0 and calls == [("k", 0.1), ("svd", 0.01), ("svd", 0.1)]  # k at 0.01 was not recomputed
    rows = [r for r in rec["table"] if r["table"] == "sweep"]
    assert [(r["variant"], r["value"]) for r in rows] == [("k", 0.01), ("k", 0.1), ("svd", 0.01), ("svd", 0.1)]
    assert rows[0] == saved and rec["stage_times_s"]["sweep_k"] > 0
    assert not (tmp_path / "ckpt").exists()
