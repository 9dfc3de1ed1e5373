"""ImageNet (ILSVRC-2012) as a torchvision ``ImageFolder`` at ``root``, with the standard transforms.

Expected layout (the one torchvision's ``ImageFolder`` reads; e.g. after the usual ``valprep.sh``)::

    <root>/train/<class>/*.JPEG      # 1000 class folders (WordNet ids), 1.28M images
    <root>/val/<class>/*.JPEG        # the official 50,000 validation images, same class folders

Splits (the interface of :class:`coresetlab.data.common.TensorDataModule`, so every task runs unchanged):

* ``train`` — ``train/`` minus a seeded held-out ``val_size`` images, with ``RandomResizedCrop(image_size)``
  + horizontal flip; ``train_eval`` — the same images with the evaluation transform;
* ``val`` — the held-out training images (what selections and searches may use);
* ``test`` — the ``val/`` folder (ImageNet's test labels are not public; the paper reports on it);
* evaluation transform: ``Resize(resize_size)`` + ``CenterCrop(image_size)`` (256 / 224 by default);
  all splits normalised with the ImageNet mean / std.

Images are decoded lazily: ``dataset(split).x`` is a :class:`LazyImages` that decodes only the rows it is
indexed with (the Dubey pipeline indexes search subsets and batches), ``.y`` the labels as a tensor.
``image_size`` smaller than 224 (e.g. 64) runs the same pipeline on small inputs (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from coresetlab.data.common import seeded_split, seeded_subset
from coresetlab.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG (torchvision ImageFolder, same class folders)"


def imagenet_transforms(image_size: int = 224, resize_size: int | None = None):
    """``(train, eval)`` torchvision transforms: RandomResizedCrop + flip / Resize + CenterCrop, normalised."""
    from torchvision import transforms as T

    resize_size = resize_size or round(image_size * 256 / 224)
    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *norm])
    evaluate = T.Compose([T.Resize(resize_size), T.CenterCrop(image_size), *norm])
    return train, evaluate


class ImageSplit(Dataset):
    """Image files + labels with a transform; ``__getitems__`` returns a whole ``(x, y)`` batch."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform, image_size: int) -> None:
        self.samples, self.transform, self.image_size = list(samples), transform, int(image_size)
        self.y = torch.tensor([c for _, c in self.samples], dtype=torch.long)
        self.x = LazyImages(self)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> torch.Tensor:
        from PIL import Image

        path = self.samples[i][0]
        try:
            with Image.open(path) as im:
                return self.transform(im.convert("RGB"))
        except OSError as e:
            raise DataError(f"ImageNet: cannot decode {path}: {e}") from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.load(int(i)), self.y[int(i)]

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = [int(i) for i in idx]
        return torch.stack([self.load(i) for i in idx]), self.y[idx]


class LazyImages:
    """A read-only tensor-like view of a split's images: indexing (int, slice, index list/tensor) decodes
    just those images with the split's transform; ``shape`` / ``len`` without decoding anything."""

    def __init__(self, split: ImageSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.split), 3, self.split.image_size, self.split.image_size)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, int):
            return self.split.load(key)
        if isinstance(key, slice):
            idx = range(*key.indices(len(self.split)))
        else:
            idx = torch.as_tensor(key).reshape(-1).tolist()
        if len(idx) == 0:
            return torch.empty(0, *self.shape[1:])
        return torch.stack([self.split.load(int(i)) for i in idx])


def _collate_whole(batch):
    return batch  # ImageSplit.__getitems__ already returns a whole batch


class ImageNetDataModule:
    """ImageNet from an ImageFolder tree at ``root`` (see the module docstring for layout and splits)."""

    def __init__(
        self,
        root: str | Path,
        cache_dir: str | Path | None = None,
        val_size: int = 10000,
        batch_size: int = 256,
        eval_batch_size: int = 256,
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        image_size: int = 224,
        resize_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        name: str = "imagenet",
    ) -> None:
        self.root, self.val_size, self.seed, self.augment = Path(root), int(val_size), int(seed), augment
        self.batch_size, self.eval_batch_size, self.num_workers = int(batch_size), int(eval_batch_size), int(num_workers)
        self.train_subset, self.val_subset, self.test_subset = train_subset, val_subset, test_subset
        self.image_size, self.resize_size, self.name = int(image_size), resize_size, name
        self.classes: list[str] = []
        self._splits: dict[str, ImageSplit] | None = None

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.classes)

    def _folder(self, which: str):
        from torchvision.datasets import ImageFolder

        path = self.root / which
        if not path.is_dir():
            raise DataError(f"ImageNet: no folder {path}; expected {LAYOUT} (set dataset.root)")
        try:
            return ImageFolder(str(path))
        except (FileNotFoundError, RuntimeError) as e:
            raise DataError(f"ImageNet: cannot read {path} as an ImageFolder ({e}); expected {LAYOUT}") from None

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        train, test = self._folder("train"), self._folder("val")
        if train.classes != test.classes:
            raise DataError(f"ImageNet: {self.root}/train and {self.root}/val have different class folders "
                            f"({len(train.classes)} vs {len(test.classes)}); expected {LAYOUT}")
        self.classes = list(train.classes)
        if not 0 <= self.val_size < len(train.samples):
            raise DataError(f"ImageNet: val_size {self.val_size} must be < the {len(train.samples)} training images")
        tr_idx, va_idx = seeded_split(len(train.samples), self.val_size, self.seed)
        tr_idx = seeded_subset(tr_idx, self.train_subset, self.seed)
        va_idx = seeded_subset(va_idx, self.val_subset, self.seed + 1)
        te_idx = seeded_subset(torch.arange(len(test.samples)), self.test_subset, self.seed + 2)
        t_train, t_eval = imagenet_transforms(self.image_size, self.resize_size)
        tr = [train.samples[i] for i in tr_idx.tolist()]
        self._splits = {
            "train": ImageSplit(tr, t_train if self.augment else t_eval, self.image_size),
            "train_eval": ImageSplit(tr, t_eval, self.image_size),
            "val": ImageSplit([train.samples[i] for i in va_idx.tolist()], t_eval, self.image_size),
            "test": ImageSplit([test.samples[i] for i in te_idx.tolist()], t_eval, self.image_size),
        }

    def prepare_data(self) -> None:  # Lightning API; nothing to download
        pass

    def dataset(self, split: str) -> ImageSplit:
        """``train`` (augmented), ``train_eval``, ``val`` (held out of train/) or ``test`` (the val/ folder)."""
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    def loader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        train = split == "train"
        shuffle = train if shuffle is None else shuffle
        gen = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.dataset(split), batch_size=batch_size or (self.batch_size if train else self.eval_batch_size),
            shuffle=shuffle, generator=gen, collate_fn=_collate_whole, num_workers=self.num_workers,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)
