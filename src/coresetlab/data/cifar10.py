"""CIFAR-10 from the data root: the JPEG copy (``cifar10/{train,test}_jpeg.npz``) or torchvision's pickles.

The JPEG copy holds the official images in the official order as JPEG q~75 files; it is decoded once
into a uint8 cache (``<cache>/cifar10_jpeg/*.npy``). Results on it are labelled ``cifar10-jpeg``.
Training augmentation (random crop with 4-pixel padding + horizontal flip) is applied per sample on
whole batches.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from coresetlab.data.common import TensorDataModule, require_files, select_classes
from coresetlab.errors import ConfigError, DataError
from coresetlab.paths import file_lock, repo_root

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def decode_jpeg_npz(npz_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``jpeg``/``offsets``/``y`` arrays into ``(N, 32, 32, 3)`` uint8 images and labels."""
    from PIL import Image

    z = np.load(npz_path)
    blob, offsets, y = z["jpeg"], z["offsets"], z["y"]
    imgs = np.empty((len(y), 32, 32, 3), dtype=np.uint8)
    for i in range(len(y)):
        data = blob[offsets[i] : offsets[i + 1]].tobytes()
        imgs[i] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return imgs, y.astype(np.int64)


def _decode_to(npz: Path, xf: Path, yf: Path) -> None:
    """Decode one split's JPEG archive into ``xf``/``yf`` (.npy) via unique temporary names + atomic renames."""
    try:
        x, y = decode_jpeg_npz(npz)
    except Exception as e:  # corrupt archive
        raise DataError(f"CIFAR-10: cannot decode {npz}: {e}") from None
    for arr, dst in ((y, yf), (x, xf)):
        tmp = dst.with_name(f"{dst.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        tmp.replace(dst)


def load_cifar10_arrays(root: Path, cache_dir: Path, download: bool = True):
    """Return ``(x_train, y_train, x_test, y_test, source)`` uint8 NHWC arrays; source names the copy."""
    jpeg_dir = root / "cifar10"
    if (jpeg_dir / "train_jpeg.npz").exists() or (jpeg_dir / "test_jpeg.npz").exists():
        require_files(jpeg_dir, ["train_jpeg.npz", "test_jpeg.npz"], "CIFAR-10 (JPEG copy)")
        out = cache_dir / "cifar10_jpeg"
        out.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for split in ("train", "test"):
            xf, yf = out / f"{split}_x.npy", out / f"{split}_y.npy"
            with file_lock(out / f"{split}.lock"):  # one decoder at a time; the others then load its files
                if not (xf.exists() and yf.exists()):
                    _decode_to(jpeg_dir / f"{split}_jpeg.npz", xf, yf)
            arrays[split] = (np.load(xf), np.load(yf))
        return (*arrays["train"], *arrays["test"], "cifar10-jpeg")
    if (root / "cifar-10-batches-py").is_dir() or root == repo_root() / "data":
        try:
            tr = datasets.CIFAR10(str(root), train=True, download=download)
            te = datasets.CIFAR10(str(root), train=False, download=download)
        except RuntimeError as e:
            raise DataError(f"CIFAR-10: torchvision could not load {root}/cifar-10-batches-py: {e}") from None
        return tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets), "cifar10"
    raise DataError(
        f"CIFAR-10: found neither cifar10/train_jpeg.npz + cifar10/test_jpeg.npz nor cifar-10-batches-py/ "
        f"under data root {root}. Set CORESETLAB_DATA to the folder that holds them."
    )


def random_crop_flip(x: torch.Tensor, gen: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip of an NCHW batch.

    Two ``gather`` calls on the padded batch (rows, then flipped-or-not columns): no per-image Python.
    Random draws, in order: row offsets, column offsets, flip flags (``gen`` or the global generator).
    """
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = dy[:, None] + torch.arange(h)  # n,h
    cols = dx[:, None] + torch.arange(w)  # n,w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10, 3x32x32 normalised; ``name`` becomes ``cifar10-jpeg`` when read from the JPEG copy.

    ``classes`` (optional, e.g. ``[5, 6, 7, 8, 9]``): keep only these classes, relabelled ``0..k-1`` in the
    given order (:func:`~coresetlab.data.common.select_classes`), before the validation split and subsets;
    ``num_classes`` becomes ``k``. Absent (the default config has no such key) = all ten classes.
    """

    name = "cifar10"

    def __init__(self, *args, val_size: int = 5000, classes: list[int] | None = None, **kwargs) -> None:
        super().__init__(*args, val_size=val_size, **kwargs)
        self.source: str | None = None
        self.classes = None if classes is None else [int(c) for c in classes]
        if self.classes is not None:
            if not self.classes or len(set(self.classes)) != len(self.classes) or not set(self.classes) <= set(range(10)):
                raise ConfigError(f"dataset.classes: CIFAR-10 classes must be distinct labels in 0..9, got {list(classes)}")
            self.num_classes = len(self.classes)

    def _load(self):
        xtr, ytr, xte, yte, self.source = load_cifar10_arrays(self.root, self.cache_dir, self.download)
        self.name = self.source
        mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

        def norm(a: np.ndarray) -> torch.Tensor:
            return (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0 - mean) / std

        ytr_t, yte_t = torch.from_numpy(ytr).long(), torch.from_numpy(yte).long()
        if self.classes is not None:
            itr, ytr_t = select_classes(ytr_t, self.classes)
            ite, yte_t = select_classes(yte_t, self.classes)
            return norm(xtr[itr.numpy()]), ytr_t, norm(xte[ite.numpy()]), yte_t
        return norm(xtr), ytr_t, norm(xte), yte_t

    def train_transform(self):
        return random_crop_flip
