"""Dubey supp. Fig. 7 in the report: split runs' curves keep their names, modified recipes are named and drawn
apart, and each curve's line is its Pareto front (no data, seconds)."""

from __future__ import annotations

import pandas as pd

from coresetlab.report.plots_dubey import fig7, pareto_front
from coresetlab.report.variants import with_variant


def test_pareto_front_keeps_the_points_no_smaller_point_beats():
    x = pd.Series([0.5, 0.1, 0.2, 0.3, 0.15])
    y = pd.Series([0.97, 0.90, 0.95, 0.93, 0.89])
    # sorted by x: 0.1 (0.90) kept, 0.15 (0.89) dominated, 0.2 (0.95) kept, 0.3 (0.93) dominated, 0.5 kept
    assert pareto_front(x, y) == [1, 2, 0]


def _records() -> pd.DataFrame:
    rows = []
    for cid, variant, recipe, ovs in [
        ("A", "k", "paper", ("task.sweep.variants=[k,prune]",)),
        ("A", "prune", "paper", ("task.sweep.variants=[k,prune]",)),
        ("B", "s", "paper", ("task.sweep.variants=[s]",)),
        ("C", "k", "paper (modified: order=params)", ("order=params", "task.sweep.variants=[k]")),
        ("D", "ap_s", "paper (modified: order=params)", ("order=params", "task.sweep.variants=[ap_s]")),
    ]:
        for i, v in enumerate([0.01, 0.05]):
            rows.append({"config_id": cid, "variant": variant, "recipe": recipe, "recipe_overrides": ovs,
                         "table": "sweep", "status": "ok", "profile": "paper", "value": v, "seed": 0,
                         "retained_fraction": 0.3 - 0.1 * i, "test_acc": 0.98 - 0.02 * i})
    return pd.DataFrame(rows)


def test_split_runs_keep_plain_series_names_and_modified_recipes_are_always_named():
    out = with_variant(_records(), "variant").drop_duplicates("config_id").set_index("config_id")["variant"]
    assert out["B"] == "s"  # alone in its series (one variant per split run): no suffix
    assert out["A"].startswith("k [") and out["C"].startswith("k [") and out["A"] != out["C"]  # k mixes configs
    assert out["D"].startswith("ap_s [") and "order=params" in out["D"]  # modified: named even when alone
    both = _records()
    both = both[both["config_id"].isin(["A", "B"])]
    assert set(with_variant(both, "variant")["variant"]) == {"k", "prune", "s"}


def test_fig7_draws_every_curve_and_puts_other_recipes_in_their_own_panel(tmp_path):
    recs = with_variant(_records(), "variant")
    runs = pd.DataFrame([{"profile": "paper", "status": "ok", "parent_test_acc": 0.99}])
    manifest = {"id": "dubey/fig7", "profile": "paper", "figure": {"name": "fig7"}}
    paths = fig7(manifest, runs, recs, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    only_paper = recs[recs["recipe"] == "paper"]
    assert fig7(manifest, runs, only_paper, tmp_path / "one")
    assert fig7(manifest, runs, recs.iloc[0:0], tmp_path / "none") == []
