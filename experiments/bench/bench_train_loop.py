#!/usr/bin/env python
"""Benchmark: training throughput of our Lightning loop against a bare PyTorch loop, in one process.

* VGG-19 on CIFAR-10 tensors (batch 128, SGD momentum 0.9, 2 threads): fp32, bf16 autocast, channels_last
  and bf16 + channels_last, each (a) through ``fit_module`` with ``ClassifierModule`` and the configured
  Trainer (``conf/trainer/cpu.yaml`` plus the setting) and (b) a bare loop with the same model init,
  optimizer, precision, memory format and data (the same tensors and batched augmentation).
* LeNet-300-100 on MNIST tensors (batch 64, 1 thread): one training epoch, bare vs Lightning with the
  configured ``trainer.batches_per_step`` and with 1, interleaved over ``--rounds`` rounds.
* The CIFAR-10 training loader alone (batched random crop + flip), images/s.

Timings are wall clock (``time.perf_counter``) and process CPU time; both are recorded, with the load
average, because the machine may be shared. The Lightning time covers the training batches only (from
the end of the warm-up batches to the end of the last one; validation and Trainer set-up are timed
apart). Prints a table and writes ``outputs/bench/bench_train_loop.json``.

    python experiments/bench/bench_train_loop.py                 # everything (~5 min on an idle 2-core CPU)
    python experiments/bench/bench_train_loop.py --only lenet    # or vgg19 / loader
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import coresetlab.resolvers  # noqa: F401  (registers ${by_profile:...})
from coresetlab.lit import ClassifierModule, fit_module
from coresetlab.lit.modules import MiniBatches, set_channels_last, to_memory_format
from coresetlab.paths import output_root, repo_root
from coresetlab.records import write_json_atomic
from coresetlab.runner import RunContext

SETTINGS = {  # name: (trainer.precision, trainer.channels_last)
    "fp32": ("32-true", False),
    "bf16": ("bf16-mixed", False),
    "fp32+cl": ("32-true", True),
    "bf16+cl": ("bf16-mixed", True),
}


def compose_cfg(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(repo_root() / "conf")):
        return compose(config_name="config", overrides=list(overrides))


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Clock:
    """Wall and process CPU time since ``start``."""

    def start(self) -> None:
        self.w0, self.c0 = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.w0, time.process_time() - self.c0


class BatchTimer(pl.Callback):
    """Starts a :class:`Clock` after ``warmup`` mini-batches and stops it after the last training batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seen, self.clock, self.timed_images, self.result = warmup, 0, Clock(), 0, (0.0, 0.0)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.warmup == 0:
            self.clock.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        group = batch if isinstance(batch, MiniBatches) else [batch]
        before, self.seen = self.seen, self.seen + len(group)
        if before >= self.warmup:
            self.timed_images += sum(len(y) for _, y in group)
            self.result = self.clock.read()
        elif self.seen >= self.warmup:
            self.clock.start()


def lightning_run(cfg, dm, model0, warmup: int, batch_size: int) -> dict[str, Any]:
    """One training epoch through ``fit_module`` (the configured Trainer); returns the timings."""
    model = copy.deepcopy(model0)
    module = ClassifierModule(model, instantiate(cfg.optimizer))
    timer = BatchTimer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(cfg=cfg, out_dir=Path(tmp), cache_dir=Path(cfg.paths.cache_dir),
                         data_root=Path(cfg.paths.data_root), seed=int(cfg.seed), profile="bench")
        clock = Clock()
        clock.start()
        fit_module(ctx, module, dm.loader("train", batch_size), dm.loader("val"), "bench", 1, callbacks=[timer])
        total_wall, _ = clock.read()
    wall, cpu = timer.result
    return {"wall_s": wall, "cpu_s": cpu, "images": timer.timed_images, "img_s": timer.timed_images / wall,
            "fit_total_wall_s": total_wall}


def bare_run(cfg, dm, model0, warmup: int, batch_size: int, bf16: bool, channels_last: bool) -> dict[str, Any]:
    """The same epoch as a plain PyTorch loop: in-memory batches of the same tensors, same transform."""
    ds = dm.dataset("train")
    model = copy.deepcopy(model0)
    cl = set_channels_last(model, channels_last)
    model.train()
    opt = instantiate(cfg.optimizer)(model.parameters())
    perm = torch.randperm(len(ds.y), generator=torch.Generator().manual_seed(int(cfg.seed)))
    clock, images = Clock(), 0
    if warmup == 0:
        clock.start()
    for step, i in enumerate(range(0, len(perm), batch_size)):
        idx = perm[i : i + batch_size]
        x, y = ds.x[idx], ds.y[idx]
        if ds.transform is not None:
            x = ds.transform(x, None)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(to_memory_format(x, cl)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 == warmup:
            clock.start()
        elif step + 1 > warmup:
            images += len(y)
    wall, cpu = clock.read()
    return {"wall_s": wall, "cpu_s": cpu, "images": images, "img_s": images / wall, "final_loss": float(loss)}


def bench_vgg(args) -> list[dict[str, Any]]:
    torch.set_num_threads(args.vgg_threads)
    bs, steps = args.vgg_batch, args.vgg_warmup + args.vgg_steps
    rows = []
    for name in args.settings:
        precision, cl = SETTINGS[name]
        cfg = compose_cfg(
            "dataset=cifar10", "model=vgg19", "optimizer=sgd", f"trainer.precision={precision}",
            f"trainer.channels_last={str(cl).lower()}", f"trainer.batches_per_step={args.vgg_batches_per_step}",
            f"dataset.train_subset={steps * bs}", "dataset.val_subset=256", "dataset.eval_batch_size=256",
            f"torch_threads={args.vgg_threads}",
        )
        dm = instantiate(cfg.dataset)
        dm.setup()
        torch.manual_seed(0)
        model0 = instantiate(cfg.model)
        order = ["bare", "lightning"] if len(rows) // 2 % 2 == 0 else ["lightning", "bare"]  # load drifts
        res = {}
        for loop in order:
            before = load()
            if loop == "bare":
                res[loop] = bare_run(cfg, dm, model0, args.vgg_warmup, bs, precision == "bf16-mixed", cl)
            else:
                res[loop] = lightning_run(cfg, dm, model0, args.vgg_warmup, bs)
            res[loop]["load"] = before
        for loop in ("bare", "lightning"):
            rows.append({"model": "vgg19", "setting": name, "loop": loop, "batch": bs, "threads": args.vgg_threads,
                         "batches_per_step": args.vgg_batches_per_step if loop == "lightning" else None, **res[loop]})
        ratio = res["lightning"]["img_s"] / res["bare"]["img_s"]
        rows[-1]["lightning_over_bare"] = ratio
        print(f"vgg19 {name:8s} bare {res['bare']['img_s']:7.1f} img/s | lightning {res['lightning']['img_s']:7.1f} "
              f"img/s | lightning/bare {ratio:.3f} | load {res['lightning']['load'][0]}", flush=True)
    return rows


def bench_lenet(args) -> list[dict[str, Any]]:
    torch.set_num_threads(args.lenet_threads)
    cfg = compose_cfg("dataset=mnist", "model=lenet300", "optimizer=sgd", "dataset.val_subset=1000",
                      f"torch_threads={args.lenet_threads}")
    k_conf = int(cfg.trainer.batches_per_step)
    cfg1 = compose_cfg("dataset=mnist", "model=lenet300", "optimizer=sgd", "dataset.val_subset=1000",
                       f"torch_threads={args.lenet_threads}", "trainer.batches_per_step=1")
    dm = instantiate(cfg.dataset)
    dm.setup()
    torch.manual_seed(0)
    model0 = instantiate(cfg.model)
    variants = {"bare": lambda: bare_run(cfg, dm, model0, 0, 64, False, False),
                f"lightning k={k_conf}": lambda: lightning_run(cfg, dm, model0, 0, 64)}
    if k_conf != 1:
        variants["lightning k=1"] = lambda: lightning_run(cfg1, dm, model0, 0, 64)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            runs[name].append({"load": load(), **fn()})
        print(f"lenet300 round {r}: " + " | ".join(f"{k} {v[-1]['wall_s']:.2f} s wall {v[-1]['cpu_s']:.2f} s cpu"
                                                  for k, v in runs.items()), flush=True)
    rows = []
    best_bare = min(x["cpu_s"] for x in runs["bare"]), min(x["wall_s"] for x in runs["bare"])
    for name, rs in runs.items():
        cpu, wall = min(x["cpu_s"] for x in rs), min(x["wall_s"] for x in rs)
        rows.append({"model": "lenet300-100", "setting": "fp32", "loop": name, "batch": 64,
                     "threads": args.lenet_threads, "epoch_cpu_s_min": cpu, "epoch_wall_s_min": wall,
                     "over_bare_cpu": cpu / best_bare[0], "over_bare_wall": wall / best_bare[1], "runs": rs})
        print(f"lenet300 {name:14s} epoch {wall:.2f} s wall ({wall / best_bare[1]:.2f}x bare), "
              f"{cpu:.2f} s cpu ({cpu / best_bare[0]:.2f}x bare)  [min of {len(rs)}]", flush=True)
    return rows


def bench_loader(args) -> list[dict[str, Any]]:
    torch.set_num_threads(args.vgg_threads)
    cfg = compose_cfg("dataset=cifar10", f"torch_threads={args.vgg_threads}")
    dm = instantiate(cfg.dataset)
    dm.setup()
    rows = []
    for split in ("train", "train_eval"):  # augmented / not
        loader, clock, n = dm.loader(split, 128, shuffle=True), Clock(), 0
        clock.start()
        for _, y in loader:
            n += len(y)
        wall, cpu = clock.read()
        rows.append({"model": "cifar10-loader", "setting": "augment" if split == "train" else "plain", "loop": split,
                     "batch": 128, "threads": args.vgg_threads, "images": n, "wall_s": wall, "cpu_s": cpu,
                     "img_s": n / wall, "load": load()})
        print(f"cifar10 loader {split:10s} {n / wall:9.0f} img/s ({n} images in {wall:.2f} s)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["vgg19", "lenet", "loader"], nargs="+", default=["loader", "lenet", "vgg19"])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--vgg-threads", type=int, default=2)
    ap.add_argument("--vgg-batch", type=int, default=128)
    ap.add_argument("--vgg-warmup", type=int, default=2, help="untimed VGG steps per run")
    ap.add_argument("--vgg-steps", type=int, default=8, help="timed VGG steps per run")
    ap.add_argument("--vgg-batches-per-step", type=int, default=2)
    ap.add_argument("--lenet-threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved LeNet rounds (the minimum is reported)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    # The configured Trainer (deterministic: warn) switches this on process-wide; the bare loop runs under it too.
    torch.use_deterministic_algorithms(True, warn_only=True)
    record: dict[str, Any] = {
        "torch": torch.__version__, "lightning": pl.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "load_start": load(), "args": vars(args), "rows": [],
    }
    t0 = time.perf_counter()
    sections = {"loader": bench_loader, "lenet": bench_lenet, "vgg19": bench_vgg}
    for name in args.only:
        record["rows"] += sections[name](args)
    record["load_end"], record["wall_s"] = load(), time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(output_root()) / "bench" / "bench_train_loop.json"
    write_json_atomic(out, record)
    print(f"load average {record['load_start']} -> {record['load_end']}; {record['wall_s']:.0f} s; -> {out}")


if __name__ == "__main__":
    main()
