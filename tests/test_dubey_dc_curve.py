"""Issue 10 (Dubey LeNet-5): Deep Compression pruning schedules and operating points chosen on validation,
the rank search's layer order, Table 5's rank-1 bound, and Coreset-A's importance on non-finite input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import load_results
from coresetlab.errors import ConfigError, DataError
from coresetlab.methods.dubey.coreset import filter_importance
from coresetlab.methods.dubey.deep_compression import (
    DCConfig,
    deep_compress,
    deep_compress_path,
    effective_prune,
    magnitude_masks,
    select_point,
)
from coresetlab.methods.dubey.layers import factorize, factorized_params, n_params, weight_matrix
from coresetlab.methods.dubey.method import DubeyMethod
from coresetlab.methods.dubey.pruning import layer_order
from coresetlab.models.lenet5 import LeNet5

torch.set_num_threads(1)
THREADS = "torch_threads=1"
HAN = {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "fc2": 0.81}


@pytest.fixture()
def lenet() -> LeNet5:
    torch.manual_seed(0)
    return LeNet5().eval()


# -- pure functions -----------------------------------------------------------------------------------------
def test_effective_prune_scales_kept_fractions_and_caps_at_one():
    assert effective_prune(HAN, 1.0) == pytest.approx(HAN)
    half = effective_prune(HAN, 0.5)
    assert half == pytest.approx({k: 1 - (1 - v) / 2 for k, v in HAN.items()})  # half as many weights kept
    assert effective_prune(0.6, 3.0) == 0.0 and effective_prune({"conv": 0.9}, 2.0) == pytest.approx({"conv": 0.8})


def test_pruning_chain_nests_masks_and_costs_one_retrain_per_later_point(lenet):
    calls: list[tuple[int, str]] = []
    cfg = DCConfig(prune=HAN, prune_steps=2, retrain_epochs=3, finetune_epochs=2, kmeans_iters=5)
    points = list(deep_compress_path(lenet, cfg, [0.5, 1.0, 0.75], lambda m, e, ph: calls.append((e, ph)),
                                     retrain_epochs=1, finetune_epochs=0))
    assert [s for s, _, _ in points] == [1.0, 0.75, 0.5]  # least pruning first
    # first point: the full recipe (2 ramp steps x 3 epochs + 2 fine-tune); later: one 1-epoch step, no fine-tune
    assert calls == [(3, "dc_prune1"), (3, "dc_prune2"), (2, "dc_quantize"), (1, "dc_prune1_k0.75"),
                     (1, "dc_prune1_k0.5")]
    prev = None
    for s, model, quantized in points:
        for name, frac in effective_prune(HAN, s).items():
            w = model.get_submodule(name).weight
            assert (w != 0).float().mean().item() == pytest.approx(1 - frac, abs=2e-3)
            assert len(torch.unique(w[w != 0])) <= 2 ** (8 if name.startswith("conv") else 5)  # shared weights
            if prev is not None:  # a weight pruned at a point stays pruned at every later point
                assert not bool(((prev.get_submodule(name).weight == 0) & (w != 0)).any())
        assert set(quantized) == set(HAN)
        prev = model
    # one point at keep_scale 1 is exactly the single-shot deep_compress
    torch.manual_seed(0)
    single, _ = deep_compress(lenet, cfg, lambda m, e, ph: None)
    assert torch.equal(single.fc1.weight != 0, points[0][1].fc1.weight != 0)


def test_centroid_finetuning_goes_to_its_own_trainer(lenet):
    """``finetune`` (e.g. a smaller centroid learning rate, task.retrain.centroid_lr) trains only the k-means
    phases; the pruning retrains stay with ``train``."""
    calls: list[tuple[str, str]] = []
    cfg = DCConfig(prune=HAN, prune_steps=1, retrain_epochs=1, finetune_epochs=1, kmeans_iters=3)
    list(deep_compress_path(lenet, cfg, [1.0, 0.5], lambda m, e, ph: calls.append(("train", ph)),
                            finetune=lambda m, e, ph: calls.append(("finetune", ph))))
    assert calls == [("train", "dc_prune1"), ("finetune", "dc_quantize"), ("train", "dc_prune1_k0.5"),
                     ("finetune", "dc_quantize_k0.5")]


def test_schedule_must_cover_every_layer(lenet):
    with pytest.raises(ValueError, match="not covered"):
        magnitude_masks(lenet, {"conv1": 0.5, "conv2": 0.5, "fc1": 0.5})


def test_select_point_uses_only_validation_error_and_flags_failure():
    val, factor = [0.010, 0.011, 0.009, 0.020], [100.0, 150.0, 120.0, 300.0]
    assert select_point(val, factor, bound=0.0105) == (2, True)  # the largest factor within the bound
    assert select_point(val, factor, bound=0.05) == (3, True)
    assert select_point(val, factor, bound=0.001) == (2, False)  # none passes: lowest validation error, flagged


def test_method_resolves_schedules_and_validates_the_curve():
    sched = {"flat": {"conv": 0.6, "linear": 0.85}, "han": HAN}
    m = DubeyMethod(variants=["ap_k", "k", "dc"], prune_schedules=sched,
                    deep_compression={"prune": "flat"}, deep_compression_by_variant={"dc": {"prune": "han"}},
                    dc_curve={"variants": ["ap_k", "ap_a"], "schedules": ["flat", "han"], "keep_scales": [1.0, 0.5]})
    assert m.dc_config("dc").prune == HAN and m.dc_config("ap_k").prune == sched["flat"]
    assert [(n, c.prune, s) for n, c, s in m.dc_points("ap_k")] == [("flat", sched["flat"], [1.0, 0.5]),
                                                                     ("han", HAN, [1.0, 0.5])]
    assert [(n, s) for n, _, s in m.dc_points("dc")] == [("han", [1.0])]  # not on the curve: one point
    for bad in ({"deep_compression": {"prune": "nope"}}, {"deep_compression": {"keep_scale": 0}},
                {"dc_curve": {"variants": ["ap_k"], "schedules": ["nope"]}},
                {"dc_curve": {"variants": ["ap_k"], "keep_scales": [1.0, -1.0]}},
                {"dc_curve": {"variants": ["ap_x"]}},
                {"dc_curve": {"select_ref": "test"}}, {"coreset": {"order": "shallowest"}}):
        kw = {"variants": ["ap_k", "k"], "prune_schedules": sched, **bad}
        with pytest.raises(ConfigError):
            DubeyMethod(**kw)


def test_rank_one_bound_of_table5_follows_from_lenet5_shapes(lenet):
    """Table 5: a rank-r factorisation keeps r(d + N) of the d·N parameters, so rank 1 keeps >= (d + N)/(dN):
    conv1 (d = 5·5·1 + 1 = 26, N = 20) 46/520 = 8.8 %, fc2 (d = 500 + 1, N = 10) 511/5010 = 10.2 %; the
    paper's K/S/A fractions for them (0.02–0.06) are below that before Deep Compression."""
    bounds = {}
    for name in ("conv1", "conv2", "fc1", "fc2"):
        layer = lenet.get_submodule(name)
        d, n = weight_matrix(layer).shape
        w = weight_matrix(layer)
        rank1 = factorize(layer, w[:, :1].clone(), torch.ones(1, n))
        assert n_params(rank1) == factorized_params(d, n, 1) == d + n
        bounds[name] = (d + n) / n_params(layer)
    assert (weight_matrix(lenet.conv1).shape, weight_matrix(lenet.fc2).shape) == ((26, 20), (501, 10))
    assert round(bounds["conv1"], 4) == 0.0885 and round(bounds["fc2"], 4) == 0.1020
    assert round(bounds["conv2"], 4) == 0.0220 and round(bounds["fc1"], 4) == 0.0032


def test_layer_order_forward_is_shallowest_first_params_is_largest_first(lenet):
    names = ["conv1", "conv2", "fc1", "fc2"]
    assert layer_order(lenet, names, "forward") == names
    assert layer_order(lenet, names, "params") == ["fc1", "conv2", "fc2", "conv1"]


def test_filter_importance_raises_on_non_finite_or_negative_norms():
    assert torch.allclose(filter_importance(torch.tensor([[1.0, 3.0], [1.0, 3.0]])), torch.tensor([0.25, 0.75]))
    assert torch.equal(filter_importance(torch.zeros(4)), torch.full((4,), 0.25))  # zero output: exact
    for bad in (torch.tensor([1.0, float("nan")]), torch.tensor([[1.0, 2.0], [float("inf"), 1.0]]),
                torch.tensor([1.0, -0.5]), torch.tensor([3e38, 3e38])):
        with pytest.raises(DataError):
            filter_importance(bad)


# -- through the CLI (smoke profile, real MNIST subsets) ----------------------------------------------------
def test_dc_operating_points_are_chosen_on_validation(run_cli):
    _, run_dir = run_cli("+experiment=lenet5_dubey", "profile=smoke", THREADS, "coreset_method=dubey_ap_k",
                         "coreset_method.dc_curve.stop_after_fail=false", "coreset_method.dc_curve.select_tol=0.05",
                         "coreset_method.deep_compression.finetune_epochs=0", "coreset_method.dc_curve.finetune_epochs=0")
    res = load_results(run_dir)
    assert res["status"] == "ok"
    m, table = res["metrics"], res["table"]
    pts = [r for r in table if r["table"] == "dc_curve"]
    assert {(r["schedule"], r["keep_scale"]) for r in pts} == {("flat", 1.0), ("flat", 0.5), ("han", 1.0), ("han", 0.5)}
    bound = res["extra"]["variants"]["ap_k"]["dc"]["bound_val_err"]
    assert bound == pytest.approx(m["ap_k_coreset_val_err"] + 0.05)
    idx, passed = select_point([r["val_err"] for r in pts], [r["factor"] for r in pts], bound)
    assert [r["selected"] for r in pts] == [i == idx for i in range(len(pts))]
    chosen = pts[idx]
    assert m["ap_k_dc_selected_passed"] == float(passed) and m["ap_k_dc_keep_scale"] == chosen["keep_scale"]
    assert m["ap_k_factor"] == pytest.approx(chosen["factor"]) and m["ap_k_val_err"] == pytest.approx(chosen["val_err"])
    for r in pts:  # every point is a real file; factor = parent file bytes / its file bytes
        assert r["factor"] == pytest.approx(m["parent_bytes"] / r["bytes"]) and 0 < r["nonzero_fraction"] < 1
        assert Path(run_dir, "models", f"ap_k_{r['schedule']}_k{r['keep_scale']:g}.dcnn").stat().st_size == r["bytes"]
    for s in ("flat", "han"):  # within a chain, more pruning -> fewer nonzero weights
        a, b = (next(r for r in pts if r["schedule"] == s and r["keep_scale"] == k) for k in (1.0, 0.5))
        assert b["nonzero_params"] < a["nonzero_params"]
    layers = {r["layer"]: r for r in table if r["table"] == "layers"}
    assert all(0 < r["fraction_dc_nonzero"] <= r["fraction"] for r in layers.values())
    ap = res["extra"]["ap"]["filters"]
    n1 = ap["conv1"][0]  # conv1 filters AP kept: rank 1 or dense, whichever is smaller
    assert layers["conv1"]["fraction_rank1"] == pytest.approx(min(26 + n1, 26 * n1) / 520)
    # the rank search visits the layers from the shallowest (paper §3.6) by default
    assert res["extra"]["rank_search_order"] == "forward"
    assert [o["name"] for o in res["extra"]["variants"]["ap_k"]["coreset"]["layers"]] == ["conv1", "conv2", "fc1", "fc2"]


def test_rank_search_order_option(compose, lenet):
    from hydra.utils import instantiate

    from coresetlab.methods.dubey.compress import CoresetConfig, coreset_compress

    cfg = compose("+experiment=lenet5_dubey", "profile=smoke", "coreset_method=dubey_k")
    assert instantiate(cfg.coreset_method, _convert_="all").search.order == "forward"  # the paper's default
    cfg = compose("+experiment=lenet5_dubey", "profile=smoke", "coreset_method=dubey_k",
                  "coreset_method.coreset.order=params")
    order = instantiate(cfg.coreset_method, _convert_="all").search.order
    assert order == "params"
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    _, outcomes, _ = coreset_compress(lenet, CoresetConfig(kind="k"), x, lenet(x).argmax(1), tol=1.0, order=order)
    assert [o.name for o in outcomes] == ["fc1", "conv2", "fc2", "conv1"]  # largest first


def test_dc_rate_search_is_multi_objective_on_validation_data():
    from hydra import compose, initialize_config_dir

    from conftest import REPO

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["+experiment=lenet5_dubey", "hparams_search=dubey_dc_rates", "profile=fast"])
    sw = cfg.hydra.sweeper
    assert list(cfg.optimized_metric) == ["val_err", "compression_factor"] and list(sw.direction) == ["minimize",
                                                                                                     "maximize"]
    assert sw.params["coreset_method.deep_compression.prune"] == "choice(flat, han)"
    assert sw.params["coreset_method.dc_curve.variants"] == "[]"  # one point per trial


def test_table2_note_no_dc_point_reaches_the_parent_validation_error():
    """experiments/dubey_table2.yaml's why-note says no point of any AP+X Deep Compression curve, in any committed
    paper-profile record, comes back to the parent's validation error: checked here on the records in results/
    (a new record that breaks it fails this test, and the note must change)."""
    import json

    files = sorted((Path(__file__).resolve().parents[1] / "results" / "lenet5_dubey").glob("paper_*/results.json"))
    if not files:
        pytest.skip("no committed lenet5_dubey paper records")
    checked = 0
    for f in files:
        res = json.loads(f.read_text())
        parent_val_err = 1 - res["metrics"]["parent_val_acc"]
        pts = [r for r in res.get("table") or [] if r.get("table") == "dc_curve" and r["variant"].startswith("ap_")]
        for r in pts:
            assert r["val_err"] > parent_val_err, (f.parent.name, r)
        checked += len(pts)
    assert checked > 0
