"""Unit tests pinning the math and plumbing: AutoCL matching loss, parameter counts, data, records."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from coresetlab.data.cifar10 import decode_jpeg_npz, random_crop_flip
from coresetlab.data.common import TensorBatchDataset, make_loader, seeded_split
from coresetlab.lit.parents import parent_key
from coresetlab.methods.autocl.objective import coreset_objective, loss_ratio_error
from coresetlab.models import count_params
from coresetlab.models.mlp import MLP
from coresetlab.records import compression_ratio, write_json_atomic


def test_loss_ratio_error_values_and_gradient():
    small = torch.tensor([1.1, 0.9, 2.0], requires_grad=True)
    full = torch.tensor([1.0, 1.0, 1.0])
    err = loss_ratio_error(small, full)
    assert torch.allclose(err, torch.tensor([0.1, 0.1, 1.0]))
    err.sum().backward()
    assert torch.allclose(small.grad, torch.tensor([1.0, -1.0, 1.0]))  # d|1-s/f|/ds = sign(s-f)/f
    assert loss_ratio_error(0.5, 0.25) == pytest.approx(1.0)


def test_coreset_objective_weight_term():
    c, f = torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])
    assert coreset_objective(c, f).item() == pytest.approx(1.0)
    assert coreset_objective(c, f, lam=0.5, sum_w=10.0, sum_u=6.0).item() == pytest.approx(3.0)
    assert coreset_objective(f, f).item() == 0.0  # C = P gives zero loss
    with pytest.raises(ValueError):
        coreset_objective(c, f, lam=1.0)


def test_parameter_counts_of_the_lenets():
    assert count_params(MLP(784, [300, 100], 10)) == 266_610
    assert count_params(MLP(784, [30, 100], 10)) == 27_660
    assert count_params(MLP(784, [200, 105], 10)) == 784 * 200 + 200 + 200 * 105 + 105 + 105 * 10 + 10
    assert compression_ratio(266_610, 27_660) == pytest.approx(0.8963, abs=5e-5)


def test_count_params_counts_shared_tensors_once():
    lin = nn.Linear(4, 4)
    assert count_params(nn.Sequential(lin, lin)) == 20
    frozen = nn.Linear(3, 2)
    frozen.weight.requires_grad_(False)
    assert count_params(frozen, trainable_only=True) == 2


def test_seeded_split_is_a_fixed_partition():
    tr, va = seeded_split(100, 20, seed=3)
    tr2, va2 = seeded_split(100, 20, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(va) == 20 and len(set(tr.tolist()) | set(va.tolist())) == 100
    assert not torch.equal(seeded_split(100, 20, seed=4)[1], va)


def test_batch_loader_returns_whole_batches_in_seeded_order():
    ds = TensorBatchDataset(torch.arange(10).float().view(10, 1), torch.arange(10))
    batches = list(make_loader(ds, 4, shuffle=True, seed=1))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    ys = torch.cat([b[1] for b in batches])
    assert sorted(ys.tolist()) == list(range(10))
    assert torch.equal(ys, torch.cat([b[1] for b in make_loader(ds, 4, shuffle=True, seed=1)]))


def test_random_crop_flip_keeps_shape_and_content():
    x = torch.rand(8, 3, 32, 32)
    y = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    same = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    # with no padding every sample is either itself or its mirror image
    for a, b in zip(x, same):
        assert torch.equal(a, b) or torch.equal(a.flip(-1), b)


def test_decode_jpeg_npz_roundtrip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = [np.full((32, 32, 3), c, dtype=np.uint8) for c in (10, 128, 250)]
    blobs = []
    for im in imgs:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    np.savez(tmp_path / "x.npz", jpeg=np.concatenate(blobs), offsets=offsets, y=np.array([3, 1, 4], dtype=np.uint8))
    x, y = decode_jpeg_npz(tmp_path / "x.npz")
    assert x.shape == (3, 32, 32, 3) and y.tolist() == [3, 1, 4]
    assert np.abs(x.astype(int) - np.stack(imgs).astype(int)).max() <= 2
    del rng


def test_parent_key_depends_on_recipe_and_seed():
    base = {"model": {"name": "m", "hidden": [3]}, "dataset": {"name": "mnist"}, "train": {"epochs": 1}, "seed": 0}
    assert parent_key(base) == parent_key(json.loads(json.dumps(base)))
    assert parent_key(base) != parent_key({**base, "seed": 1})
    assert parent_key(base) != parent_key({**base, "train": {"epochs": 2}})


def test_write_json_atomic_handles_tensors_and_nan(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"a": torch.tensor(1.5), "b": float("nan"), "c": np.arange(3)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": None, "c": [0, 1, 2]}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_a_parent_at_chance_is_flagged_and_warned(caplog):
    """A parent that did not learn (val. accuracy within 2 pt of 1/classes) is marked and logged, never silent."""
    from types import SimpleNamespace

    from coresetlab.lit.parents import _flag_chance

    dm = SimpleNamespace(num_classes=10)
    with caplog.at_level("WARNING", logger="coresetlab"):
        stuck = _flag_chance({"key": "p", "val_acc": 0.105}, dm)
    assert stuck["at_chance"] is True and "at chance level" in caplog.text
    assert _flag_chance({"key": "p", "val_acc": 0.60}, dm)["at_chance"] is False
    assert _flag_chance({"key": "p", "val_acc": 0.51}, SimpleNamespace(num_classes=2))["at_chance"] is True
