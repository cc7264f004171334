import math

import pytest
from hypothesis import given, settings, strategies as st

from xlrepro.sampling import TaskSampler, nested_subset


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 3000), a=st.integers(1, 3000), b=st.integers(1, 3000), seed=st.integers(0, 2**31))
def test_volume_subsets_are_nested_and_deterministic(n, a, b, seed):
    a, b = min(a, n), min(b, n)
    small, large = sorted((a, b))
    s_small, s_large = nested_subset(n, small, seed), nested_subset(n, large, seed)
    assert len(s_small) == small and len(set(s_small)) == small and s_small == sorted(s_small)
    assert set(s_small) <= set(s_large)
    assert nested_subset(n, small, seed) == s_small
    assert nested_subset(n, "all", seed) == list(range(n))


def test_volume_subsets_differ_across_seeds_and_reject_bad_volumes():
    assert nested_subset(1000, 100, 1) != nested_subset(1000, 100, 2)
    with pytest.raises(ValueError, match="exceeds the 10"):
        nested_subset(10, 11, 0)
    with pytest.raises(ValueError, match="positive integer or 'all'"):
        nested_subset(10, 0, 0)


@pytest.mark.parametrize("method,temperature", [("proportional", 1.0), ("temperature", 2.0), ("uniform", 1.0)])
def test_sampler_frequencies_match_the_formula(method, temperature):
    sizes = {"mnli": 392_702, "squad": 87_599, "hellaswag": 39_905, "csqa": 9_741}
    s = TaskSampler(sizes, method, temperature, seed=3)
    t = {"proportional": 1.0, "temperature": temperature, "uniform": math.inf}[method]
    w = {k: (1.0 if math.isinf(t) else v ** (1 / t)) for k, v in sizes.items()}
    expected = {k: v / sum(w.values()) for k, v in w.items()}
    assert s.probabilities() == pytest.approx(expected)
    n = 20_000
    counts = {k: 0 for k in sizes}
    for _ in range(n):
        counts[s.next()] += 1
    for k, p in expected.items():
        # 5 binomial standard deviations: fails by chance with probability < 1e-6 per task
        assert abs(counts[k] / n - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12, (k, counts[k] / n, p)


def test_sampler_resumes_its_sequence():
    a = TaskSampler({"x": 10, "y": 30}, seed=9)
    first = [a.next() for _ in range(50)]
    state = a.state()
    rest = [a.next() for _ in range(50)]
    b = TaskSampler({"x": 10, "y": 30}, seed=9)
    b.load_state(state)
    assert [b.next() for _ in range(50)] == rest
    assert first != rest
