#!/usr/bin/env python
"""Benchmark: neuron-coreset construction for a 4096 -> 4096 -> 4096 dense layer pair.

Times Algorithm 2 (sensitivities, sampling until k distinct neurons, reweighting) plus the surgery
that builds the smaller ``nn.Linear`` pair, for a few coreset sizes. The paper quotes ≈ 56 s per
VGG-16 dense layer; the target here is <= 1 s on this CPU. Prints a table and writes
``outputs/bench/bench_neuron_coreset.json``.

    python experiments/bench/bench_neuron_coreset.py [--width 4096] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch import nn

from coresetlab.methods.neuron.coreset import select_neurons
from coresetlab.methods.shared.mlp_surgery import layer_points, prune_pair
from coresetlab.paths import output_root
from coresetlab.records import write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--sizes", type=int, nargs="+", default=[409, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.width
    torch.manual_seed(0)
    layer, nxt = nn.Linear(n, n), nn.Linear(n, n)
    g = torch.Generator().manual_seed(0)
    results = []
    print(f"neuron coreset construction, {n} -> {n} -> {n} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'size':>6} {'method':>10} {'select_s':>9} {'surgery_s':>9} {'total_s':>8}")
    for size in args.sizes:
        for method in ("coreset", "uniform"):
            best = None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                with torch.no_grad():
                    sample = select_neurons(method, layer_points(layer), nxt.weight, size, generator=g)
                t1 = time.perf_counter()
                a, b = prune_pair(layer, nxt, sample)
                t2 = time.perf_counter()
                cur = (t1 - t0, t2 - t1, t2 - t0)
                best = cur if best is None or cur[2] < best[2] else best
            assert a.out_features == size and b.in_features == size
            print(f"{size:>6} {method:>10} {best[0]:>9.3f} {best[1]:>9.3f} {best[2]:>8.3f}")
            results.append({"size": size, "method": method, "select_s": best[0], "surgery_s": best[1],
                            "total_s": best[2], "draws": sample.m})
    worst = max(r["total_s"] for r in results)
    print(f"slowest construction: {worst:.3f} s (target <= 1 s): {'OK' if worst <= 1.0 else 'TOO SLOW'}")
    out = Path(output_root()) / "bench" / "bench_neuron_coreset.json"
    write_json_atomic(out, {
        "width": n, "repeats": args.repeats, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "processor": platform.processor(), "results": results,
        "slowest_s": worst, "target_s": 1.0,
    })
    print(f"-> {out}")


if __name__ == "__main__":
    main()
