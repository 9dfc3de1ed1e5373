"""Tabular data sets of AutoCL §4.1 (data coresets): 3D Road Network, its stand-in, and HTRU2.

Every loader returns a :class:`TabularData` (float64 numpy arrays ``x`` (n, d) and ``y`` (n,), a
short ``name`` and the ``label`` shown in results and reports). The whole file is the input set P of
the coreset problem (there is no train/test split of the *data*: coresets are evaluated on held-out
*queries*). Preprocessing, exactly:

* ``road3d`` -- UCI "3D Road Network (North Jutland, Denmark)", ``3D_spatial_network.txt``: 434,874
  rows ``OSM_ID,LONGITUDE,LATITUDE,ALTITUDE`` without a header. ``x = (longitude, latitude)``,
  ``y = altitude``; unnormalised, as in AutoCL (the intercept is part of the query, not of ``x``).
* ``california_housing`` -- the StatLib California Housing file (``housing.csv``, 20,640 rows with a
  header), the workplace's stand-in for 3D Road: the same kind of input ``x = (longitude, latitude)``
  and a real spatial target, ``y = median_house_value / 100,000`` (dollars -> units of $100k, the
  scale of scikit-learn's ``fetch_california_housing`` target; it keeps residuals on the scale of the
  coordinates, as altitude in metres is for 3D Road). Unnormalised otherwise. The 207 empty
  ``total_bedrooms`` cells are in a column that is not used. Labelled
  ``california_housing (stand-in for 3D Road)``.
* ``htru2`` -- UCI HTRU2 (``HTRU_2.csv``, CR-only line endings, no header, 17,898 rows x 8 features +
  0/1 class). Labels ``{0, 1} -> {-1, +1}``; each feature standardised to zero mean and unit
  (population, ``ddof=0``) standard deviation over all 17,898 rows.

``subset`` (smoke/fast profiles) keeps a random subset of rows fixed by ``subset_seed`` (not the run
seed: every run of a profile sees the same data, so cached query sets are shared), taken after the
preprocessing above.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coresetlab.data.common import require_files
from coresetlab.errors import DataError

ROAD3D_FILE = "3droad/3D_spatial_network.txt"
CALIFORNIA_FILE = "california_housing/housing.csv"
HTRU2_FILE = "HTRU2/HTRU_2.csv"
STAND_IN_LABEL = "california_housing (stand-in for 3D Road)"


@dataclass(frozen=True)
class TabularData:
    """An input set P for data coresets: features ``x`` (n, d), targets/labels ``y`` (n,), float64."""

    name: str
    label: str
    x: np.ndarray
    y: np.ndarray
    task: str  # "regression" or "classification" (labels in {-1, +1})
    source: str
    preprocessing: str
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])

    def fingerprint(self) -> str:
        """A short content hash of ``(x, y)``: part of the query-cache key."""
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(self.x, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """JSON-friendly summary for results.json ``extra``."""
        return {"name": self.name, "label": self.label, "n": self.n, "d": self.d, "task": self.task,
                "source": self.source, "preprocessing": self.preprocessing, **self.info}


def _resolve(root: str | Path, file: str, what: str, hint: str) -> Path:
    """``root / file`` (an absolute ``file`` wins), or a :class:`DataError` naming it and the root."""
    root = Path(root)
    path = Path(file)
    if path.is_absolute():
        if not path.is_file():
            raise DataError(f"{what}: missing {path} (given as an absolute path; data root {root}). {hint}")
        return path
    require_files(root, [file], what, hint=hint)
    return root / file


def _read_csv(path: Path, what: str, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{what}: cannot parse {path}: {e}") from None


def _numeric(frame: pd.DataFrame, what: str, path: Path) -> np.ndarray:
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{what}: {path} has {int(bad.sum())} non-numeric/empty value(s) (first at data row {row}).")
    return values


def _subset(data: TabularData, subset: int | None, subset_seed: int) -> TabularData:
    if subset is None or int(subset) >= data.n:
        return data
    if int(subset) <= 0:
        raise DataError(f"{data.name}: subset must be positive, got {subset}")
    rng = np.random.default_rng(int(subset_seed))
    idx = np.sort(rng.choice(data.n, size=int(subset), replace=False))
    info = {**data.info, "subset": int(subset), "subset_seed": int(subset_seed), "n_full": data.n}
    return TabularData(data.name, data.label, data.x[idx], data.y[idx], data.task, data.source,
                       data.preprocessing, info)


def load_road3d(
    root: str | Path, file: str = ROAD3D_FILE, subset: int | None = None, subset_seed: int = 0,
    name: str = "road3d", label: str = "road3d",
) -> TabularData:
    """UCI 3D Road Network: ``x = (longitude, latitude)``, ``y = altitude`` (unnormalised).

    The file has no header and four columns ``OSM_ID,LONGITUDE,LATITUDE,ALTITUDE``; OSM_ID is dropped.
    """
    what = "3D Road Network"
    path = _resolve(root, file, what, hint=(
        "expected the UCI file 3D_spatial_network.txt (434,874 rows OSM_ID,LONGITUDE,LATITUDE,ALTITUDE, "
        "no header); put it there or set dataset.file=/path/to/it; `dataset=california_housing` runs the "
        "stand-in"))
    frame = _read_csv(path, what, header=None)
    if frame.shape[1] != 4:
        raise DataError(f"{what}: {path} has {frame.shape[1]} columns, expected 4 "
                        "(OSM_ID,LONGITUDE,LATITUDE,ALTITUDE, no header).")
    values = _numeric(frame, what, path)
    data = TabularData(
        name=name, label=label, x=values[:, 1:3].copy(), y=values[:, 3].copy(), task="regression",
        source=str(path), preprocessing="x = (longitude, latitude), y = altitude; unnormalised",
    )
    return _subset(data, subset, subset_seed)


def load_california_housing(
    root: str | Path, file: str = CALIFORNIA_FILE, target: str = "median_house_value",
    target_scale: float = 1.0e5, subset: int | None = None, subset_seed: int = 0,
    name: str = "california_housing", label: str = STAND_IN_LABEL,
) -> TabularData:
    """California Housing as the 3D Road stand-in: ``x = (longitude, latitude)``, ``y = target / scale``."""
    what = "California Housing"
    path = _resolve(root, file, what, hint="expected housing.csv with a header row (StatLib / handson-ml2 copy)")
    frame = _read_csv(path, what)
    cols = ["longitude", "latitude", target]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: {path} lacks column(s) {missing}; found {list(frame.columns)}")
    values = _numeric(frame[cols], what, path)
    data = TabularData(
        name=name, label=label, x=values[:, :2].copy(), y=values[:, 2] / float(target_scale),
        task="regression", source=str(path),
        preprocessing=f"x = (longitude, latitude), y = {target} / {target_scale:g}; otherwise unnormalised",
        info={"stand_in_for": "road3d", "target": target, "target_scale": float(target_scale)},
    )
    return _subset(data, subset, subset_seed)


def load_htru2(
    root: str | Path, file: str = HTRU2_FILE, standardize: bool = True, subset: int | None = None,
    subset_seed: int = 0, name: str = "htru2", label: str = "htru2",
) -> TabularData:
    """UCI HTRU2 pulsar candidates: 8 standardised features, labels in {-1, +1} (1 = pulsar)."""
    what = "HTRU2"
    path = _resolve(root, file, what, hint="expected the UCI HTRU_2.csv (no header, 9 columns)")
    frame = _read_csv(path, what, header=None)
    if frame.shape[1] != 9:
        raise DataError(f"{what}: {path} has {frame.shape[1]} columns, expected 9 (8 features + 0/1 class).")
    values = _numeric(frame, what, path)
    x, label01 = values[:, :8], values[:, 8]
    if not np.isin(label01, (0.0, 1.0)).all():
        raise DataError(f"{what}: {path}: the last column must hold 0/1 class labels.")
    prep = "y = 2*class - 1"
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
        prep += "; features standardised (mean 0, population std 1 over all rows)"
    data = TabularData(
        name=name, label=label, x=np.ascontiguousarray(x), y=2.0 * label01 - 1.0, task="classification",
        source=str(path), preprocessing=prep, info={"positives": int(label01.sum())},
    )
    return _subset(data, subset, subset_seed)
