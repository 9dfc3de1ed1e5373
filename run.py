#!/usr/bin/env python
"""Entry point:  python run.py +experiment=<name> [profile=fast|smoke] [seed=N] [key=value ...] [-m]"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

import coresetlab.resolvers  # noqa: F401  (registers ${by_profile:...}, ${data_root:}, ...)
from coresetlab.cli import run_app
from coresetlab.runner import execute, objective

os.environ.setdefault("WANDB_MODE", "offline")

INTERRUPTED = (130, 143)  # SIGINT, SIGTERM: a multirun stops too


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    rc, record = execute(cfg)
    if rc in INTERRUPTED or (rc and HydraConfig.get().mode == RunMode.RUN):
        sys.exit(rc)
    # in a multirun a failed job does not stop the others; sweepers (Optuna) get the objective
    return objective(record, cfg.get("optimized_metric"))


if __name__ == "__main__":
    run_app(main)  # Hydra's composition errors (unknown option/profile/key) -> one `error:` line, exit 2
