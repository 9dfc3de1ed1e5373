#!/usr/bin/env python
"""Wall time of building the filter coreset for all 16 conv layers of VGG-19 (random init), CPU.

The issue's budget: ≤ 5 s on the project's 2-core CPU. Times the whole ``FilterCoreset.prune`` (deep copy,
per-layer sensitivities on the already-pruned network, exact inclusion probabilities, real channel
surgery, params/FLOPs counted) and, apart, the selection alone; ``--beta`` fixes β (no forward passes),
the default ``null`` calibrates it per layer on ``--batch`` random example inputs (one partial forward per
layer). Uniform and L1 are timed on the same model for scale.

    python experiments/bench/bench_filter_coreset.py
    python experiments/bench/bench_filter_coreset.py --keep 0.3 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from coresetlab.methods.structured import FilterCoreset, L1Filter, UniformChannels
from coresetlab.models.vgg import VGG


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=None, help="fixed β (default: per layer from the example inputs)")
    ap.add_argument("--batch", type=int, default=8, help="example inputs (32×32) for β")
    ap.add_argument("--weighting", default="inclusion", choices=["inclusion", "counts"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = VGG("vgg19").eval()
    x = torch.randn(args.batch, 3, 32, 32)
    methods = [FilterCoreset(keep=args.keep, beta=args.beta, weighting=args.weighting),
               UniformChannels(keep=args.keep), L1Filter(keep=args.keep)]
    print(f"VGG-19 (random init), keep={args.keep}, beta={args.beta or 'per layer'}, threads={args.threads}")
    for method in methods:
        times, info = [], {}
        for r in range(args.repeats):
            g = torch.Generator().manual_seed(args.seed + r)
            t0 = time.perf_counter()
            _, info = method.prune(model, x, g)
            times.append(time.perf_counter() - t0)
        print(f"{method.name:15s} layers={len(info['groups']):2d}  median {statistics.median(times):6.2f} s  "
              f"(min {min(times):.2f}, max {max(times):.2f})  params {info['params_before']:,} -> "
              f"{info['params_after']:,}  FLOPs {info['flops_before']:.3g} -> {info['flops_after']:.3g}")


if __name__ == "__main__":
    main()
