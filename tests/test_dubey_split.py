"""The paper plan of ``lenet5_dubey`` splits its variants over two runs per seed (``experiments/dubey_table2.yaml``,
``reproduce.runs``: the Coreset-S variants apart, their λ-grid rank search being the slow part). That is only the
same recipe if a variant's numbers do not depend on which other variants share its run: pinned here."""

from __future__ import annotations

import math

import pytest

from conftest import load_results

THREADS = "torch_threads=1"
COMMON = ("+experiment=lenet5_dubey", "profile=smoke", THREADS, "coreset_method.dc_curve.keep_scales=[1.0]")
TIMING = ("ms_per_batch", "speedup", "time")  # wall-clock measurements differ between any two runs


def _numbers(metrics: dict, prefixes: tuple[str, ...]) -> dict[str, float]:
    return {k: v for k, v in metrics.items()
            if k.startswith(prefixes) and not any(t in k for t in TIMING) and isinstance(v, (int, float))}


@pytest.mark.slow
def test_a_variants_numbers_do_not_depend_on_the_other_variants_of_its_run(run_cli):
    _, joint = run_cli(*COMMON, "coreset_method.variants=[ap_k,ap_s,k]")
    _, alone_s = run_cli(*COMMON, "coreset_method.variants=[ap_s]")
    _, rest = run_cli(*COMMON, "coreset_method.variants=[ap_k,k]")
    j = load_results(joint)["metrics"]
    for run_dir, prefixes in ((alone_s, ("ap_s_",)), (rest, ("ap_k_", "k_", "parent_"))):
        got, want = _numbers(load_results(run_dir)["metrics"], prefixes), _numbers(j, prefixes)
        assert want and set(got) == set(want)
        bad = {k: (got[k], want[k]) for k in want
               if not (got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])))}
        assert not bad, f"differ from the joint run: {bad}"
