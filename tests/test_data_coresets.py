"""Data coresets (AutoCL §4.1): losses, sensitivities, sampling, measures, the learned-coreset trainer,
query sets, the task's config plumbing, and both experiments end to end (profile=smoke)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import load_results
from coresetlab.errors import ConfigError
from coresetlab.methods.autocl.data_coresets import (
    CoresetBatch,
    DataProblem,
    LearnedCoreset,
    LinearRegressionLoss,
    LogisticRegressionLoss,
    SamplingCoreset,
    err_avg,
    err_opt,
    leverage_scores,
    leverage_sensitivity,
    near_convex_logistic_sensitivity,
    sample_coresets,
    size_buckets,
    with_intercept,
)
from coresetlab.methods.autocl.data_losses import _SoftplusSum
from coresetlab.methods.autocl.objective import loss_ratio_error
from coresetlab.methods.autocl.queries import QueryRecipe, load_or_make_query_set, trajectory_plan

F64 = torch.float64


def regression_problem(n: int = 400, seed: int = 0) -> DataProblem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=F64) + torch.tensor([9.0, 57.0], dtype=F64)
    y = x @ torch.tensor([1.5, -2.0], dtype=F64) + 3.0 + torch.randn(n, generator=g, dtype=F64)
    return DataProblem.from_arrays(LinearRegressionLoss(), x, y)


def classification_problem(n: int = 400, seed: int = 0) -> DataProblem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=F64)
    y = torch.where(x[:, 0] + 0.5 * torch.randn(n, generator=g, dtype=F64) > 0.8, 1.0, -1.0).to(F64)
    return DataProblem.from_arrays(LogisticRegressionLoss(), x, y)


def queries_for(problem: DataProblem, count: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(count, problem.x.shape[1] + 1, generator=g, dtype=F64)


def full_as_coreset(problem: DataProblem) -> CoresetBatch:
    return CoresetBatch("full", problem.x[None], problem.y[None], problem.w[None],
                        torch.tensor([problem.n]), torch.tensor([0]))


# --- losses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [regression_problem, classification_problem])
def test_loss_of_full_set_as_coreset_is_exactly_zero(make):
    p = make()
    q = queries_for(p, 50)
    f = p.loss.value(p.x, p.y, p.w, q)
    assert torch.equal(loss_ratio_error(p.loss.value(p.x, p.y, p.w, q), f), torch.zeros(50, dtype=F64))
    assert float(err_avg(p.loss, full_as_coreset(p), q, f)[0]) == 0.0


def test_linear_loss_moment_form_equals_the_residual_sum():
    p = regression_problem()
    q = queries_for(p, 7)
    w = torch.rand(p.n, dtype=F64)
    direct = ((with_intercept(p.x) @ q.T - p.y[:, None]) ** 2 * w[:, None]).sum(0)
    torch.testing.assert_close(p.loss.value(p.x, p.y, w, q), direct, rtol=1e-10, atol=0)


def test_logistic_loss_formula_and_fused_gradient():
    p = classification_problem(60)
    q = queries_for(p, 5)
    w = torch.rand(p.n, dtype=F64)
    a, b = q[:, :-1], q[:, -1]
    direct = 0.5 * (a * a).sum(1) + (w[:, None] * torch.log1p(torch.exp(-p.y[:, None] * (p.x @ a.T + b)))).sum(0)
    torch.testing.assert_close(p.loss.value(p.x, p.y, w, q), direct)
    zt = torch.randn(2, 6, 4, dtype=F64, requires_grad=True)
    u = torch.rand(2, 6, dtype=F64, requires_grad=True)
    qq = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_SoftplusSum.apply, (zt, u, qq))


def test_minimisers_linear_closed_form_and_logistic_against_sklearn():
    from sklearn.linear_model import LogisticRegression

    p = regression_problem()
    w = torch.rand(p.n, dtype=F64) + 0.5
    q = p.loss.minimize(p.x, p.y, w)
    ref = np.linalg.lstsq(with_intercept(p.x).numpy() * np.sqrt(w.numpy())[:, None],
                          p.y.numpy() * np.sqrt(w.numpy()), rcond=None)[0]
    np.testing.assert_allclose(q.numpy(), ref, rtol=1e-8)

    c = classification_problem()
    w = torch.rand(c.n, dtype=F64) + 0.5
    q = c.loss.minimize(c.x[None].expand(2, -1, -1), c.y[None].expand(2, -1), torch.stack([w, 2 * w]))
    for i, scale in enumerate((1.0, 2.0)):
        sk = LogisticRegression(C=1.0, solver="newton-cg", tol=1e-12, max_iter=1000)
        sk.fit(c.x.numpy(), c.y.numpy(), sample_weight=scale * w.numpy())
        np.testing.assert_allclose(q[i].numpy(), np.r_[sk.coef_[0], sk.intercept_], atol=1e-5)


# --- sensitivities and sampling -------------------------------------------------------------------

def test_leverage_scores_sum_to_rank():
    p = regression_problem()
    lev = leverage_sensitivity(p.x, p.y, p.w)
    assert lev.min() >= 0 and lev.max() <= 1 + 1e-12
    assert float(lev.sum()) == pytest.approx(4.0, abs=1e-9)  # rank [X | 1 | y] = 4
    deficient = torch.cat([p.x, p.x[:, :1] * 2.0, torch.ones(p.n, 1, dtype=F64)], 1)  # rank 3 of 4 columns
    assert float(leverage_scores(deficient).sum()) == pytest.approx(3.0, abs=1e-9)


def test_near_convex_logistic_sensitivity_formula():
    c = classification_problem(200)
    s = near_convex_logistic_sensitivity(c.x, c.y, c.w, reg=1.0)
    for label in (-1.0, 1.0):
        idx = c.y == label
        lev = leverage_scores(with_intercept(c.x[idx]))
        n_c = float(idx.sum())
        torch.testing.assert_close(s[idx], 32.0 * n_c * (2.0 / n_c + lev))
    assert torch.equal(c.loss.sensitivity(c.x, c.y, c.w), s)  # the logistic loss's default bound


@pytest.mark.parametrize("make,bound", [(regression_problem, "leverage"), (regression_problem, "uniform"),
                                        (classification_problem, "near_convex")])
def test_sampling_weights_are_unbiased(make, bound):
    p = make()
    q = queries_for(p, 3)
    s = p.loss.sensitivity(p.x, p.y, p.w, bound)
    idx, u = sample_coresets(s, p.w, 40, 4000, torch.Generator().manual_seed(0))
    f_c = p.loss.value(p.x[idx], p.y[idx], u, q)  # (4000, 3)
    reg = 0.5 * (q[:, :-1] ** 2).sum(1) if isinstance(p.loss, LogisticRegressionLoss) else 0.0
    f_full = p.loss.value(p.x, p.y, p.w, q)
    torch.testing.assert_close((f_c - reg).mean(0), f_full - reg, rtol=0.03, atol=0)
    if bound == "uniform":
        assert torch.allclose(u, torch.full_like(u, p.n / 40))


def test_sampling_method_is_grid_independent_and_redraws_single_class():
    p = classification_problem()
    method = SamplingCoreset(name="sensitivity", bound="auto", reps=6)
    both = method.build(p, [20, 30], seed=5)
    alone = method.build(p, [30], seed=5)
    torch.testing.assert_close(both.x[both.sizes == 30, :30], alone.x)
    assert bool(p.loss.valid(both.y, both.u).all())
    assert [m for _, m in size_buckets(both.sizes)] == [20, 30]
    with pytest.raises(ConfigError, match="sizes"):
        method.build(p, [p.n + 1], seed=0)


# --- measures -----------------------------------------------------------------------------------------

def test_err_measures_on_a_hand_made_case():
    # P: (x, y) = (0,0), (1,1), (2,2), (3,4); C = {(0,0), (3,4)} with weights 2, 2.
    loss = LinearRegressionLoss()
    p = DataProblem.from_arrays(loss, [[0.0], [1.0], [2.0], [3.0]], [0.0, 1.0, 2.0, 4.0])
    c = CoresetBatch("hand", torch.tensor([[[0.0], [3.0]]], dtype=F64), torch.tensor([[0.0, 4.0]], dtype=F64),
                     torch.tensor([[2.0, 2.0]], dtype=F64), torch.tensor([2]), torch.tensor([0]))
    q = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)  # f(P) = 1, 21; f(C) = 2, 32
    f_full = loss.value(p.x, p.y, p.w, q)
    torch.testing.assert_close(f_full, torch.tensor([1.0, 21.0], dtype=F64))
    assert float(err_avg(loss, c, q, f_full)[0]) == pytest.approx((1.0 + 11.0 / 21.0) / 2)
    # q*_P = (1.3, -0.2), f(P, q*_P) = 0.3; q*_C = (4/3, 0), f(P, q*_C) = 5/9
    q_opt = loss.minimize(p.x, p.y, p.w)
    torch.testing.assert_close(q_opt, torch.tensor([1.3, -0.2], dtype=F64))
    f_opt = loss.value(p.x, p.y, p.w, q_opt[None])[0]
    assert float(f_opt) == pytest.approx(0.3)
    assert float(err_opt(loss, c, p, f_opt)[0]) == pytest.approx(abs(1 - (5 / 9) / 0.3))


# --- learned coresets and queries --------------------------------------------------------------------

@pytest.mark.parametrize("make", [regression_problem, classification_problem])
def test_learned_coresets_improve_on_their_init(make, tmp_path):
    p = make()
    recipe = QueryRecipe(starts=4, lr=0.05, batch_size=100, epochs=10, keep=0.5, split=(120, 40, 40))
    qs = load_or_make_query_set(p, recipe, tmp_path, "toy:0")
    logistic = isinstance(p.loss, LogisticRegressionLoss)
    method = LearnedCoreset(reps=2, epochs=4, lr=0.05, queries_per_step=20, lam=0.0 if logistic else 1.0,
                            learn_weights=not logistic, learn_targets=not logistic)
    batch = method.build(p, [10, 15], seed=0, queries=qs)
    assert batch.x.shape == (4, 15, p.x.shape[1]) and batch.sizes.tolist() == [10, 10, 15, 15]
    assert torch.equal(batch.u[:2, 10:], torch.zeros(2, 5, dtype=F64))  # padding stays weightless
    assert min(batch.info["best_val_err"]) < batch.info["val_history"][0]  # training helped
    if logistic:
        assert set(batch.y[batch.u > 0].tolist()) <= {-1.0, 1.0}
        for row, m in zip(batch.u, batch.sizes.tolist()):  # frozen equal weights n/m
            assert torch.allclose(row[:m], torch.full((m,), p.n / m, dtype=F64))


def test_query_sets_split_fill_and_cache(tmp_path):
    p = regression_problem(300)
    recipe = QueryRecipe(starts=2, lr=0.01, batch_size=100, epochs=3, keep=0.5, split=(30, 10, 10))
    plan = trajectory_plan(p.n, recipe)
    assert plan["steps_per_epoch"] == 3 and plan["kept_per_epoch"] == 2 and plan["starts"] == 9  # 50 / 6
    first = load_or_make_query_set(p, recipe, tmp_path, "toy:1")
    again = load_or_make_query_set(p, recipe, tmp_path, "toy:1")
    assert first.sizes() == {"train": 30, "val": 10, "test": 10} and first.info["starts"] == 9
    assert not first.info["cached"] and again.info["cached"]
    assert torch.equal(first.train, again.train) and torch.equal(first.f_test, again.f_test)
    torch.testing.assert_close(first.f_val, p.loss.value(p.x, p.y, p.w, first.val))
    with pytest.raises(ConfigError):
        QueryRecipe(split=(10, 10))


# --- task plumbing ---------------------------------------------------------------------------------

def test_method_configs_fill_from_the_recipe_and_sizes_restrict_the_grid(compose):
    from coresetlab.tasks.autocl.data_coreset import grid_sizes, run_methods

    cfg = compose("+experiment=logreg_autocl", "profile=paper")
    methods = run_methods(cfg)
    assert [m.name for m in methods] == ["learned", "uniform", "sensitivity"]
    learned, uniform, sens = methods
    assert (learned.reps, learned.epochs, learned.lr, learned.queries_per_step, learned.lam) == (5, 1000, 1e-3, 100, 0.0)
    assert not learned.learn_weights and not learned.learn_targets
    assert (uniform.reps, uniform.bound, sens.reps, sens.bound) == (100, "uniform", 100, "near_convex")
    assert grid_sizes(cfg) == [100, 200, 300, 400, 500]
    assert grid_sizes(compose("+experiment=logreg_autocl", "coreset_method.size=300")) == [300]
    cfg = compose("+experiment=linreg_autocl", "coreset_method=uniform_data", "coreset_method.reps=7")
    assert [(m.name, m.reps) for m in run_methods(cfg)] == [("uniform", 7), ("sensitivity", 100)]
    with pytest.raises(ConfigError, match="does not have"):
        run_methods(compose("+experiment=linreg_autocl", "+task.recipe.uniform.epochs=3"))


# --- end to end ------------------------------------------------------------------------------------

def check_run(run_dir, label: str, sizes: list[int]) -> dict:
    res = load_results(run_dir)
    assert res["status"] == "ok" and res["dataset"] == label and res["profile"] == "smoke"
    rows = res["table"]
    assert {r["method"] for r in rows} == {"learned", "uniform", "sensitivity"}
    assert sorted({r["size"] for r in rows}) == sizes
    assert all(r["err_opt"] >= 0 and r["err_avg"] >= 0 for r in rows)
    assert len([r for r in rows if r["method"] == "uniform"]) == 5 * len(sizes)
    for name in ("learned", "uniform", "sensitivity"):
        assert f"{name}_err_avg_m{sizes[0]}" in res["metrics"]
    assert 0 <= res["metrics"]["paper_shape_err_avg"] <= 1
    q = res["extra"]["queries"]
    assert (q["train"], q["val"], q["test"]) == (300, 100, 100)
    assert {"data", "queries", "coresets_learned", "metrics"} <= set(res["stage_times_s"])
    return res


def test_linreg_smoke_end_to_end_with_report(run_cli, tmp_path):
    _, run_dir = run_cli("+experiment=linreg_autocl", "dataset=california_housing", "profile=smoke")
    res = check_run(run_dir, "california_housing (stand-in for 3D Road)", [50, 100])
    assert res["artefact"] == "autocl/fig1" and res["extra"]["dataset"]["n"] == 3000
    out = tmp_path / "report"
    subprocess.run([sys.executable, "-m", "coresetlab.report", str(run_dir), "--out", str(out)], check=True,
                   capture_output=True, text=True, timeout=300)
    assert (out / "figures" / "autocl_fig1_fig1_smoke.png").is_file()
    assert (out / "tables" / "autocl_fig1_errors_by_size_smoke.csv").is_file()
    assert "stand-in for 3D Road" in (out / "REPRODUCTION.md").read_text()


def test_logreg_smoke_end_to_end(run_cli):
    _, run_dir = run_cli("+experiment=logreg_autocl", "profile=smoke")
    res = check_run(run_dir, "htru2", [100, 200])
    assert res["artefact"] == "autocl/fig2"
    assert res["extra"]["method_info"]["sensitivity"]["bound"] == "near_convex"


def test_road3d_missing_is_a_clear_error(run_cli, tmp_path):
    proc, run_dir = run_cli("+experiment=linreg_autocl", "profile=smoke", env={"CORESETLAB_DATA": str(tmp_path)},
                            expect=2)
    assert "3D_spatial_network.txt" in proc.stderr and str(tmp_path) in proc.stderr
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow
def test_logreg_size_sweep_multirun(run_cli, tmp_path):
    run_cli("-m", "+experiment=logreg_autocl", "profile=smoke", "coreset_method.size=100,200", "seed=0,1",
            env={"CORESETLAB_OUTPUTS": str(tmp_path)})
    runs = [load_results(f.parent) for f in tmp_path.rglob("results.json")]
    got = sorted((r["seed"], sorted({row["size"] for row in r["table"]})) for r in runs)
    assert got == [(0, [100]), (0, [200]), (1, [100]), (1, [200])]
