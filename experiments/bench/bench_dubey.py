#!/usr/bin/env python
"""Benchmark: per-stage wall time of the Dubey et al. (ECCV 2018) pipeline's building blocks.

On one dense ``d × N`` layer matrix (default 4097 × 1024, a VGG/AlexNet-fc-sized slice) it times
Coreset-K at a few ranks, one Coreset-A EM step and a whole EM solve, and Coreset-S (scikit-learn
SparsePCA) at a small rank; then Huffman encode/decode of 1M 5-bit symbols, and AP + Coreset-K +
serialisation round trip on a random LeNet-5 with synthetic inputs. Prints a table and writes
``outputs/bench/bench_dubey.json``.

    python experiments/bench/bench_dubey.py [--d 4097] [--n 1024] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coresetlab.methods.dubey.compress import CoresetConfig, coreset_compress
from coresetlab.methods.dubey.coreset import coreset_a, coreset_k, coreset_s
from coresetlab.methods.dubey.huffman import code_lengths, decode, encode
from coresetlab.methods.dubey.pruning import activation_prune
from coresetlab.methods.dubey.serialize import load_model, save_model
from coresetlab.models.lenet5 import LeNet5
from coresetlab.paths import output_root
from coresetlab.records import write_json_atomic


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=4097)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(args.d, args.n, generator=g) / args.d**0.5
    imp = torch.rand(args.n, generator=g)
    rows: list[dict[str, Any]] = []

    def add(stage: str, seconds: float, note: str = "") -> None:
        rows.append({"stage": stage, "seconds": seconds, "note": note})
        print(f"{stage:<38} {seconds:>9.3f} s  {note}")

    print(f"Dubey pipeline blocks (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for r in (16, 128):
        add(f"coreset_k rank {r}", timed(lambda r=r: coreset_k(w, r))[0], f"{args.d}x{args.n}")
    add("coreset_a one EM step", timed(lambda: coreset_a(w, imp, 64, max_iter=1, rel_tol=0))[0], "rank 64")
    t, em = timed(lambda: coreset_a(w, imp, 64, max_iter=100, rel_tol=1e-6))
    add("coreset_a EM solve", t, f"rank 64, {em.iterations} steps")
    small = w[:801, :256]
    add("coreset_s (sklearn SparsePCA)", timed(lambda: coreset_s(small, 16, 0.05, max_iter=200))[0], "801x256 rank 16")

    rng = np.random.default_rng(0)
    sym = rng.choice(32, size=1_000_000, p=rng.dirichlet(np.full(32, 0.5)))
    lengths = code_lengths(np.bincount(sym, minlength=32))
    t, (data, nbits) = timed(lambda: encode(sym, lengths))
    add("huffman encode 1M symbols", t, f"{nbits / len(sym):.2f} bits/symbol")
    t, back = timed(lambda: decode(data, nbits, lengths, len(sym)))
    assert np.array_equal(back, sym)
    add("huffman decode 1M symbols", t)

    torch.manual_seed(0)
    model = LeNet5().eval()
    x = torch.randn(2000, 1, 28, 28, generator=g)
    y = model(x).argmax(1)
    t, (pruned, res) = timed(lambda: activation_prune(model, x, y, tol=0.005))
    add("AP on LeNet-5 (2000 samples)", t, f"kept {[len(v) for v in res.kept.values()]}")
    t, (comp, _, _) = timed(lambda: coreset_compress(pruned, CoresetConfig(kind="k"), x[:500], y[:500], tol=0.005))
    add("Coreset-K rank search (500 samples)", t)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.dcnn"
        t, size = timed(lambda: save_model(comp, path, {"_target_": "coresetlab.models.lenet5.LeNet5"}))
        add("save_model (raw)", t, f"{size.file_bytes} bytes")
        add("load_model", timed(lambda: load_model(path))[0])
    out = output_root() / "bench" / "bench_dubey.json"
    write_json_atomic(out, {"threads": torch.get_num_threads(), "d": args.d, "n": args.n, "rows": rows})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
