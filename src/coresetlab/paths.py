"""Where things live: the repository, the (read-only) data root and the project's own cache.

Data root resolution (first hit wins):

1. ``$CORESETLAB_DATA``;
2. ``<repo>/../shared/data`` when it exists (this workplace's layout);
3. ``<repo>/data`` -- torchvision datasets are downloaded there (``download=True``) for online users.

The data root is never written to; derived files (extracted MNIST, decoded CIFAR arrays, query sets,
trained parents) go to the cache, ``$CORESETLAB_CACHE`` or ``<repo>/.cache``.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


def repo_root() -> Path:
    """The repository root (the folder holding ``run.py``), or the working directory if not found."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "run.py").exists() and (parent / "conf").is_dir():
            return parent
    return Path.cwd()


def data_root() -> Path:
    """The read-only data root (see module docstring)."""
    env = os.environ.get("CORESETLAB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    shared = repo_root().parent / "shared" / "data"
    if shared.is_dir():
        return shared.resolve()
    return repo_root() / "data"


def cache_dir() -> Path:
    """The project's writable cache (never inside the data root)."""
    env = os.environ.get("CORESETLAB_CACHE")
    return Path(env).expanduser().resolve() if env else repo_root() / ".cache"


def output_root() -> Path:
    """Where run folders go (``$CORESETLAB_OUTPUTS`` or ``<repo>/outputs``)."""
    env = os.environ.get("CORESETLAB_OUTPUTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "outputs"


@contextmanager
def file_lock(path: Path):
    """An exclusive ``fcntl`` lock on ``path`` (created if needed) for the ``with`` block: parallel processes
    (pytest workers, launcher jobs) that fill the same cache entry take turns instead of racing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

