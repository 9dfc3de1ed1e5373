"""Run one composed config: validate it, call the experiment's task, write ``results.json``.

A *task* is a function ``run(cfg: DictConfig, ctx: RunContext) -> dict`` named by ``cfg.task._target_``
(e.g. ``coresetlab.tasks.autocl.compression.run``). It returns a dict with any of: ``method``,
``model``, ``dataset`` (names), ``metrics`` (flat ``{name: number}``), ``params_before``,
``params_after``, ``compression``, ``table`` (list of flat rows), ``extra`` (free-form). The runner
adds identity (experiment, artefact, profile, seed), timing, versions and the git sha.

Error policy (the README's "Error policy"; :mod:`coresetlab.errors`):

* bad input (:class:`~coresetlab.errors.CoresetlabError`: wrong config value, missing/corrupt data, also
  when Hydra's ``InstantiationException`` wraps it) -> one ``error:`` line on stderr, exit status 2,
  **no** ``results.json``; values the config alone shows to be wrong are caught by
  :func:`~coresetlab.config_schema.validate_config` before any data is loaded;
* a diverged training phase (:class:`~coresetlab.errors.TrainingDiverged`) or a NaN/inf metric or table
  value (:class:`~coresetlab.errors.NonFiniteResult`) -> ``status: failed`` with the reason, exit 1;
* anything else raised by the task -> ``results.json`` with ``status: failed`` and the error, the
  traceback in the run's log, exit status 1 (in a multirun the other jobs go on);
* SIGTERM / SIGINT (:mod:`coresetlab.interrupts`) -> one line saying how to resume, ``status:
  interrupted``, checkpoints kept, exit status 143 / 130 (a multirun stops); relaunching resumes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf

from coresetlab import records
from coresetlab.config_schema import validate_config
from coresetlab.errors import CoresetlabError, NonFiniteResult, RunFailure, RunInterrupted, user_error
from coresetlab.interrupts import interruptible_call, resume_hint
from coresetlab.resolvers import config_id, run_id

log = logging.getLogger("coresetlab")
T = TypeVar("T")


@dataclass
class RunContext:
    """What a task needs besides the config: where to write, the cache, the seed and the profile."""

    cfg: DictConfig
    out_dir: Path
    cache_dir: Path
    data_root: Path
    seed: int
    profile: str
    stage_times: dict[str, float] = field(default_factory=dict)

    def ckpt_dir(self, phase: str) -> Path:
        """Checkpoint folder of a training phase; an interrupted run resumes from it (removed when ok)."""
        return self.out_dir / "ckpt" / phase

    def resumable(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """``compute()`` once per run: its JSON-able result and the stage times it added are kept in
        ``ckpt/<key>.json`` (removed with ``ckpt/`` when the run ends ok); a relaunch of an interrupted run reads
        them back (stage times included, so ``stage_times_s`` still adds up the whole computation) instead of
        recomputing. Returns ``(result, resumed)``."""
        path = self.out_dir / "ckpt" / f"{key}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            for stage, t in saved["stage_times_s"].items():
                self.stage_times[stage] = self.stage_times.get(stage, 0.0) + float(t)
            log.info("%s: resumed from %s (finished before the run was interrupted)", key, path)
            return saved["result"], True
        before = dict(self.stage_times)
        result = compute()
        spent = {k: t - before.get(k, 0.0) for k, t in self.stage_times.items() if t != before.get(k, 0.0)}
        records.write_json_atomic(path, {"result": result, "stage_times_s": spent})
        return result, False

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the pipeline (recorded as ``stage_times_s`` in results.json)."""
        t0 = time.perf_counter()
        log.info("stage %s ...", name)
        try:
            yield
        finally:
            self.stage_times[name] = self.stage_times.get(name, 0.0) + time.perf_counter() - t0
            log.info("stage %s done in %.1fs", name, self.stage_times[name])

    def progress(self, it: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
        """A tqdm progress bar (stderr) for long non-Lightning loops; silent when stderr is not a tty."""
        from tqdm.auto import tqdm

        return tqdm(it, desc=desc, total=total, leave=False, disable=None, dynamic_ncols=True)

    def logger(self, phase: str):
        """The configured Lightning logger for one training phase (``<run>/logs/<phase>/``), or False."""
        from hydra.utils import instantiate

        lcfg = self.cfg.get("logger")
        if not lcfg or "_target_" not in lcfg:
            return False
        target = lcfg._target_
        kwargs: dict[str, Any] = {"save_dir": str(self.out_dir)}
        if target.endswith("WandbLogger"):
            kwargs.update(name=f"{self.cfg.experiment}-{phase}-s{self.seed}", job_type=phase)
        else:
            kwargs.update(version=phase)
        return instantiate(lcfg, **kwargs)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _output_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # composed without Hydra's runtime (tests, notebooks)
        return Path(cfg.get("output_dir") or Path.cwd())


def _identity(cfg: DictConfig) -> dict[str, Any]:
    return {
        "experiment": cfg.experiment,
        "artefact": cfg.get("artefact"),
        "profile": cfg.profile.name,
        "seed": int(cfg.seed),
    }


def _launcher_jobs() -> int:
    """Parallel jobs of the current launcher (joblib ``n_jobs``), 1 when sequential or unknown."""
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")).lower():
            n = int(launcher.get("n_jobs") or 1)
            return (os.cpu_count() or 1) if n < 0 else n
    except Exception:
        pass
    return 1


def _limit_threads(n: int) -> None:
    """``n`` threads for torch *and* for the BLAS / OpenMP pools numpy, SciPy and scikit-learn use (Coreset-S's
    SparsePCA, Coreset-A's EM): numpy's OpenBLAS otherwise starts one thread per core in every run, so two runs
    side by side on two cores kept four busy threads. Pools already loaded are limited with threadpoolctl;
    the environment variables cover the libraries loaded later in the run."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    threadpool_limits(limits=n)


def _set_threads(cfg: DictConfig) -> None:
    """Explicit ``torch_threads``, else divide the cores between parallel launcher jobs."""
    if cfg.get("torch_threads"):
        _limit_threads(int(cfg.torch_threads))
        return
    jobs = _launcher_jobs()
    if jobs > 1:
        _limit_threads(max(1, (os.cpu_count() or 1) // jobs))


@interruptible_call
def execute(cfg: DictConfig, out_dir: Path | None = None) -> tuple[int, dict[str, Any] | None]:
    """Run the task of ``cfg``; return ``(exit status, record)`` (0 ok/skipped, 1 failed, 2 bad input,
    128 + signal when interrupted: 143 SIGTERM, 130 SIGINT)."""
    started, t0 = _now(), time.perf_counter()
    out_dir = Path(out_dir) if out_dir else _output_dir(cfg)
    try:
        validate_config(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        rid = run_id(cfg)
    except CoresetlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, None
    except Exception as e:  # interpolation / resolver errors are config errors too
        print(f"error: invalid configuration: {e}", file=sys.stderr)
        return 2, None
    previous = records.read_results(out_dir)
    if previous and previous.get("status") == "ok" and not cfg.get("force"):
        log.info("skip: %s already holds an ok result (force=true reruns it)", out_dir)
        print(f"skipped (already done): {out_dir}", file=sys.stderr)
        return 0, previous
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(resolved), out_dir / "resolved_config.yaml")
    _set_threads(cfg)

    import pytorch_lightning as pl
    from hydra.utils import get_method

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ctx = RunContext(
        cfg=cfg, out_dir=out_dir, cache_dir=Path(cfg.paths.cache_dir), data_root=Path(cfg.paths.data_root),
        seed=int(cfg.seed), profile=cfg.profile.name,
    )
    base = {
        "schema": records.SCHEMA_VERSION, **_identity(cfg), "run_id": rid, "config_id": config_id(cfg),
        "run_dir": str(out_dir), **records.overrides_record(),
        "started_at": started, "git_sha": records.git_sha(), "versions": records.versions(),
    }
    log.info("run %s (profile %s, seed %s) -> %s", cfg.experiment, cfg.profile.name, cfg.seed, out_dir)
    try:
        task = get_method(cfg.task._target_)
        out = task(cfg, ctx) or {}
        bad = records.nonfinite_fields(out)
        if bad:
            raise NonFiniteResult(f"non-finite result(s): {', '.join(bad)}")
    except RunInterrupted as e:  # SIGTERM/SIGINT: keep the checkpoints, say how to resume
        print(f"error: {resume_hint(e, str(out_dir / 'ckpt'))}", file=sys.stderr)
        log.error("%s", resume_hint(e))
        stopped = {**base, "status": "interrupted", "error": resume_hint(e), "metrics": {},
                   "wall_time_s": time.perf_counter() - t0, "finished_at": _now(), "stage_times_s": ctx.stage_times}
        records.write_json_atomic(out_dir / records.RESULTS_FILE, stopped)
        return e.exit_code, stopped
    except Exception as e:  # a genuine failure: record it, never a half result
        if user_error(e) is not None:  # bad input, also when Hydra's InstantiationException wraps it
            print(f"error: {user_error(e)}", file=sys.stderr)
            log.error("bad input: %s", user_error(e))
            return 2, None
        reason = str(e) if isinstance(e, RunFailure) else f"{type(e).__name__}: {e}"
        if isinstance(e, RunFailure):  # the message says it all
            log.error("run failed: %s", reason)
            print(f"error: run failed: {reason}", file=sys.stderr)
        else:
            log.error("run failed:\n%s", traceback.format_exc())
            print(f"error: run failed: {reason} (traceback in {out_dir})", file=sys.stderr)
        failed = {**base, "status": "failed", "error": reason, "metrics": {},
                  "wall_time_s": time.perf_counter() - t0, "finished_at": _now(), "stage_times_s": ctx.stage_times}
        records.write_json_atomic(out_dir / records.RESULTS_FILE, failed)
        return 1, failed
    finally:
        from coresetlab.lit.training import finish_wandb

        finish_wandb()
    result = {
        **base,
        "method": out.get("method"),
        "model": out.get("model"),
        "dataset": out.get("dataset"),
        "status": "ok",
        "error": None,
        "metrics": out.get("metrics", {}),
        "params_before": out.get("params_before"),
        "params_after": out.get("params_after"),
        "compression": out.get(
            "compression", records.compression_ratio(out.get("params_before"), out.get("params_after"))
        ),
        "wall_time_s": time.perf_counter() - t0,
        "stage_times_s": ctx.stage_times,
        "finished_at": _now(),
    }
    for key in ("table", "extra"):
        if key in out:
            result[key] = out[key]
    records.write_json_atomic(out_dir / records.RESULTS_FILE, result)
    shutil.rmtree(out_dir / "ckpt", ignore_errors=True)  # finished: resume checkpoints are not needed
    log.info("results -> %s", out_dir / records.RESULTS_FILE)
    return 0, result


def objective(record: dict[str, Any] | None, metric: Any) -> float | tuple[float, ...] | None:
    """The value a sweeper optimises: ``record['metrics'][metric]`` (NaN when the run failed).

    ``metric`` may be a list of names (multi-objective Optuna, one ``direction`` per name): a tuple comes back.
    """
    if not metric:
        return None
    if not isinstance(metric, str):
        return tuple(float(objective(record, str(m))) for m in metric)  # type: ignore[arg-type]
    if not record or record.get("status") != "ok":
        return float("nan")
    if metric not in record["metrics"]:
        raise KeyError(f"optimized_metric '{metric}' not in the run's metrics {sorted(record['metrics'])}")
    return float(record["metrics"][metric])
