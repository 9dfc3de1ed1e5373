"""End to end through the real CLI on a real MNIST subset, then the report; and the bad-input paths."""

from __future__ import annotations

import math
import subprocess
import sys

from conftest import REPO, load_results


def test_lenet_autocl_smoke_end_to_end_and_report(run_cli, tmp_path):
    proc, run_dir = run_cli("+experiment=lenet_autocl", "profile=smoke")
    res = load_results(run_dir)
    assert res["status"] == "ok" and res["profile"] == "smoke" and res["seed"] == 0
    assert res["experiment"] == "lenet_autocl" and res["artefact"] == "autocl/table2"
    assert res["method"] == "autocl_student" and res["dataset"] == "mnist"
    assert res["params_before"] == 266_610 and res["params_after"] == 27_660
    assert abs(res["compression"] - (1 - 27_660 / 266_610)) < 1e-12
    m = res["metrics"]
    for key in ("test_acc", "test_loss", "val_acc", "parent_test_acc", "eps_train", "eps_test"):
        assert math.isfinite(m[key]), key
    assert m["test_acc"] > 0.2 and m["parent_test_acc"] > 0.2  # well above chance (0.1)
    assert res["versions"]["torch"] and res["wall_time_s"] > 0 and res["started_at"]
    assert (run_dir / "resolved_config.yaml").exists() and (run_dir / "logs" / "finetune" / "metrics.csv").exists()

    # the parent is reused from the cache by a second run with the same recipe
    _, run_dir2 = run_cli("+experiment=lenet_autocl", "profile=smoke", "task.match.epochs=0", "task.finetune.epochs=0")
    assert load_results(run_dir2)["extra"]["parent"]["cached"] is True

    out = tmp_path / "report"
    rep = subprocess.run([sys.executable, "-m", "coresetlab.report", str(run_dir), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    text = (out / "REPRODUCTION.md").read_text()
    assert "autocl/table2" in text and "smoke" in text and "97.97 %" in text
    assert (out / "tables" / "autocl_table2_table2_smoke.csv").exists()
    assert (out / "tables" / "autocl_table2_table2_smoke.tex").exists()


def test_failed_run_records_status_failed(run_cli):
    # a task target that raises inside the run: the record says failed, with the error
    proc, run_dir = run_cli("+experiment=lenet_autocl", "profile=smoke", "task._target_=builtins.len", expect=1)
    res = load_results(run_dir)
    assert res["status"] == "failed" and "TypeError" in res["error"] and res["metrics"] == {}
    assert "run failed" in proc.stderr


def test_unknown_experiment_fails_cleanly(run_cli):
    proc, run_dir = run_cli("+experiment=does_not_exist", expect=None)
    assert proc.returncode != 0
    assert "does_not_exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "results.json").exists()


def test_wrong_typed_override_fails_cleanly(run_cli):
    proc, run_dir = run_cli("+experiment=lenet_autocl", "profile=smoke", "seed=abc", expect=2)
    assert "error: wrong type" in proc.stderr and "seed" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "results.json").exists()


def test_unknown_key_fails_cleanly(run_cli):
    proc, run_dir = run_cli("+experiment=lenet_autocl", "no_such_key=1", expect=None)
    assert proc.returncode != 0 and "no_such_key" in proc.stderr
    assert not (run_dir / "results.json").exists()


def test_missing_data_root_fails_cleanly(run_cli, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    proc, run_dir = run_cli("+experiment=lenet_autocl", "profile=smoke", env={"CORESETLAB_DATA": str(empty),
                            "CORESETLAB_CACHE": str(tmp_path / "cache")}, expect=2)
    assert "MNIST" in proc.stderr and "train-images-idx3-ubyte.gz" in proc.stderr and str(empty) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "results.json").exists()
