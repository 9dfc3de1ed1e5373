"""The default neuron/channel sampler is unbiased: exact inclusion probabilities and Horvitz–Thompson weights.

Small cases are checked against the enumeration of every draw order (the first ``k`` distinct items of
i.i.d. draws follow successive sampling: the next new item is ``j`` with probability
``p_j / (1 − Σ_{seen} p)``).
"""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron import coreset as nc
from coresetlab.methods.shared.inclusion import (
    inclusion_probabilities_distinct,
    inclusion_probabilities_iid,
    poisson_binomial_pmf,
)
from coresetlab.methods.shared.sampling import draw_m, draw_until_distinct, importance_sample


def _orders(p: list[float], k: int):
    """Every ordered sequence of the first ``k`` distinct items and its probability."""
    for seq in itertools.permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for j in seq:
            prob *= p[j] / left
            left -= p[j]
        yield seq, prob


def _random_p(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g, dtype=torch.float64) ** 3 + 1e-3
    return p / p.sum()


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inclusion_weights_are_exactly_unbiased_on_all_draw_orders(n, seed):
    p = _random_p(n, seed)
    for k in range(1, n + 1):
        pi = inclusion_probabilities_distinct(p, k)
        # E[scale_i · 1{i kept}] = Σ_orders P(order) · 1{i in order} / π_i must be 1 for every item
        expectation = torch.zeros(n, dtype=torch.float64)
        for seq, prob in _orders(p.tolist(), k):
            for i in seq:
                expectation[i] += prob / pi[i]
        torch.testing.assert_close(expectation, torch.ones(n, dtype=torch.float64), rtol=1e-10, atol=0)
        assert math.isclose(float(pi.sum()), k, rel_tol=1e-12)


def test_two_items_get_weights_one_and_counts_are_biased():
    p = torch.tensor([0.9, 0.1], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # both items are always kept: the unbiased weights are exactly 1
        s = importance_sample(p, 2, "distinct", g)
        assert s.indices.tolist() == [0, 1]
        torch.testing.assert_close(s.scale, torch.ones(2, dtype=torch.float64))
    # the authors' count/(m·p): E[scale] = (0.88, 2.08) in closed form (geometric number of extra draws) ...
    exact = [0.0, 0.0]
    for first in (0, 1):
        other = 1 - first
        for extra in range(2000):
            prob, m = p[first] * p[first] ** extra * p[other], 2 + extra
            exact[first] += float(prob * (1 + extra) / (m * p[first]))
            exact[other] += float(prob / (m * p[other]))
    assert abs(exact[0] - 0.88) < 0.005 and abs(exact[1] - 2.08) < 0.005
    # ... and the code's counts weighting has that mean
    scales = torch.stack([importance_sample(p, 2, "distinct", g, weighting="counts").scale for _ in range(4000)])
    mean, se = scales.mean(0), scales.std(0) / math.sqrt(len(scales))
    assert torch.all((mean - torch.tensor(exact, dtype=torch.float64)).abs() < 4 * se)
    assert float(mean[1]) > 1.5  # far from unbiased


def test_inclusion_probabilities_match_the_sampler():
    p = _random_p(8, 3)
    k = 3
    pi = inclusion_probabilities_distinct(p, k)
    g = torch.Generator().manual_seed(5)
    reps = 20000
    kept = torch.zeros(8, dtype=torch.float64)
    for _ in range(reps):
        kept += (draw_until_distinct(p, k, g)[0] > 0).to(torch.float64)
    freq = kept / reps
    se = torch.sqrt(pi * (1 - pi) / reps)
    assert torch.all((freq - pi).abs() < 4.5 * se + 1e-12), (freq, pi)


def test_iid_inclusion_probabilities_and_weights():
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    m = 2
    exact = torch.zeros(3, dtype=torch.float64)
    for a, b in itertools.product(range(3), repeat=m):
        for i in {a, b}:
            exact[i] += p[a] * p[b]
    torch.testing.assert_close(inclusion_probabilities_iid(p, m), exact)
    s = importance_sample(p, m, "m", torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.scale, 1.0 / exact[s.indices])
    counts = draw_m(p, m, torch.Generator().manual_seed(0))
    s = importance_sample(p, m, "m", torch.Generator().manual_seed(0), weighting="counts")
    torch.testing.assert_close(s.scale, counts[s.indices].to(torch.float64) / (m * p[s.indices]))


def test_poisson_binomial_pmf_matches_the_recursion():
    q = torch.rand(3, 37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = torch.zeros(3, 38, dtype=torch.float64)
    ref[:, 0] = 1.0
    for j in range(37):
        ref = torch.cat([ref[:, :1] * (1 - q[:, j:j + 1]), ref[:, 1:] * (1 - q[:, j:j + 1]) + ref[:, :-1] * q[:, j:j + 1]], 1)
    torch.testing.assert_close(poisson_binomial_pmf(q), ref, atol=1e-15, rtol=0)
    torch.testing.assert_close(poisson_binomial_pmf(q, terms=5), ref[:, :5], atol=1e-15, rtol=0)


def test_inclusion_probabilities_are_fast_and_consistent_for_4096_items():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4096, generator=g, dtype=torch.float64) ** 2
    t0 = time.perf_counter()
    pi = inclusion_probabilities_distinct(p, 410)
    elapsed = time.perf_counter() - t0
    assert math.isclose(float(pi.sum()), 410, rel_tol=1e-10)  # E|C| = k
    assert bool(((pi > 0) & (pi <= 1)).all())
    order = torch.argsort(p)
    assert bool((pi[order].diff() >= -1e-12).all())  # monotone in p
    assert elapsed < 30, f"{elapsed:.1f}s"  # ~1 s on one idle CPU thread
    assert torch.all(inclusion_probabilities_distinct(p, 4096) == 1)


def test_weighting_is_validated():
    with pytest.raises(ConfigError, match="weighting"):
        nc.NeuronSelector(weighting="bogus")
    with pytest.raises(ConfigError, match="weighting"):
        importance_sample(torch.full((4,), 0.25, dtype=torch.float64), 2, weighting="bogus")
    with pytest.raises(ConfigError, match="bound"):
        nc.NeuronSelector(bound="bogus")
