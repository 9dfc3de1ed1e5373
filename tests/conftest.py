"""Shared fixtures: compose the real configs, run the real CLI on real data subsets.

Runs write into a per-session temporary outputs folder; the data cache (extracted MNIST, decoded
CIFAR, parents) is shared with the project's ``.cache`` unless ``CORESETLAB_CACHE`` is set, so a
second test session does not redo it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import coresetlab.resolvers  # noqa: E402,F401

# Under pytest-xdist (`make test` runs `-n 2`: one worker per core) every worker and every CLI run it starts
# uses ONE torch thread: two workers with two threads each would oversubscribe the cores (spin-waiting
# threads run at a fraction of the speed). Serial runs keep torch's default.
XDIST = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch  # noqa: E402

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def outputs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="session")
def run_cli(outputs_dir):
    """``run_cli(*overrides, env=None, expect=0)`` -> (CompletedProcess, run_dir or None).

    Runs ``python run.py <overrides>`` with outputs in a temp folder and a fixed run dir, asserts the
    exit status, and returns the run folder (``hydra.run.dir``) so tests can read results.json.
    """
    counter = {"n": 0}

    def _run(*overrides: str, env: dict | None = None, expect: int | None = 0, timeout: int = 900):
        counter["n"] += 1
        run_dir = outputs_dir / f"run{counter['n']}"
        full_env = {**os.environ, "CORESETLAB_OUTPUTS": str(outputs_dir), "WANDB_MODE": "offline",
                    "PYTHONWARNINGS": "ignore", **(env or {})}
        if XDIST:  # one thread per worker (see XDIST above)
            overrides = tuple("torch_threads=1" if o.startswith("torch_threads=") else o for o in overrides)
        args = [sys.executable, str(REPO / "run.py"), *overrides]
        if "-m" not in overrides and "--multirun" not in overrides:
            args.append(f"hydra.run.dir={run_dir}")
        proc = subprocess.run(args, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
        if expect is not None and proc.returncode != expect:
            raise AssertionError(
                f"exit {proc.returncode} != {expect} for {' '.join(overrides)}\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc, run_dir

    return _run


def load_results(run_dir: Path) -> dict:
    with open(Path(run_dir) / "results.json") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def compose():
    """``compose(*overrides)`` -> the composed DictConfig of conf/config.yaml (Hydra compose API)."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    def _c(*overrides: str):
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
            return _compose(config_name="config", overrides=list(overrides))

    return _c
