"""In-memory tensor datasets with batched indexing, seeded splits and the shared DataModule base.

Image datasets here are small enough to live in memory as tensors. Batches are gathered with one
indexing operation (``__getitems__``) instead of per-sample ``__getitem__`` + collate, which is what
makes many-epoch CPU recipes (AutoCL's 400 epochs) affordable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from coresetlab.errors import DataError

BatchTransform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


class TensorBatchDataset(Dataset):
    """``(x, y)`` tensors; ``__getitems__`` returns a whole batch, optionally transformed.

    ``transform`` acts on a batch ``x[idx]`` (e.g. random crop + flip) and is applied on the fly.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: BatchTransform | None = None) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y lengths differ: {len(x)} vs {len(y)}")
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.__getitems__([i])
        return xb[0], yb[0]

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        xb = self.x[index]
        if self.transform is not None:
            xb = self.transform(xb, None)
        return xb, self.y[index]


def _identity_collate(batch):
    return batch


def make_loader(
    ds: TensorBatchDataset, batch_size: int, shuffle: bool, seed: int | None = None, drop_last: bool = False
) -> DataLoader:
    """A DataLoader that fetches whole batches from a :class:`TensorBatchDataset` (no workers needed)."""
    gen = None
    if shuffle:
        gen = torch.Generator()
        gen.manual_seed(0 if seed is None else int(seed))
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=_identity_collate,
        drop_last=drop_last, num_workers=0,
    )


def seeded_split(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (train_idx, val_idx) partition of ``range(n)``, fixed by ``seed``."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def seeded_subset(idx: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """A seeded random subset of ``idx`` of ``size`` elements (all of it when size is None)."""
    if size is None or size >= len(idx):
        return idx
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(int(seed) + 7919))
    return idx[perm[:size]].sort().values


def select_classes(y: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the samples whose label is in ``classes`` and their labels remapped to ``0..k-1``
    (``classes[i]`` -> ``i``), e.g. CIFAR-10 classes 5–9 as a 5-class task (Dubey et al. Table 6 proxy)."""
    classes = [int(c) for c in classes]
    lut = torch.full((int(max(int(y.max()), *classes)) + 1,), -1, dtype=torch.long)
    lut[torch.as_tensor(classes)] = torch.arange(len(classes))
    new = lut[y]
    idx = torch.nonzero(new >= 0).flatten()
    return idx, new[idx]


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def require_files(root: Path, files: Sequence[str], what: str, hint: str = "") -> None:
    """Raise one clear :class:`DataError` naming the missing files and the root searched."""
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"{what}: missing {', '.join(missing)} under data root {root}. "
            f"Set CORESETLAB_DATA to the folder that holds them{(' (' + hint + ')') if hint else ''}."
        )


class TensorDataModule(pl.LightningDataModule):
    """Base for in-memory image datamodules: train/val/test tensors + batch loaders.

    Subclasses implement :meth:`_load` returning ``(x_train, y_train, x_test, y_test)`` as tensors
    (normalised, channel-first). The validation split is held out of the training set by ``seed``;
    ``train_subset`` / ``test_subset`` take seeded subsets (fast/smoke profiles).
    """

    name: str = "tensor"
    num_classes: int = 10

    def __init__(
        self,
        root: str | Path,
        cache_dir: str | Path,
        val_size: int = 5000,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        seed: int = 0,
        augment: bool = False,
        download: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.root, self.cache_dir = Path(root), Path(cache_dir)
        self.val_size, self.batch_size, self.eval_batch_size = val_size, batch_size, eval_batch_size
        self.train_subset, self.val_subset, self.test_subset = train_subset, val_subset, test_subset
        self.seed, self.augment, self.download = seed, augment, download
        if name:
            self.name = name
        self._splits: dict[str, TensorBatchDataset] | None = None

    # -- to implement -------------------------------------------------------------------------------
    def _load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train_transform(self) -> BatchTransform | None:
        return None

    # -- Lightning API --------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        x_tr, y_tr, x_te, y_te = self._load()
        tr_idx, va_idx = seeded_split(len(y_tr), self.val_size, self.seed)
        tr_idx = seeded_subset(tr_idx, self.train_subset, self.seed)
        va_idx = seeded_subset(va_idx, self.val_subset, self.seed + 1)
        te_idx = seeded_subset(torch.arange(len(y_te)), self.test_subset, self.seed + 2)
        self._splits = {
            "train": TensorBatchDataset(x_tr[tr_idx], y_tr[tr_idx], self.train_transform() if self.augment else None),
            "train_eval": TensorBatchDataset(x_tr[tr_idx], y_tr[tr_idx]),
            "val": TensorBatchDataset(x_tr[va_idx], y_tr[va_idx]),
            "test": TensorBatchDataset(x_te[te_idx], y_te[te_idx]),
        }

    def dataset(self, split: str) -> TensorBatchDataset:
        """``train`` (augmented if enabled), ``train_eval`` (no augmentation), ``val`` or ``test``."""
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    def loader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        train = split == "train"
        bs = batch_size or (self.batch_size if train else self.eval_batch_size)
        return make_loader(self.dataset(split), bs, shuffle=train if shuffle is None else shuffle, seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset("test").x.shape[1:])
