"""Canonical Huffman coding of integer symbol streams (Deep Compression, Han et al. 2016, §4).

Only the code *lengths* are stored (one byte per alphabet symbol); the canonical code is rebuilt from
them. Encoding is vectorised with numpy; decoding computes the code length at every bit position at
once (canonical codes: the length is found by comparing the next ``L_max`` bits against per-length
limits) and then walks the code starts, one step per symbol.
"""

from __future__ import annotations

import heapq
from itertools import count

import numpy as np


def code_lengths(freqs: np.ndarray) -> np.ndarray:
    """Huffman code length of every symbol (0 for symbols that never occur; 1 if only one occurs)."""
    freqs = np.asarray(freqs, dtype=np.int64)
    lengths = np.zeros(len(freqs), dtype=np.int64)
    used = np.flatnonzero(freqs > 0)
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    tie = count()
    heap: list[tuple[int, int, list[int]]] = [(int(freqs[s]), next(tie), [int(s)]) for s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        f1, _, s1 = heapq.heappop(heap)
        f2, _, s2 = heapq.heappop(heap)
        merged = s1 + s2
        lengths[merged] += 1
        heapq.heappush(heap, (f1 + f2, next(tie), merged))
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes for ``lengths``: symbols sorted by (length, symbol) get consecutive codes."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    order = np.lexsort((np.arange(len(lengths)), lengths))
    order = order[lengths[order] > 0]
    code, prev = 0, 0
    for s in order:
        code <<= int(lengths[s]) - prev
        prev = int(lengths[s])
        codes[s] = code
        code += 1
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Bit-pack ``symbols`` with the canonical code of ``lengths``; returns ``(bytes, number of bits)``."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if len(symbols) == 0:
        return b"", 0
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths[symbols] == 0).any():
        raise ValueError("a symbol to encode has no code (zero length)")
    codes = canonical_codes(lengths)
    ln, cd = lengths[symbols], codes[symbols]
    starts = np.cumsum(ln) - ln  # first bit of every symbol
    bits = np.zeros(int(ln.sum()), dtype=np.uint8)
    for width in np.unique(ln):  # one vectorised scatter per code length (at most ~20)
        sel = ln == width
        cols = np.arange(width)
        bits[starts[sel][:, None] + cols] = (cd[sel][:, None] >> (width - 1 - cols)) & 1
    return np.packbits(bits).tobytes(), int(bits.size)


def decode(data: bytes, n_bits: int, lengths: np.ndarray, n_symbols: int) -> np.ndarray:
    """Inverse of :func:`encode` for ``n_symbols`` symbols."""
    if n_symbols == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = canonical_codes(lengths)
    l_max = int(lengths.max())
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n_bits].astype(np.int64)
    padded = np.concatenate([bits, np.zeros(l_max, dtype=np.int64)])
    window = np.zeros(n_bits, dtype=np.int64)  # the next l_max bits at every position, as an integer
    for j in range(l_max):
        window = (window << 1) | padded[j: j + n_bits]
    # canonical property: codes of length l, left-aligned to l_max bits, lie below limit[l]
    by_len = [np.flatnonzero(lengths == ln) for ln in range(l_max + 1)]
    limits, first, base, table = [], [], [], []
    for ln in range(1, l_max + 1):
        syms = by_len[ln]
        if len(syms) == 0:
            continue
        syms = syms[np.argsort(codes[syms])]
        first.append(int(codes[syms[0]]))
        limits.append((int(codes[syms[-1]]) + 1) << (l_max - ln))
        base.append(len(table))
        table.extend(syms.tolist())
    lens_present = np.array([ln for ln in range(1, l_max + 1) if len(by_len[ln])], dtype=np.int64)
    which = np.searchsorted(np.array(limits), window, side="right")  # index into lens_present
    which = which.clip(max=len(lens_present) - 1)
    step = lens_present[which]
    # walk the code starts (one step per symbol)
    step_list = step.tolist()
    start_list: list[int] = []
    p = 0
    for _ in range(n_symbols):
        start_list.append(p)
        p += step_list[p]
    if p != n_bits:
        raise ValueError(f"Huffman stream inconsistent: decoded {p} of {n_bits} bits")
    starts = np.array(start_list, dtype=np.int64)
    w = which[starts]
    ln = lens_present[w]
    value = window[starts] >> (l_max - ln)
    idx = np.array(base)[w] + value - np.array(first)[w]
    return np.array(table, dtype=np.int64)[idx]
