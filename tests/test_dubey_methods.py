"""Unit tests of the Dubey et al. (ECCV 2018) pipeline's algorithms (no data, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from coresetlab.methods.dubey.compress import (
    CoresetConfig,
    FitCache,
    coreset_compress,
    factor_layer,
    uniform_compress,
)
from coresetlab.methods.dubey.coreset import (
    coreset_a,
    coreset_k,
    coreset_s,
    importance_weights,
    weighted_low_rank_em,
    weighted_objective,
    zero_columns,
)
from coresetlab.methods.dubey.deep_compression import DCConfig, deep_compress, kmeans_1d, sparsity
from coresetlab.methods.dubey.huffman import code_lengths, decode, encode
from coresetlab.methods.dubey.layers import (
    Factorized,
    channel_pairs,
    compressible_layers,
    dense_matrix,
    factorize,
    prune_outputs,
    weight_matrix,
)
from coresetlab.methods.dubey.method import DubeyMethod
from coresetlab.methods.dubey.pruning import activation_prune, apply_ap
from coresetlab.methods.dubey.serialize import gap_symbols, load_model, positions_from_gaps, save_model
from coresetlab.models.lenet5 import LeNet5
from coresetlab.models.utils import count_params

torch.set_num_threads(1)
LENET_CFG = {"_target_": "coresetlab.models.lenet5.LeNet5"}


@pytest.fixture()
def lenet() -> LeNet5:
    torch.manual_seed(0)
    return LeNet5().eval()


@pytest.fixture()
def batch() -> torch.Tensor:
    return torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_lenet5_matches_han_et_al(lenet):
    assert count_params(lenet) == 431_080
    assert compressible_layers(lenet) == ["conv1", "conv2", "fc1", "fc2"]
    assert lenet(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ["conv1", "conv2", "fc1", "fc2"])
def test_full_rank_coreset_k_reproduces_layer(lenet, batch, name):
    layer = lenet.get_submodule(name)
    w = weight_matrix(layer)
    w_hat, d = coreset_k(w, min(w.shape))
    fac = factorize(layer, w_hat, d)
    assert torch.allclose(dense_matrix(fac), w, atol=1e-5)
    x = {"conv1": batch, "conv2": torch.randn(8, 20, 12, 12), "fc1": torch.randn(8, 800),
         "fc2": torch.randn(8, 500)}[name]
    with torch.no_grad():
        assert torch.allclose(fac(x), layer(x), atol=1e-4)


def test_factorized_network_runs_as_real_layers(lenet, batch):
    layer = lenet.conv2
    w_hat, d = coreset_k(weight_matrix(layer), 5)
    fac = factorize(layer, w_hat, d)
    assert isinstance(fac.basis, nn.Conv2d) and fac.basis.out_channels == 5
    assert isinstance(fac.mix, nn.Conv2d) and fac.mix.kernel_size == (1, 1) and fac.mix.bias is None
    assert sum(p.numel() for p in fac.parameters()) == 5 * 501 + 5 * 50


def test_coreset_a_uniform_importance_equals_coreset_k(lenet):
    w = weight_matrix(lenet.conv2)
    for rank in (1, 7, 30):
        em = coreset_a(w, torch.full((w.shape[1],), 1 / w.shape[1]), rank)
        wk, dk = coreset_k(w, rank)
        assert torch.allclose(em.w_hat @ em.d, wk @ dk, atol=1e-5)


def test_em_decreases_weighted_objective_monotonically():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 25, generator=g, dtype=torch.float64)
    for weights in (torch.rand(60, 25, generator=g, dtype=torch.float64),  # general weights
                    importance_weights(torch.rand(25, generator=g, dtype=torch.float64), 60)):  # tiled (Eq. 7)
        res = weighted_low_rank_em(a, weights, rank=4, max_iter=200, rel_tol=0.0)
        obj = np.array(res.objective)
        assert len(obj) > 5
        assert (np.diff(obj) <= 1e-9 * obj[:-1]).all()
        assert obj[-1] < obj[0]
        assert weighted_objective(a, weights, res.w_hat @ res.d) == pytest.approx(obj[-1], rel=1e-9)


def test_em_reaches_closed_form_for_tiled_importance():
    """With per-filter (column) weights c², the optimum is LRA(W diag c) diag(c)⁻¹ (Srebro & Jaakkola §2)."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 12, generator=g, dtype=torch.float64)
    imp = torch.rand(12, generator=g, dtype=torch.float64) + 0.5
    res = coreset_a(w, imp, rank=3, max_iter=5000, rel_tol=1e-14)
    u, s, vh = torch.linalg.svd(w * imp, full_matrices=False)
    exact = (u[:, :3] * s[:3] @ vh[:3]) / imp
    weights = importance_weights(imp, 40)
    assert weighted_objective(w, weights, res.w_hat @ res.d) == pytest.approx(
        weighted_objective(w, weights, exact), rel=1e-6)


def test_coreset_s_sparsity_and_exact_filter_dropping(lenet, batch):
    w = weight_matrix(lenet.conv2)
    scale = float(w.norm(dim=0).median())
    _, d_lo = coreset_s(w, 10, alpha=0.01 * scale, max_iter=100)
    _, d_hi = coreset_s(w, 10, alpha=1.0 * scale, max_iter=100)
    assert (d_hi == 0).float().mean() > (d_lo == 0).float().mean()
    cfg = CoresetConfig(kind="s", alpha=1.0 * scale, spca_max_iter=100)
    cand = factor_layer(lenet.conv2, cfg, 10)
    assert cand.keep is not None and 0 < len(cand.keep) < 50
    dropped = sorted(set(range(50)) - set(cand.keep.tolist()))
    assert dropped == zero_columns(weight_matrix(cand.module.mix, with_bias=False)).tolist()
    full = _with(lenet, "conv2", cand.module)
    pruned = _with(lenet, "conv2", cand.module)
    prune_outputs(pruned, channel_pairs(pruned)["conv2"], "conv2", cand.keep)
    assert pruned.fc1.in_features == 16 * len(cand.keep)
    with torch.no_grad():
        assert torch.allclose(full(batch), pruned(batch), atol=1e-5)


def _with(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    import copy

    out = copy.deepcopy(model)
    setattr(out, name, copy.deepcopy(module))
    return out


def test_channel_pairs_and_structural_pruning(lenet, batch):
    pairs = channel_pairs(lenet)
    assert pairs == {"conv1": ("conv2", [], 1), "conv2": ("fc1", [], 16), "fc1": ("fc2", [], 1)}
    # filters whose weights and bias are zero output zero: removing them keeps the function exactly
    model = _with(lenet, "conv2", lenet.conv2)
    dead = torch.tensor([3, 17, 40])
    with torch.no_grad():
        model.conv2.weight[dead] = 0
        model.conv2.bias[dead] = 0
        ref = model(batch)
    keep = torch.tensor([i for i in range(50) if i not in dead.tolist()])
    prune_outputs(model, pairs["conv2"], "conv2", keep)
    assert model.conv2.out_channels == 47 and model.fc1.in_features == 47 * 16
    with torch.no_grad():
        assert torch.allclose(model(batch), ref, atol=1e-5)


def test_ap_keeps_function_exact_when_nothing_is_pruned(lenet, batch):
    kept = {name: list(range(lenet.get_submodule(name).out_features if name.startswith("fc")
                             else lenet.get_submodule(name).out_channels)) for name in ("conv1", "conv2", "fc1")}
    same = apply_ap(lenet, kept)
    with torch.no_grad():
        assert torch.equal(same(batch), lenet(batch))
    y = lenet(batch).argmax(1)
    pruned, res = activation_prune(lenet, batch, y, tol=0.0)
    assert res.ref_acc == 1.0 and res.acc >= 1.0  # tol 0: the predictions on (x, y) are unchanged
    assert set(res.kept) == {"conv1", "conv2", "fc1"}
    assert count_params(pruned) <= count_params(lenet)
    with torch.no_grad():
        assert torch.equal(pruned(batch).argmax(1), y)


def test_ap_binary_search_prunes_with_loose_tolerance(lenet, batch):
    y = lenet(batch).argmax(1)
    pruned, res = activation_prune(lenet, batch, y, tol=1.0)
    assert all(len(v) == 1 for v in res.kept.values())  # anything passes: one filter per layer
    assert pruned(batch).shape == (64, 10)


def test_coreset_compress_respects_tolerance(lenet, batch):
    y = lenet(batch).argmax(1)
    for kind in ("k", "a", "svd"):
        model, outcomes, info = coreset_compress(lenet, CoresetConfig(kind=kind, em_max_iter=5), batch, y, tol=0.05)
        assert info["acc_search"] >= info["ref_acc_search"] - 0.05
        assert count_params(model) < count_params(lenet)
        assert any(isinstance(m, Factorized) for m in model.modules())
    small = uniform_compress(lenet, CoresetConfig(kind="k"), 0.05)
    assert count_params(small) < 0.1 * count_params(lenet)


@pytest.mark.parametrize("kind", ["s", "a"])
def test_fit_cache_reuses_fits_across_rank_searches_without_changing_them(lenet, batch, kind):
    """Fig. 7's tolerance sweep shares one FitCache: a second search (another tolerance) reuses the first's
    fits of an unchanged layer, and the compressed network equals the one computed without the cache."""
    y = lenet(batch).argmax(1)
    cfg = CoresetConfig(kind=kind, alpha=0.1, spca_max_iter=20, em_max_iter=5)
    cache = FitCache()
    coreset_compress(lenet, cfg, batch, y, tol=0.2, layers=["conv2"], fit_cache=cache)
    first = cache.misses
    assert first > 0 and cache.hits == 0
    cached, _, info_c = coreset_compress(lenet, cfg, batch, y, tol=0.05, layers=["conv2"], fit_cache=cache)
    plain, _, info_p = coreset_compress(lenet, cfg, batch, y, tol=0.05, layers=["conv2"])
    assert cache.hits > 0  # the exponential search probes the same small ranks at both tolerances
    assert info_c["layers"] == info_p["layers"]
    for (k1, p1), (k2, p2) in zip(cached.state_dict().items(), plain.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(p1, p2)
    # another weight matrix is another fit (the key holds the weights' bytes)
    other = LeNet5().eval()
    with torch.no_grad():
        other.conv2.weight.mul_(2.0)
    n = cache.misses
    factor_layer(other.conv2, cfg, 3, importance=torch.ones(other.conv2.out_channels) if kind == "a" else None,
                 fit_cache=cache)
    assert cache.misses == n + 1


@pytest.mark.parametrize("alphabet,n", [(1, 10), (2, 1), (32, 5000), (256, 20000)])
def test_huffman_roundtrip(alphabet, n):
    rng = np.random.default_rng(alphabet)
    sym = rng.choice(alphabet, size=n, p=rng.dirichlet(np.full(alphabet, 0.3)))
    lengths = code_lengths(np.bincount(sym, minlength=alphabet))
    data, nbits = encode(sym, lengths)
    assert len(data) == (nbits + 7) // 8
    np.testing.assert_array_equal(decode(data, nbits, lengths, n), sym)
    freq = np.bincount(sym, minlength=alphabet) / n
    entropy = -(freq[freq > 0] * np.log2(freq[freq > 0])).sum()
    assert entropy <= nbits / n < entropy + 1 + 1e-9  # Huffman is within one bit of the entropy


def test_gap_coding_roundtrip():
    rng = np.random.default_rng(0)
    for n in (0, 1, 50, 3000):
        pos = np.sort(rng.choice(20000, size=n, replace=False)).astype(np.int64)
        np.testing.assert_array_equal(positions_from_gaps(gap_symbols(pos, 31), 31), pos)


def test_kmeans_1d_shares_weights():
    v = torch.cat([torch.randn(500) * 0.01 + c for c in (-1.0, 0.2, 3.0)])
    cent, assign = kmeans_1d(v, 3)
    assert torch.allclose(cent.sort().values, torch.tensor([-1.0, 0.2, 3.0]), atol=0.01)
    assert len(assign.unique()) == 3


def test_deep_compression_serialised_size_matches_disk(lenet, batch, tmp_path):
    fac = uniform_compress(lenet, CoresetConfig(kind="k"), 0.1)
    model, quantized = deep_compress(fac, DCConfig(prune={"conv": 0.3, "linear": 0.7}, retrain_epochs=0,
                                                  finetune_epochs=0, bits={"conv": 8, "linear": 5}),
                                     train=lambda *a: None)
    sp = sparsity(model)
    assert sp["fc1.basis"] == pytest.approx(0.3, abs=0.01)
    for name, q in quantized.items():
        assert len(q.codebook) == 2 ** (8 if "conv" in name else 5)
        assert torch.equal(q.dense(), model.get_submodule(name).weight.detach())
    path = tmp_path / "m.dcnn"
    size = save_model(model, path, LENET_CFG, quantized, gap_bits=5)
    assert size.file_bytes == path.stat().st_size
    assert size.file_bytes == size.header_bytes + size.weights_bytes
    loaded, header = load_model(path)
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model(batch), atol=1e-5)
    raw = tmp_path / "raw.dcnn"
    raw_size = save_model(model, raw, LENET_CFG)
    assert raw_size.file_bytes > 3 * size.file_bytes  # 32-bit dense vs pruned + ≤8-bit + Huffman
    assert header["architecture"][0]["name"] == "conv1"


def test_parent_roundtrip_raw(lenet, batch, tmp_path):
    size = save_model(lenet, tmp_path / "p.dcnn", LENET_CFG)
    assert size.weights_bytes == 4 * count_params(lenet)
    loaded, _ = load_model(tmp_path / "p.dcnn")
    with torch.no_grad():
        assert torch.equal(loaded(batch), lenet(batch))


def test_method_config_validation():
    from coresetlab.errors import ConfigError

    m = DubeyMethod(variants=["ap_k", "s", "dc"], deep_compression_by_variant={"dc": {"prune": 0.9}})
    assert [v.name for v in m.variants] == ["ap_k", "s", "dc"]
    assert m.variants[0].ap and m.variants[0].deep_compression and not m.variants[1].ap
    assert m.dc_config("dc").prune == 0.9 and m.dc_config("ap_k").prune != 0.9
    for bad in ({"variants": ["ap_x"]}, {"ap": {"tol": 2}}, {"coreset": {"sample_fraction": 0}},
                {"coreset": {"nope": 1}}, {"deep_compression": {"bits": 4, "what": 1}}):
        with pytest.raises(ConfigError):
            DubeyMethod(**bad)


@pytest.mark.parametrize("mode", ["binary", "exponential"])
def test_smallest_passing_finds_threshold(mode):
    from coresetlab.methods.dubey.search import smallest_passing

    for n in (1, 2, 7, 64, 300):
        for t in {1, 2, n // 2 + 1, n, n + 1}:
            k, trace = smallest_passing(1, n, lambda k, t=t: k >= t, mode=mode)
            assert k == (t if t <= n else None)
            assert len(trace) <= 2 * np.log2(n + 1) + 3


def test_independent_budget_applies_all_layers_and_drops_zero_filters(lenet, batch):
    y = lenet(batch).argmax(1)
    scale = float(weight_matrix(lenet.conv2).norm(dim=0).median())
    cfg = CoresetConfig(kind="s", alpha=0.5 * scale, spca_max_iter=50)
    model, outcomes, info = coreset_compress(lenet, cfg, batch, y, tol=1.0, budget="independent",
                                             layers=["conv1", "conv2"])
    assert info["budget"] == "independent" and all(o.rank == 1 for o in outcomes)
    assert isinstance(model.conv1, Factorized) and isinstance(model.conv2, Factorized)
    assert model.fc1.in_features == 16 * model.conv2.out_channels
    assert model(batch).shape == (64, 10)
    assert sum(o.params_after for o in outcomes) == sum(
        sum(p.numel() for p in model.get_submodule(o.name).parameters()) for o in outcomes)
