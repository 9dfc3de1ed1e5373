#!/usr/bin/env python
"""Benchmark: Coreset-S (scikit-learn SparsePCA) wall time with the BLAS/OpenMP pools at 1 vs 2 threads.

Context: `torch_threads=n` limits the numpy/SciPy BLAS and OpenMP pools too (runner._limit_threads). Before that,
each Coreset-S run had a BLAS worker thread besides its main thread, so two runs side by side put 4 busy threads on
this 2-core CPU. This script fits `coreset_s` on a random fc1-sized matrix (LeNet-5 fc1 after AP: d x N) at each
thread limit, in this process, so run it with the machine in the state you want to measure (idle, or with one run
on the other core); the load average is printed and recorded with the times.

    python experiments/bench/bench_blas_threads.py [--d 801] [--n 500] [--rank 40] [--reps 3]
    # two runs side by side, each at one limit (as two Dubey runs on this 2-core CPU):
    for i in 1 2; do python experiments/bench/bench_blas_threads.py --max-iter 50 --limits 1 & done; wait
    for i in 1 2; do python experiments/bench/bench_blas_threads.py --max-iter 50 --limits 2 & done; wait
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime, timezone

import torch
from threadpoolctl import threadpool_limits

from coresetlab.methods.dubey.coreset import coreset_s
from coresetlab.paths import output_root
from coresetlab.records import write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=801)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--rank", type=int, default=40)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--limits", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    w = torch.randn(args.d, args.n, generator=torch.Generator().manual_seed(0)) / args.d ** 0.5
    rows = []
    load = os.getloadavg()[0]
    print(f"Coreset-S on a {args.d} x {args.n} matrix, rank {args.rank}, alpha {args.alpha}, max_iter "
          f"{args.max_iter}; load average at start {load:.2f} on {os.cpu_count()} CPUs")
    coreset_s(w, args.rank, args.alpha, max_iter=args.max_iter)  # warm-up (imports, first-call costs), not timed
    for limit in args.limits:
        times = []
        for _ in range(args.reps):
            with threadpool_limits(limits=limit):
                t0 = time.perf_counter()
                coreset_s(w, args.rank, args.alpha, max_iter=args.max_iter)
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"blas_threads": limit, "times_s": times, "median_s": med})
        print(f"  BLAS/OpenMP threads {limit}: median {med:.2f} s over {args.reps} (all: "
              f"{', '.join(f'{t:.2f}' for t in times)})")
    out = output_root() / "bench" / f"blas_threads_{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    write_json_atomic(out, {**vars(args), "load_avg_start": load, "load_avg_end": os.getloadavg()[0],
                            "cpus": os.cpu_count(), "rows": rows})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
