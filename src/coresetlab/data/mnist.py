"""MNIST via torchvision, read from the data root's official ``.gz`` files.

The four files under ``<data_root>/MNIST/raw/`` are md5-checked, copied into the project cache and
extracted there by ``torchvision.datasets.MNIST(download=True)`` -- which finds the verified files and
does not touch the network. Without a data root holding them, torchvision downloads into ``data/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torchvision import datasets

from coresetlab.data.common import TensorDataModule, md5sum, require_files
from coresetlab.errors import DataError
from coresetlab.paths import file_lock, repo_root

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def prepare_mnist(root: Path, cache_dir: Path, download: bool = True) -> Path:
    """Return a torchvision root holding extracted MNIST; never writes into ``root``."""
    raw = root / "MNIST" / "raw"
    cache_root = cache_dir / "torchvision"
    if raw.is_dir() or root != repo_root() / "data":
        require_files(raw, list(MNIST_FILES), "MNIST", hint="expected the four official .gz files in MNIST/raw/")
        dst = cache_root / "MNIST" / "raw"
        dst.mkdir(parents=True, exist_ok=True)
        for name, md5 in MNIST_FILES.items():
            target = dst / name
            if not target.exists() or target.stat().st_size != (raw / name).stat().st_size:
                if md5sum(raw / name) != md5:
                    raise DataError(f"MNIST: {raw / name} is corrupt (md5 differs from the official {md5}).")
                tmp = target.with_name(f"{name}.{os.getpid()}.tmp")  # atomic: parallel test workers
                shutil.copyfile(raw / name, tmp)
                tmp.replace(target)
        return cache_root
    if not download:
        raise DataError(f"MNIST: not found under data root {root} and download is disabled.")
    return root  # online users: torchvision downloads into data/


def load_mnist_tensors(root: Path, cache_dir: Path, download: bool = True):
    with file_lock(Path(cache_dir) / "torchvision" / "MNIST.lock"):  # torchvision extracts in place: one at a time
        tv_root = prepare_mnist(root, cache_dir, download)
        try:
            tr = datasets.MNIST(str(tv_root), train=True, download=True)
            te = datasets.MNIST(str(tv_root), train=False, download=True)
        except RuntimeError as e:  # md5 failure or network failure inside torchvision
            raise DataError(f"MNIST: torchvision could not load/verify the files under {tv_root}: {e}") from None

    def norm(u8: torch.Tensor) -> torch.Tensor:
        return ((u8.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)

    return norm(tr.data), tr.targets.long(), norm(te.data), te.targets.long()


class MNISTDataModule(TensorDataModule):
    """MNIST, 1x28x28 normalised images; 5,000 training images held out for validation by seed."""

    name = "mnist"

    def _load(self):
        return load_mnist_tensors(self.root, self.cache_dir, self.download)
