"""Tabular loaders of the data-coreset experiments (AutoCL §4.1): road3d (synthetic UCI-format file),
the California Housing stand-in, HTRU2, the config entries, and the missing/corrupt-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coresetlab.data.tabular import (
    STAND_IN_LABEL,
    TabularData,
    load_california_housing,
    load_htru2,
    load_road3d,
)
from coresetlab.errors import DataError
from coresetlab.paths import data_root

ROOT = data_root()
HAS_CALIFORNIA = (ROOT / "california_housing" / "housing.csv").is_file()
HAS_HTRU2 = (ROOT / "HTRU2" / "HTRU_2.csv").is_file()


def write_road3d(folder: Path, rows: int = 40, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A small file in the UCI 3D Road format: ``OSM_ID,LONGITUDE,LATITUDE,ALTITUDE``, no header."""
    rng = np.random.default_rng(seed)
    table = np.column_stack([
        rng.integers(1_000_000, 200_000_000, rows),  # OSM_ID
        rng.uniform(8.1, 11.2, rows),  # longitude
        rng.uniform(56.6, 57.8, rows),  # latitude
        rng.uniform(-8.0, 134.0, rows),  # altitude
    ])
    path = folder / "3droad" / "3D_spatial_network.txt"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(f"{int(r[0])},{r[1]:.7f},{r[2]:.7f},{r[3]:.6f}" for r in table) + "\n")
    return path, table


def test_road3d_synthetic_file(tmp_path):
    _, table = write_road3d(tmp_path)
    data = load_road3d(tmp_path)
    assert isinstance(data, TabularData)
    assert (data.n, data.d, data.task, data.name) == (40, 2, "regression", "road3d")
    np.testing.assert_allclose(data.x, table[:, 1:3], rtol=1e-7)  # (longitude, latitude), unnormalised
    np.testing.assert_allclose(data.y, table[:, 3], rtol=1e-6)  # altitude
    assert data.x.dtype == np.float64


def test_road3d_absolute_path_and_subset(tmp_path):
    path, _ = write_road3d(tmp_path, rows=30)
    sub = load_road3d("/nonexistent-root", file=str(path), subset=10, subset_seed=3)
    again = load_road3d("/nonexistent-root", file=str(path), subset=10, subset_seed=3)
    assert sub.n == 10 and sub.info["n_full"] == 30
    np.testing.assert_array_equal(sub.x, again.x)  # fixed by subset_seed


def test_missing_file_is_a_clear_data_error(tmp_path):
    with pytest.raises(DataError) as e:
        load_road3d(tmp_path)
    msg = str(e.value)
    assert "3droad/3D_spatial_network.txt" in msg and str(tmp_path) in msg and "california_housing" in msg
    with pytest.raises(DataError, match="HTRU_2.csv"):
        load_htru2(tmp_path)
    with pytest.raises(DataError, match="housing.csv"):
        load_california_housing(tmp_path)


def test_corrupt_files_are_data_errors(tmp_path):
    bad = tmp_path / "3droad" / "3D_spatial_network.txt"
    bad.parent.mkdir()
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="expected 4"):
        load_road3d(tmp_path)
    bad.write_text("1,2.0,3.0,x\n4,5.0,6.0,7.0\n")
    with pytest.raises(DataError, match="non-numeric"):
        load_road3d(tmp_path)


@pytest.mark.skipif(not HAS_CALIFORNIA, reason="California Housing not in the data root")
def test_california_housing_stand_in():
    data = load_california_housing(ROOT)
    assert (data.n, data.d) == (20640, 2)
    assert data.label == STAND_IN_LABEL == "california_housing (stand-in for 3D Road)"
    np.testing.assert_allclose(data.x[0], [-122.23, 37.88])
    assert data.y[0] == pytest.approx(4.526)  # 452,600 dollars in units of $100k
    assert np.isfinite(data.x).all() and np.isfinite(data.y).all()


@pytest.mark.skipif(not HAS_HTRU2, reason="HTRU2 not in the data root")
def test_htru2_cr_line_endings_labels_and_standardisation():
    data = load_htru2(ROOT)
    assert (data.n, data.d, data.task) == (17898, 8, "classification")
    assert set(np.unique(data.y)) == {-1.0, 1.0} and int((data.y == 1).sum()) == 1639
    np.testing.assert_allclose(data.x.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(data.x.std(0), 1.0, atol=1e-10)


@pytest.mark.parametrize("name", ["road3d", "california_housing", "htru2"])
def test_dataset_configs_compose_and_validate(compose, name, tmp_path):
    from coresetlab.config_schema import validate_config

    experiment = "logreg_autocl" if name == "htru2" else "linreg_autocl"
    cfg = compose(f"+experiment={experiment}", f"dataset={name}")
    validate_config(cfg)  # the image-dataset schema accepts the tabular entries
    assert cfg.dataset.name == name and cfg.dataset._target_.startswith("coresetlab.data.tabular.")
    if name == "road3d":
        from hydra.utils import instantiate

        write_road3d(tmp_path)
        data = instantiate(cfg.dataset, root=str(tmp_path))
        assert data.n == 40
