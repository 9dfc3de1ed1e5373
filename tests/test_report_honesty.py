"""Report honesty (issue 10 §3-4): recorded overrides, modified recipes, no pooling across recipes, n = 1,
status per artefact against the manifest's tolerance, reference records in results/ and their publication."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import load_results

EXP = ["+experiment=lenet_autocl"]
ART = "test/art"
MANIFEST = {
    "id": ART, "paper": "autocl", "title": "Test artefact", "experiment": "lenet_autocl",
    "tables": [
        {"name": "t", "source": "runs", "rows": [
            {"label": "Learned", "where": {"method": "autocl_student"},
             "metrics": {"test_acc": {"paper": 0.98, "fmt": "pct"}}}]},
        {"name": "curve", "source": "records", "index": ["rate"], "columns": "method", "metrics": ["acc"]},
    ],
    "figures": [{"name": "fig", "source": "records", "x": "rate", "y": ["acc"], "hue": "method"}],
    "reproduce": {"runs": [{"overrides": ["+experiment=lenet_autocl"], "seeds": {"paper": [0, 1]}}]},
    "reproduced_if": [
        {"table": "t", "row": "Learned", "metric": "test_acc", "tol": 0.003},
        {"figure": "fig", "metric": "acc", "index": "rate", "hue": "method", "order": ["coreset", "uniform"],
         "better": "higher"},
    ],
}


@pytest.fixture(scope="module")
def configs(compose):
    """Real composed configs: the paper recipe and a modified one (seed-independent config ids)."""
    from coresetlab.resolvers import config_id

    base, mod = compose(*EXP), compose(*EXP, "task.finetune.optimizer.lr=0.01")
    return {"base": (base, config_id(base)), "mod": (mod, config_id(mod))}


def _manifests(tmp_path, **changes):
    d = tmp_path / "manifests"
    d.mkdir(exist_ok=True)
    (d / "test.yaml").write_text(yaml.safe_dump({**MANIFEST, **changes}, allow_unicode=True))
    return d


def _run(root, configs, name, *, which="base", seed=0, profile="paper", acc=0.98, curve=None, status="ok",
         recipe=(), sha="abcdef1234567", finished="2025-01-02T03:04:05+00:00"):
    """A finished run folder (results.json + the real resolved_config.yaml), without training."""
    cfg, cid = configs[which]
    d = root / name
    d.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), d / "resolved_config.yaml")
    table = [{"method": m, "rate": r, "acc": a} for (m, r), a in (curve or {}).items()]
    res = {"schema": 1, "experiment": "lenet_autocl", "artefact": ART, "profile": profile, "seed": seed,
           "run_id": f"{name}-{seed}-{profile}", "config_id": cid, "method": "autocl_student", "model": "m",
           "dataset": "mnist", "status": status, "metrics": {"test_acc": acc} if status == "ok" else {},
           "table": table, "wall_time_s": 1.0, "git_sha": sha, "finished_at": finished,
           "overrides": ["+experiment=lenet_autocl", f"seed={seed}", *recipe], "recipe_overrides": list(recipe)}
    (d / "results.json").write_text(json.dumps(res))
    return d


def _status(tmp_path, root, reference=(), **manifest_changes):
    from coresetlab.report.collect import load_runs
    from coresetlab.report.manifests import load_manifests
    from coresetlab.report.status import artefact_status
    from coresetlab.report.variants import label_recipes

    ms = load_manifests(_manifests(tmp_path, **manifest_changes))
    runs, recs = label_recipes(*load_runs([root], reference), ms)
    return artefact_status(ms[0], runs, recs)


GOOD = {("coreset", 0.5): 0.9, ("uniform", 0.5): 0.8, ("coreset", 0.9): 0.7, ("uniform", 0.9): 0.6}
HALF = {("coreset", 0.5): 0.9, ("uniform", 0.5): 0.8, ("coreset", 0.9): 0.5, ("uniform", 0.9): 0.6}


def test_cli_records_overrides_and_the_recipe_changing_ones(run_cli):
    # a task that fails at once still writes its record (with the overrides) -- no training needed
    _, run_dir = run_cli(*EXP, "profile=smoke", "seed=2", "torch_threads=1", "trainer.enable_progress_bar=false",
                         "optimizer.lr=0.01", "task._target_=builtins.len", expect=1)
    res = load_results(run_dir)
    assert "optimizer.lr=0.01" in res["overrides"] and "seed=2" in res["overrides"]
    assert not any(o.startswith("hydra.") for o in res["overrides"])  # Hydra keeps its own apart
    assert res["recipe_overrides"] == ["optimizer.lr=0.01", "task._target_=builtins.len"]


def test_which_overrides_change_the_recipe():
    from coresetlab.resolvers import is_recipe_override

    for o in ["seed=3", "profile=paper", "+experiment=x", "logger=wandb", "torch_threads=1", "force=true",
              "hydra.run.dir=/x", "hydra/launcher=joblib", "paths.cache_dir=/c", "trainer=gpu", "trainer.devices=2",
              "trainer.accelerator=gpu", "trainer.enable_progress_bar=false", "optimized_metric=val_acc"]:
        assert not is_recipe_override(o), o
    for o in ["optimizer.lr=0.01", "dataset=california_housing", "trainer=ddp", "trainer.precision=bf16-mixed",
              "+task.extra=1", "~task.finetune", "hparams_search=lenet_autocl_lr", "coreset_method=neuron_uniform"]:
        assert is_recipe_override(o), o


def test_modified_paper_run_is_labelled_and_never_a_reproduction(configs, tmp_path):
    from coresetlab.report.build import build_report

    root = tmp_path / "runs"
    _run(root, configs, "mod", which="mod", recipe=("task.finetune.optimizer.lr=0.01",), curve=GOOD)
    md = build_report([root], tmp_path / "rep", _manifests(tmp_path)).read_text()
    assert "paper (modified: task.finetune.optimizer.lr=0.01)" in md
    assert "**Status: no paper runs (1 paper-profile run(s) of a modified recipe not counted)**" in md
    # a planned override (the manifest's reproduce.runs) is part of the recipe, not a modification
    planned = {"runs": [{"overrides": [*EXP, "task.finetune.optimizer.lr=0.01"], "seeds": {"paper": [0]}}]}
    assert _status(tmp_path, root, reproduce=planned).status == "reproduced"
    # ... unless the plan marks it as an ablation: run by the plan, still a modified recipe, never counted
    ablation = {"runs": [{**planned["runs"][0], "ablation": True}]}
    assert _status(tmp_path, root, reproduce=ablation).status.startswith("no paper runs (1 paper-profile run(s)")


def test_runs_of_different_recipes_are_split_in_every_output_and_n1_is_not_pm0(configs, tmp_path):
    from coresetlab.report.build import build_report

    root = tmp_path / "runs"
    _run(root, configs, "a", acc=0.97, curve=GOOD)
    _run(root, configs, "b", which="mod", seed=1, acc=0.95, recipe=("task.finetune.optimizer.lr=0.01",), curve=HALF)
    out = tmp_path / "rep"
    md = build_report([root], out, _manifests(tmp_path)).read_text()
    assert "2 different recipes, not pooled" in md and "`task.finetune.optimizer.lr`" in md
    assert "| Learned [experiment defaults] | test_acc | 97.00 % (n = 1) | 1 | paper |" in md
    assert "| Learned [task.finetune.optimizer.lr=0.01] | test_acc | 95.00 % (n = 1) | 1 | paper (modified:" in md
    assert "96.00 %" not in md and "± 0.00" not in md and "± 0 " not in md
    csv = pd.read_csv(out / "tables" / "test_art_t_paper.csv")
    assert sorted(csv["mean"]) == [0.95, 0.97] and set(csv["n"]) == {1} and csv["std"].isna().all()
    tex = (out / "tables" / "test_art_t_paper.tex").read_text()
    assert "Learned [experiment defaults]" in tex and "Learned [task.finetune.optimizer.lr=0.01]" in tex
    curve = pd.read_csv(out / "tables" / "test_art_curve_paper.csv")
    assert "variant" in curve.columns and curve["variant"].nunique() == 2 and "recipe" in curve.columns
    assert (curve.drop(columns=["variant", "recipe", "metric", "rate"]).map(str).apply(
        lambda c: c.str.endswith("(n = 1)")).all().all())


def test_status_reproduced_partly_not_and_no_paper_runs(configs, tmp_path):
    root = tmp_path / "ok"
    _run(root, configs, "s0", seed=0, acc=0.981, curve=GOOD)
    _run(root, configs, "s1", seed=1, acc=0.979, curve=GOOD)
    st = _status(tmp_path, root)
    assert st.status == "reproduced" and st.n_seeds == 2 and all(c.passed for c in st.checks)
    assert "98.00 % vs 98.00 %" in st.versus and "coreset > uniform at 2/2 rate values" in st.versus

    part = tmp_path / "partly"
    _run(part, configs, "s0", acc=0.981, curve=HALF)
    st = _status(tmp_path, part)
    assert st.status == "partly (Δ acc: coreset > uniform at 1/2 rate values, fails at rate = 0.9)"
    assert _status(tmp_path, part, reproduced_if=[{**MANIFEST["reproduced_if"][1], "min_fraction": 0.5}]
                   ).status == "reproduced"
    named = _status(tmp_path, part, reproduced_if=[{**MANIFEST["reproduced_if"][1], "x_name": "pruning rate"}])
    assert named.status == "not reproduced (Δ acc: coreset > uniform at 1/2 pruning rate values, fails at pruning rate = 0.9)"

    bad = tmp_path / "bad"
    _run(bad, configs, "s0", acc=0.97, curve=HALF)
    st = _status(tmp_path, bad)
    assert st.status.startswith("not reproduced (Δ test_acc -1.00 pt; acc: coreset > uniform at 1/2")

    none = tmp_path / "none"
    _run(none, configs, "f0", profile="fast", acc=0.98, curve=GOOD)
    _run(none, configs, "p0", status="failed")
    assert _status(tmp_path, none).status == "no paper runs"

    # a check whose filter matches no eligible run is neither passed nor failed
    off = [{**MANIFEST["reproduced_if"][1], "where": {"method": "no_such_method"}}]
    off_st = _status(tmp_path, root, reproduced_if=off).status
    assert off_st.startswith("no eligible runs for its checks (")
    # ... and says which runs would count and what the runs have (e.g. 3D Road vs its stand-in)
    assert "only runs with method=no_such_method count (these runs have method: coreset, uniform)" in off_st
    mixed = _status(tmp_path, root, reproduced_if=[MANIFEST["reproduced_if"][0], *off])
    assert mixed.status == "reproduced; 1 check(s) without eligible runs"


def test_status_names_the_figure_when_several_and_says_a_reason_once(configs, tmp_path):
    root = tmp_path / "runs"
    _run(root, configs, "s0", acc=0.981, curve=HALF)
    order = MANIFEST["reproduced_if"][1]
    figs = [*MANIFEST["figures"], {**MANIFEST["figures"][0], "name": "fig_b"}]
    st = _status(tmp_path, root, figures=figs, reproduced_if=[order, {**order, "figure": "fig_b"}])
    assert st.status == "not reproduced (Δ fig acc: coreset > uniform at 1/2 rate values, fails at rate = 0.9; " \
                        "fig_b acc: coreset > uniform at 1/2 rate values, fails at rate = 0.9)"
    assert st.versus.startswith("fig acc: coreset > uniform at 1/2") and "; fig_b acc: coreset > uniform" in st.versus
    # one figure: no prefix (see test_status_reproduced_partly_not_and_no_paper_runs)
    off = {**order, "where": {"method": "no_such_method"}}
    st = _status(tmp_path, root, reproduced_if=[off, {**off, "metric": "acc_other"}])
    assert st.status.count("only runs with method=no_such_method") == 1
    assert st.versus.count("only runs with method=no_such_method") == 1


def test_malformed_status_check_names_the_manifest(tmp_path):
    from coresetlab.report.manifests import load_manifests

    d = _manifests(tmp_path, reproduced_if=[{"table": "t", "row": "Nope", "metric": "test_acc", "tol": 0.01}])
    with pytest.raises(ValueError, match=r"test\.yaml: reproduced_if\[0\]: table 't' has no row 'Nope'"):
        load_manifests(d)


def test_publish_copies_only_ok_records_of_the_profile(configs, tmp_path):
    from coresetlab.report.publish import main

    src, dest = tmp_path / "outputs" / "runs" / "lenet_autocl", tmp_path / "results"
    _run(src, configs, "paper_s0_x", curve=GOOD)
    _run(src, configs, "paper_s1_y", seed=1, status="failed")
    _run(src, configs, "fast_s0_z", profile="fast")
    (src / "paper_s0_x" / "run.log").write_text("big logs stay out")
    (src / "paper_s0_x" / "models").mkdir()
    (src / "paper_s0_x" / "models" / "parent.dcnn").write_bytes(b"model files stay out")
    (src / "paper_s0_x" / "filters").mkdir()
    (src / "paper_s0_x" / "filters" / "conv1_parent.npy").write_bytes(b"figure inputs travel")
    assert main(["--from", str(src.parent), "--to", str(dest)]) == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "lenet_autocl/paper_s0_x/filters/conv1_parent.npy",
        "lenet_autocl/paper_s0_x/resolved_config.yaml", "lenet_autocl/paper_s0_x/results.json"]
    assert main(["--from", str(src.parent), "--to", str(dest), "--profile", "fast"]) == 0
    assert json.loads((dest / "lenet_autocl" / "fast_s0_z" / "results.json").read_text())["profile"] == "fast"
    assert not (dest / "lenet_autocl" / "paper_s1_y").exists()


def test_reference_rows_are_labelled_and_outputs_win(configs, tmp_path):
    from coresetlab.report.build import build_report

    ref, outs = tmp_path / "results", tmp_path / "outputs"
    _run(ref / "lenet_autocl", configs, "s0", acc=0.981, curve=GOOD)
    _run(ref / "lenet_autocl", configs, "s1", seed=1, acc=0.979, curve=GOOD)
    md = build_report([outs], tmp_path / "rep", _manifests(tmp_path), reference=[ref]).read_text()
    assert "| Learned | test_acc | 98.00 % ± 0.14 % | 2 | paper | 98.00 % | 0.00 pt | reference runs (abcdef1, 2025-01-02) |" in md
    assert "| `test/art` (lenet_autocl) | reproduced |" in md
    # the same run (run_id) in outputs/ replaces its reference copy
    _run(outs, configs, "s1", seed=1, acc=0.960, curve=GOOD, sha="1234567aaaa", finished="2025-02-01T00:00:00")
    st = _status(tmp_path, outs, reference=[ref])
    assert st.status == "partly (Δ test_acc -0.95 pt)" and st.n_seeds == 2  # (98.1 + 96.0) / 2 vs 98.0
    assert st.source == "reference run (abcdef1, 2025-01-02) + outputs"


def test_readme_status_block_is_rewritten(configs, tmp_path):
    from coresetlab.report.__main__ import readme
    from coresetlab.report.status import BEGIN, END

    ref = tmp_path / "results"
    _run(ref, configs, "s0", acc=0.981, curve=GOOD)
    path = tmp_path / "README.md"
    path.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nrest\n")
    assert readme(_manifests(tmp_path), [ref], path) == 0
    text = path.read_text()
    assert "old" not in text and text.endswith(f"{END}\n\nrest\n")
    assert "| `test/art` (lenet_autocl) | reproduced | test_acc 98.10 % vs 98.00 %" in text


def test_one_style_per_method_and_titles_fit(compose, tmp_path):
    import matplotlib.pyplot as plt

    from coresetlab.report import style
    from coresetlab.report.collect import canonical_methods

    cfg = compose("+experiment=neuron_approx")
    run = tmp_path / "r"
    run.mkdir()
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), run / "resolved_config.yaml")
    df = canonical_methods(pd.DataFrame({"method": ["coreset", "uniform", "percentile"], "run_dir": [str(run)] * 3}))
    assert list(df["method"]) == ["neuron_coreset", "neuron_uniform", "neuron_percentile"]
    assert style.series("dubey_ap_k")["color"] == style.series("ap_k")["color"]
    a, b = style.series("neuron_coreset [lr=1]", ["neuron_coreset [lr=1]", "neuron_coreset [lr=2]"]), \
        style.series("neuron_coreset [lr=2]", ["neuron_coreset [lr=1]", "neuron_coreset [lr=2]"])
    assert a["color"] == b["color"] and a["linestyle"] != b["linestyle"] and a["label"] != b["label"]
    fig, _ = plt.subplots(1, 1, figsize=(5.2, 4.0))
    style.finish(fig, "Neuron coresets Figure 2 — single-neuron approximation error vs coreset size [fig2c, "
                      "profile=paper]", fontsize=10)
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    plt.close(fig)


def test_records_of_two_recipes_with_their_own_variant_column_stay_apart():
    """Dubey records carry a 'variant' column; runs of two recipes get a separate config column, never pooled."""
    import pandas as pd

    from coresetlab.report.tables import records_table

    recs = pd.DataFrame({
        "profile": ["fast"] * 4, "status": ["ok"] * 4, "config_id": ["c1", "c1", "c2", "c2"],
        "recipe_overrides": [("a=1",), ("a=1",), ("a=2",), ("a=2",)], "variant": ["k", "s", "k", "s"],
        "m": [1.0, 2.0, 3.0, 4.0],
    })
    t = records_table({"metrics": ["m"], "index": "variant"}, recs, "fast")
    assert len(t) == 4 and sorted(t["config_variant"].unique()) == ["a=1", "a=2"]


def test_records_split_by_experiment_label_only_configs_that_share_an_experiment():
    """A table indexed by experiment keeps one config per experiment apart already: no recipe column then;
    two configs of one experiment are still labelled (never pooled), by what differs between them only."""
    import pandas as pd

    from coresetlab.report.tables import records_table

    recs = pd.DataFrame({
        "profile": ["fast"] * 4, "status": ["ok"] * 4, "experiment": ["e1", "e2", "e3", "e3"],
        "config_id": ["c1", "c2", "c3", "c4"],
        "recipe_overrides": [("x=1",), ("x=2",), ("b=1",), ("b=2",)], "variant": ["k"] * 4,
        "m": [1.0, 2.0, 3.0, 4.0],
    })
    one_each = records_table({"metrics": ["m"], "index": ["experiment", "variant"]}, recs[:2], "fast")
    assert "config_variant" not in one_each.columns and len(one_each) == 2
    mixed = records_table({"metrics": ["m"], "index": ["experiment", "variant"]}, recs, "fast")
    assert len(mixed) == 4
    assert dict(zip(mixed["experiment"] + mixed["config_variant"], mixed["mean"])) == {
        "e1": 1.0, "e2": 2.0, "e3b=1": 3.0, "e3b=2": 4.0}


def test_string_settings_of_a_record_are_filterable_columns(configs, tmp_path):
    """A record's string-valued ``extra`` entries (e.g. the Dubey rank search order) become run and record columns
    that manifests can filter on (``where``); report-owned names (``recipe``) are never taken from a record."""
    from coresetlab.report.collect import load_runs
    from coresetlab.report.tables import select

    root = tmp_path / "runs"
    _run(root, configs, "a", curve=GOOD)
    _run(root, configs, "b", seed=1, curve=GOOD)
    for name, order in (("a", "forward"), ("b", "params")):
        f = root / name / "results.json"
        res = json.loads(f.read_text())
        res["extra"] = {"rank_search_order": order, "recipe": "text", "nested": {"x": 1}, "n": 3}
        f.write_text(json.dumps(res))
    runs, recs = load_runs([root])
    assert sorted(runs["rank_search_order"]) == ["forward", "params"] and "nested" not in runs and "n" not in runs
    assert "recipe" not in runs.columns and set(recs["rank_search_order"]) == {"forward", "params"}
    assert list(select(runs, {"rank_search_order": "params"})["seed"]) == [1]
    assert len(select(recs, {"rank_search_order": "forward"})) == len(GOOD)


def test_a_parent_metric_takes_one_run_per_parent_across_planned_configs(configs, tmp_path):
    """Two planned configs that share cached parents (e.g. Dubey's variant splits): a plain check reads the newest
    config only; a ``per: parent_key`` check counts every parent once, whichever config measured it."""
    from coresetlab.report.manifest_schema import check_manifest

    mod = ("task.finetune.optimizer.lr=0.01",)
    root = tmp_path / "runs"
    for name, which, seed, acc, day in (("a0", "base", 0, 0.97, 1), ("a1", "base", 1, 0.99, 1),
                                        ("b0", "mod", 0, 0.97, 3)):
        d = _run(root, configs, name, which=which, seed=seed, acc=acc, recipe=mod if which == "mod" else (),
                 finished=f"2025-01-0{day}T00:00:00+00:00")
        res = json.loads((d / "results.json").read_text())
        res["extra"] = {"parent": {"key": f"parent-{seed}", "cached": True}}
        (d / "results.json").write_text(json.dumps(res))
    planned = {"runs": [{"overrides": EXP, "seeds": {"paper": [0, 1]}},
                        {"overrides": [*EXP, *mod], "seeds": {"paper": [0]}}]}
    check = {"table": "t", "row": "Learned", "metric": "test_acc", "tol": 0.003}
    newest = _status(tmp_path, root, reproduce=planned, reproduced_if=[check])
    assert newest.status.startswith("not reproduced") and "n = 1" in newest.versus and "newest of 2 configs" in newest.versus
    pooled = _status(tmp_path, root, reproduce=planned, reproduced_if=[{**check, "per": "parent_key"}])
    assert pooled.status == "reproduced" and "n = 2" in pooled.versus
    assert "one run per parent_key, 2 of 3 runs, 2 config(s)" in pooled.versus
    bad = {**MANIFEST, "reproduced_if": [{**check, "per": "seed"}]}
    assert any("per must be one of ['parent_key']" in p for p in check_manifest(bad))
