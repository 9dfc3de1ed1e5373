"""Real on-disk format of a (deep-)compressed network and the loader that decodes it to a working model.

The model size reported by the Dubey pipeline is ``os.path.getsize`` of this file — nothing is
estimated. Layout::

    b"DUBEYDC1" | uint32 little-endian header length | zlib(JSON header) | blobs

The header holds the base model config (instantiated by Hydra on load), the architecture changes
(every conv / linear / batch-norm / factorised module with its constructor arguments, so pruned and
factorised layers are rebuilt) and, per state-dict tensor, its encoding and byte range:

* ``raw`` — little-endian bytes of the tensor (biases, batch-norm statistics, unquantised weights);
* ``dc`` — Deep Compression (Han et al. 2016 §4): the used centroids (float32), the Huffman code
  lengths (one byte per symbol) and two canonical-Huffman bit streams: cluster indices of the kept
  weights, and their positions as zero-run lengths capped at ``2^gap_bits − 1`` (a capped symbol is a
  filler that advances without a weight, like Han et al.'s padding zeros).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coresetlab.methods.dubey.deep_compression import Quantized
from coresetlab.methods.dubey.huffman import code_lengths, decode, encode
from coresetlab.methods.dubey.layers import Factorized

MAGIC = b"DUBEYDC1"


# -- architecture -----------------------------------------------------------------------------------------
def _spec(m: nn.Module) -> dict[str, Any]:
    if isinstance(m, Factorized):
        return {"type": "Factorized", "basis": _spec(m.basis), "mix": _spec(m.mix)}
    if isinstance(m, nn.Conv2d):
        return {"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": list(m.kernel_size), "stride": list(m.stride), "padding": list(m.padding)
                if not isinstance(m.padding, str) else m.padding, "dilation": list(m.dilation), "groups": m.groups,
                "bias": m.bias is not None, "padding_mode": m.padding_mode}
    if isinstance(m, nn.Linear):
        return {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features,
                "bias": m.bias is not None}
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return {"type": type(m).__name__, "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                "affine": m.affine, "track_running_stats": m.track_running_stats}
    raise TypeError(f"no spec for {type(m).__name__}")


def _build(spec: dict[str, Any]) -> nn.Module:
    kind = spec["type"]
    args = {k: v for k, v in spec.items() if k != "type"}
    if kind == "Factorized":
        return Factorized(_build(args["basis"]), _build(args["mix"]))
    cls = {"Conv2d": nn.Conv2d, "Linear": nn.Linear, "BatchNorm1d": nn.BatchNorm1d,
           "BatchNorm2d": nn.BatchNorm2d}[kind]
    return cls(**args)


def architecture(model: nn.Module) -> list[dict[str, Any]]:
    """``[{name, spec}]`` of the top-most conv/linear/batch-norm/factorised modules, in order."""
    out: list[dict[str, Any]] = []

    def walk(m: nn.Module, prefix: str) -> None:
        for name, child in m.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, Factorized | nn.Conv2d | nn.Linear | nn.BatchNorm1d | nn.BatchNorm2d):
                out.append({"name": full, "spec": _spec(child)})
            else:
                walk(child, full + ".")

    walk(model, "")
    return out


# -- encodings --------------------------------------------------------------------------------------------
def _raw(t: torch.Tensor) -> tuple[dict[str, Any], bytes]:
    a = t.detach().cpu().contiguous().numpy()
    return {"enc": "raw", "dtype": str(a.dtype), "shape": list(a.shape)}, a.astype(a.dtype.newbyteorder("<")).tobytes()


def gap_symbols(positions: np.ndarray, cap: int) -> np.ndarray:
    """Zero-run symbols of increasing flat ``positions``: ``z < cap`` = skip z zeros then a weight; ``cap`` =
    skip ``cap`` zeros, no weight (filler)."""
    runs = np.diff(np.concatenate([[-1], positions])) - 1
    fillers = runs // cap
    out = np.full(int(fillers.sum()) + len(runs), cap, dtype=np.int64)
    out[np.cumsum(fillers + 1) - 1] = runs % cap  # each weight's final symbol
    return out


def positions_from_gaps(symbols: np.ndarray, cap: int) -> np.ndarray:
    """Inverse of :func:`gap_symbols`."""
    advance = np.where(symbols == cap, cap, symbols + 1)
    ends = np.cumsum(advance) - 1
    return ends[symbols != cap]


def _dc(q: Quantized, gap_bits: int) -> tuple[dict[str, Any], bytes]:
    idx = q.index.cpu().numpy().astype(np.int64)
    used, idx = np.unique(idx, return_inverse=True)  # store only the centroids in use
    codebook = q.codebook.cpu().numpy().astype("<f4")[used]
    cap = 2**gap_bits - 1
    gaps = gap_symbols(q.positions.cpu().numpy().astype(np.int64), cap)
    idx_len = code_lengths(np.bincount(idx, minlength=len(used))) if len(idx) else np.zeros(len(used), np.int64)
    gap_len = code_lengths(np.bincount(gaps, minlength=cap + 1)) if len(gaps) else np.zeros(cap + 1, np.int64)
    if idx_len.max(initial=0) > 255 or gap_len.max(initial=0) > 255:
        raise ValueError("Huffman code longer than 255 bits")
    idx_bytes, idx_nbits = encode(idx, idx_len)
    gap_bytes, gap_nbits = encode(gaps, gap_len)
    meta = {"enc": "dc", "shape": list(q.shape), "k": len(used), "nnz": len(idx), "n_gaps": len(gaps),
            "gap_bits": gap_bits, "idx_nbits": idx_nbits, "gap_nbits": gap_nbits,
            "idx_nbytes": len(idx_bytes), "gap_nbytes": len(gap_bytes)}
    blob = (codebook.tobytes() + idx_len.astype(np.uint8).tobytes() + gap_len.astype(np.uint8).tobytes()
            + idx_bytes + gap_bytes)
    return meta, blob


def _undc(meta: dict[str, Any], blob: bytes) -> torch.Tensor:
    k, cap = meta["k"], 2 ** meta["gap_bits"] - 1
    o = 0
    codebook = np.frombuffer(blob, "<f4", k, o)
    o += 4 * k
    idx_len = np.frombuffer(blob, np.uint8, k, o).astype(np.int64)
    o += k
    gap_len = np.frombuffer(blob, np.uint8, cap + 1, o).astype(np.int64)
    o += cap + 1
    idx = decode(blob[o: o + meta["idx_nbytes"]], meta["idx_nbits"], idx_len, meta["nnz"])
    o += meta["idx_nbytes"]
    gaps = decode(blob[o: o + meta["gap_nbytes"]], meta["gap_nbits"], gap_len, meta["n_gaps"])
    pos = positions_from_gaps(gaps, cap)
    flat = np.zeros(int(np.prod(meta["shape"])), dtype=np.float32)
    flat[pos] = codebook[idx]
    return torch.from_numpy(flat.reshape(meta["shape"]))


# -- file -------------------------------------------------------------------------------------------------
@dataclass
class SizeReport:
    """Bytes on disk of a saved model and where they go."""

    path: str
    file_bytes: int
    header_bytes: int
    parts: dict[str, int] = field(default_factory=dict)  # raw / dc bytes per tensor

    @property
    def weights_bytes(self) -> int:
        return sum(self.parts.values())


def save_model(
    model: nn.Module, path: str | Path, base_config: dict[str, Any], quantized: dict[str, Quantized] | None = None,
    gap_bits: int | dict[str, int] = 5, extra: dict[str, Any] | None = None,
) -> SizeReport:
    """Write ``model`` to ``path``; conv/linear weights found in ``quantized`` (by layer name) use the
    ``dc`` encoding, every other state-dict tensor ``raw``. ``base_config`` must instantiate the
    unmodified network (the Hydra model config). Returns the sizes, measured on the written file."""
    quantized = quantized or {}
    entries, blobs, parts = [], [], {}
    offset = 0
    for key, t in model.state_dict().items():
        layer = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and layer in quantized:
            gb = gap_bits if isinstance(gap_bits, int) else int(gap_bits.get(layer, gap_bits.get("default", 5)))
            meta, blob = _dc(quantized[layer], gb)
        else:
            meta, blob = _raw(t)
        entries.append({"key": key, **meta, "offset": offset, "nbytes": len(blob)})
        blobs.append(blob)
        parts[key] = len(blob)
        offset += len(blob)
    header = {"format": 1, "base_config": base_config, "architecture": architecture(model),
              "tensors": entries, "extra": extra or {}}
    hbytes = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(hbytes)) + hbytes)
        for b in blobs:
            f.write(b)
    tmp.replace(path)
    return SizeReport(str(path), path.stat().st_size, len(MAGIC) + 4 + len(hbytes), parts)


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Decode a file written by :func:`save_model` into a working ``nn.Module`` (eval mode); returns
    ``(model, header)``."""
    from hydra.utils import instantiate

    from coresetlab.methods.dubey.layers import replace_module

    data = Path(path).read_bytes()
    if data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{path}: not a {MAGIC.decode()} file")
    (hlen,) = struct.unpack("<I", data[len(MAGIC): len(MAGIC) + 4])
    start = len(MAGIC) + 4
    header = json.loads(zlib.decompress(data[start: start + hlen]))
    body = data[start + hlen:]
    model = instantiate(header["base_config"])
    for item in header["architecture"]:
        replace_module(model, item["name"], _build(item["spec"]))
    state = {}
    for e in header["tensors"]:
        blob = body[e["offset"]: e["offset"] + e["nbytes"]]
        if e["enc"] == "dc":
            state[e["key"]] = _undc(e, blob)
        else:
            a = np.frombuffer(blob, dtype=np.dtype(e["dtype"]).newbyteorder("<")).reshape(e["shape"])
            state[e["key"]] = torch.from_numpy(a.astype(np.dtype(e["dtype"])).copy())
    model.load_state_dict(state)
    return model.eval(), header
