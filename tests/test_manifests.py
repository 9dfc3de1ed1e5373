"""The report manifests (experiments/*.yaml): schema of quoted rows and reproduced_if checks, paper values
traceable to the paper texts, and quoted rows rendered (marked quoted, with their formats) without any run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coresetlab.report.manifest_schema import check_manifest
from coresetlab.report.manifests import load_manifests

REPO = Path(__file__).resolve().parents[1]
PAPERS = REPO.parent / "shared" / "papers"
PAPER_FILES = {
    "autocl": "autocl_unified_approach_to_coreset_learning.txt",
    "neuron": "mussay_iclr2020_data_independent_neural_pruning.txt",
    "dubey": "dubey_eccv2018_coreset_based_compression.txt",
}
# Paper values that are derived, not printed (each is explained in its manifest).
DERIVED = {
    ("autocl/table2", "params_after"),   # 784·30+30 + 30·100+100 + 100·10+10 for §4.2.1's 30-100 target
    *[("neuron/table2", f"slope_{a}_coreset")   # size O(αβ/ε²) -> error ∝ m^(-1/2)
      for a in ("relu", "sigmoid", "binary_step", "softplus", "soft_clipping", "gaussian")],
}

MANIFESTS = load_manifests()


def test_every_manifest_is_listed():
    ids = {m["id"] for m in MANIFESTS}
    assert {"autocl/table2", "autocl/fig1", "autocl/fig2", "dubey/table2", "dubey/fig7", "neuron/table1",
            "neuron/table2", "neuron/fig2", "neuron/fig3", "neuron/fig4", "neuron/worst_case"} <= ids


@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m["id"])
def test_manifest_schema(m):
    assert "reproduced_if" in m, f"{m['id']}: add a reproduced_if block (an empty list if nothing is checkable)"
    assert check_manifest(m) == []


@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m["id"])
def test_experiment_composes(m, compose):
    cfg = compose(f"+experiment={m['experiment']}", "profile=smoke")
    assert cfg.experiment == m["experiment"]
    # a manifest reads the runs of its own artefact, or of the artefacts it names (AutoCL Table 1 <- Table 3)
    assert cfg.artefact in [m["id"], *m.get("artefacts", [])]


@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m["id"])
def test_notes_have_no_stale_claims(m):
    text = " ".join(m["notes"]).lower()
    for phrase in ("could not be retrieved", "not verifiable", "reproduction status", "as cited in the issue"):
        assert phrase not in text, f"{m['id']}: '{phrase}' in the notes"


def test_schema_check_catches_errors():
    m = {"id": "x", "tables": [{"name": "t", "source": "runs",
                                "rows": [{"label": "ours", "metrics": {"acc": {"paper": 0.9}, "loss": {}}}],
                                "quoted": [{"label": "q", "values": {"acc": "high"}, "fmt": {"err": "pct"}}]},
                               {"name": "r", "source": "records", "index": ["size"], "metrics": ["err"]}],
         "figures": [{"name": "f"}],
         "reproduced_if": [{"table": "t", "row": "ours", "metric": "acc", "tol": 0.01},
                           {"table": "t", "row": "ours", "metric": "loss", "tol": 0.01},
                           {"table": "t", "row": "theirs", "metric": "acc", "tol": 0.01},
                           {"figure": "f", "metric": "err", "index": "size", "hue": "method",
                            "order": ["a", "b"], "better": "lower"},
                           {"figure": "r", "metric": "err", "index": "size", "hue": "method",
                            "order": ["a"], "better": "down", "min_fraction": 1.5},
                           {"figure": "nope", "table": "t"}]}
    problems = check_manifest(m)
    text = "\n".join(problems)
    assert "missing source" in text and "not a finite number" in text and "fmt names err" in text
    assert "needs a numeric paper value" in text and "no such row" in text
    assert "at least two distinct labels" in text and "better must be" in text and "min_fraction" in text
    assert "exactly one of table / figure" in text
    assert not any("metric='acc'" in p and "row='ours'" in p for p in problems)   # the valid checks pass
    assert not any("figure='f'" in p for p in problems)


def _candidates(v: float) -> set[str]:
    """Ways a paper prints the value ``v`` exactly (as a fraction or a %, thousands separators, K/M suffixes)."""
    out = set()
    for x in {abs(v), abs(100 * v)}:
        for d in range(0, 5):
            s = f"{x:.{d}f}"
            if abs(float(s) - x) < 1e-9 * max(1.0, x):   # no rounding: the printed digits are the value
                out |= {s, s.rstrip("0").rstrip(".") if "." in s else s}
        if x >= 1000 and float(x).is_integer():
            out |= {f"{int(x):,}", f"{x / 1000:g}K", f"{x / 1e6:g}M"}
    return {c for c in out if c not in ("0", "")}


def _printed(value: float, text: str) -> bool:
    return any(re.search(rf"(?<![\d.]){re.escape(c)}(?![\d])", text) for c in _candidates(value))


@pytest.mark.skipif(not PAPERS.is_dir(), reason="../shared/papers not present")
@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m["id"])
def test_paper_values_are_printed_in_the_paper(m):
    """Every ``paper:`` value and every quoted value appears in the paper's text (as a fraction or a %)."""
    if m["paper"] not in PAPER_FILES:
        pytest.skip(f"no paper text for {m['paper']}")
    text = (PAPERS / PAPER_FILES[m["paper"]]).read_text()
    missing = []
    for spec in m["tables"]:
        for row in spec.get("rows") or []:
            for metric, ms in (row.get("metrics") or {}).items():
                paper = (ms or {}).get("paper")
                if paper is not None and (m["id"], metric) not in DERIVED and not _printed(paper, text):
                    missing.append(f"{row['label']}: {metric}={paper}")
        for q in spec.get("quoted") or []:
            missing += [f"{q['label']}: {k}={v}" for k, v in q["values"].items() if not _printed(v, text)]
    assert missing == []


def test_printed_check_can_fail():
    text = "Baseline 1.59 +0.35 81.68% and 267K parameters"
    assert _printed(0.0159, text) and _printed(0.0035, text) and _printed(0.8168, text) and _printed(267000, text)
    assert not _printed(0.0163, text) and not _printed(0.8186, text) and not _printed(268000, text)


def test_quoted_rows_render_without_runs(tmp_path):
    from coresetlab.report.build import build_report

    empty = tmp_path / "no_runs"
    empty.mkdir()
    md = build_report([empty], tmp_path / "report").read_text()
    sections = {s.split(" ", 1)[0]: s for s in md.split("\n## ")[1:]}
    ft = [line for line in sections["autocl/table2"].splitlines() if line.startswith("| FT [31] |")]
    assert ft, sections["autocl/table2"]
    cells = {line.split("|")[2].strip(): line for line in ft}
    assert "1.59 %" in cells["baseline_err"] and "0.35 %" in cells["delta_err"] and "81.68 %" in cells["compression"]
    assert all("quoted (AutoCL Table 2, row 'FT [31]'" in line for line in ft)
    dubey = sections["dubey/table2"]
    assert "| Ullrich et al. [48] (soft weight-sharing) | test_err | – | 0 | – | 0.970 % |" in dubey
    assert "| AP+Coreset-K | test_err | – | 0 | – | 0.966 % |" in dubey   # pct3: the paper's three decimals
    assert "| Han et al. [18] | conv1 |" in dubey
