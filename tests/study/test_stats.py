"""Tests for xlrepro.stats . Fast, deterministic (fixed seeds), no GPU, no data."""

import json
import math

import numpy as np
import pytest

from xlrepro import stats

# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_coverage_bernoulli():
    """95% percentile CI covers p=0.6 in 91-99% of 200 synthetic Bernoulli datasets (n=200)."""
    rng = np.random.default_rng(12345)
    covered = 0
    for i in range(200):
        x = (rng.random(200) < 0.6).astype(float)
        ci = stats.bootstrap_ci(x, n_boot=1000, seed=i)
        covered += ci["low"] <= 0.6 <= ci["high"]
    assert 182 <= covered <= 198, covered


def test_bootstrap_ci_fields_and_determinism():
    x = np.random.default_rng(0).random(50)
    a = stats.bootstrap_ci(x, seed=7)
    b = stats.bootstrap_ci(x, seed=7)
    assert a == b
    assert a["low"] < a["estimate"] < a["high"]
    assert a["half_width"] == pytest.approx((a["high"] - a["low"]) / 2)
    assert a["n"] == 50 and a["n_boot"] == 2000
    json.dumps(a)
    assert stats.bootstrap_ci(x, seed=8) != a


def test_bootstrap_ci_custom_statistic():
    x = np.arange(101, dtype=float)
    ci = stats.bootstrap_ci(x, n_boot=300, statistic=np.median, seed=1)
    assert ci["estimate"] == 50.0
    assert ci["low"] < 50 < ci["high"]


def test_bootstrap_ci_width_matches_normal_approx():
    x = np.array([1.0] * 250 + [0.0] * 250)
    ci = stats.bootstrap_ci(x, n_boot=4000, seed=3)
    assert ci["half_width"] == pytest.approx(stats.ci_half_width(500), rel=0.1)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(item_scores=[]), "at least 1"),
        (dict(item_scores=[1.0, float("nan")]), "NaN"),
        (dict(item_scores=[[1.0, 2.0]]), "1-D"),
        (dict(item_scores="0101"), "string"),
        (dict(item_scores=[1.0, 0.0], n_boot=0), "n_boot"),
        (dict(item_scores=[1.0, 0.0], alpha=1.5), "alpha"),
        (dict(item_scores=[1.0, 0.0], seed=-1), "seed"),
        (dict(item_scores=[1.0, 0.0], seed=1.5), "seed"),
        (dict(item_scores=[1.0, 0.0], statistic=3), "callable"),
    ],
)
def test_bootstrap_ci_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        stats.bootstrap_ci(**kwargs)


def _two_systems(n=500, delta=0.08, seed=0):
    """Correlated 0/1 item scores: b = a except for a planted fraction of improvements."""
    rng = np.random.default_rng(seed)
    base = (rng.random(n) < 0.6).astype(float)
    a = base.copy()
    flip = (base == 0) & (rng.random(n) < delta / 0.4)
    a[flip] = 1.0
    return a, base


def test_paired_bootstrap_detects_planted_difference():
    a, b = _two_systems()
    r = stats.paired_bootstrap(a, b, seed=0)
    assert r["diff"] > 0.04
    assert r["low"] > 0
    assert r["p_value"] < 0.01


def test_paired_bootstrap_identical_systems():
    a, _ = _two_systems()
    r = stats.paired_bootstrap(a, a.copy(), seed=0)
    assert r["diff"] == 0 and r["p_value"] > 0.2
    assert r["low"] == r["high"] == 0


def test_paired_bootstrap_balanced_disagreements():
    """Systems that disagree on 40 items, 20 each way: zero mean difference, not significant."""
    a = np.array([1.0] * 20 + [0.0] * 20 + [1.0] * 160 + [0.0] * 100)
    b = np.array([0.0] * 20 + [1.0] * 20 + [1.0] * 160 + [0.0] * 100)
    r = stats.paired_bootstrap(a, b, seed=1)
    assert r["diff"] == 0 and r["p_value"] > 0.2 and r["low"] < 0 < r["high"]


def test_paired_permutation_test():
    a, b = _two_systems()
    assert stats.paired_permutation_test(a, b, n_perm=5000, seed=0)["p_value"] < 0.01
    same = stats.paired_permutation_test(a, a.copy(), n_perm=5000, seed=0)
    assert same["p_value"] > 0.2
    # symmetric in the order of the systems, deterministic given the seed
    r1 = stats.paired_permutation_test(a, b, n_perm=2000, seed=3)
    r2 = stats.paired_permutation_test(b, a, n_perm=2000, seed=3)
    assert r1["p_value"] == r2["p_value"] and r1["diff"] == -r2["diff"]


def test_paired_permutation_exchangeable_null_not_significant():
    rng = np.random.default_rng(11)
    d = rng.normal(size=200)
    d -= d.mean()  # exactly zero mean difference
    assert stats.paired_permutation_test(d, np.zeros(200), n_perm=2000, seed=0)["p_value"] > 0.2


def test_paired_validation():
    with pytest.raises(ValueError, match="same items"):
        stats.paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="same items"):
        stats.paired_permutation_test([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="n_perm"):
        stats.paired_permutation_test([1, 0], [1, 0], n_perm=0)


# ---------------------------------------------------------------- seeds


def test_seed_summary():
    s = stats.seed_summary([80.0, 81.0, 79.0, 90.0, 70.0])
    assert s["n"] == 5 and s["mean"] == 80.0
    assert s["sd"] == pytest.approx(np.std([80, 81, 79, 90, 70], ddof=1))
    assert s["olympic_mean"] == 80.0 and s["olympic_n"] == 3
    s3 = stats.seed_summary([1.0, 2.0, 6.0])
    assert s3["olympic_mean"] == 3.0 and s3["olympic_n"] == 3
    s1 = stats.seed_summary([5.0])
    assert s1["sd"] is None and s1["mean"] == 5.0
    json.dumps(s1)
    with pytest.raises(ValueError):
        stats.seed_summary([])


# ---------------------------------------------------------------- Holm


def test_holm_hand_worked():
    # sorted: d .005*4=.02, a .01*3=.03, c .03*2=.06, b .04*1=.04 -> monotone .06
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert list(adj) == ["a", "b", "c", "d"]
    assert adj == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})


def test_holm_caps_ties_and_empty():
    assert stats.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}
    assert stats.holm({"x": 0.01, "y": 0.01}) == pytest.approx({"x": 0.02, "y": 0.02})
    assert stats.holm({"only": 0.04}) == {"only": 0.04}
    assert stats.holm({}) == {}


@pytest.mark.parametrize("bad", [{"a": 1.5}, {"a": -0.1}, {"a": float("nan")}, {"a": "0.1"}, [0.1]])
def test_holm_validation(bad):
    with pytest.raises(ValueError):
        stats.holm(bad)


# ---------------------------------------------------------------- collapse and re-seeding


def test_detect_collapse_constant_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 900)
    r = stats.detect_collapse(np.zeros(900, dtype=int), labels)
    assert r["collapsed"] and "dominant-prediction" in r["reason"] and "near-majority" in r["reason"]
    assert r["n_predicted_classes"] == 1 and r["dominant_share"] == 1.0
    json.dumps(r)


def test_detect_collapse_healthy_classifier():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 900)
    pred = np.where(rng.random(900) < 0.8, labels, rng.integers(0, 3, 900))
    r = stats.detect_collapse(pred, labels)
    assert not r["collapsed"] and r["reason"] is None
    assert r["accuracy"] > 0.8


def test_detect_collapse_near_majority_only():
    # imbalanced gold labels; predictions varied but no better than the majority rate
    labels = ["yes"] * 70 + ["no"] * 30
    pred = ["yes"] * 50 + ["no"] * 20 + ["yes"] * 20 + ["no"] * 10
    r = stats.detect_collapse(pred, labels, majority_margin=0.02)
    assert r["collapsed"] and r["reason"] == "near-majority"
    assert r["majority_label"] == "yes" and r["majority_rate"] == 0.7


def test_detect_collapse_validation():
    with pytest.raises(ValueError, match="length"):
        stats.detect_collapse([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        stats.detect_collapse([], [])
    with pytest.raises(ValueError, match="majority_margin"):
        stats.detect_collapse([0, 1], [0, 1], majority_margin=-0.1)


def test_reseed_policy():
    assert stats.reseed_policy([42], max_reseeds=2) == 1042
    assert stats.reseed_policy([42, 1042], max_reseeds=2) == 2042
    assert stats.reseed_policy([42, 1042, 2042], max_reseeds=2) is None
    assert stats.reseed_policy([7], max_reseeds=0) is None
    with pytest.raises(ValueError, match="policy"):
        stats.reseed_policy([42, 43])
    with pytest.raises(ValueError, match="empty"):
        stats.reseed_policy([])
    with pytest.raises(ValueError, match="max_reseeds"):
        stats.reseed_policy([1], max_reseeds=-1)


def test_reseed_decision_loggable():
    bad = stats.detect_collapse([0] * 100, [0, 1] * 50)
    good = stats.detect_collapse([0, 1] * 50, [0, 1] * 50)
    d1 = stats.reseed_decision([3], bad, max_reseeds=1)
    assert d1["action"] == "reseed" and d1["next_seed"] == 1003 and d1["seed"] == 3
    d2 = stats.reseed_decision([3, 1003], bad, max_reseeds=1)
    assert d2["action"] == "give-up" and d2["next_seed"] is None
    d3 = stats.reseed_decision([3, 1003], good, max_reseeds=1)
    assert d3["action"] == "accept"
    for d in (d1, d2, d3):
        json.dumps(d)
    with pytest.raises(ValueError, match="detect_collapse"):
        stats.reseed_decision([3], {"reason": None})


# ---------------------------------------------------------------- scaling fits


def test_fit_log_linear_recovers_planted_slope():
    rng = np.random.default_rng(0)
    vols = np.repeat([1e3, 3e3, 1e4, 3e4, 1e5, 3e5], 5)  # 5 seeds per volume
    scores = 60.0 + 2.5 * np.log10(vols) + rng.normal(0, 0.8, vols.size)
    r = stats.fit_log_linear(vols, scores, seed=0, n_boot=2000)
    assert r["slope_low"] <= 2.5 <= r["slope_high"]
    assert r["slope_high"] - r["slope_low"] < 1.5
    assert r["intercept"] == pytest.approx(60.0, abs=2.0)
    assert len(r["residuals"]) == vols.size and abs(sum(r["residuals"])) < 1e-8
    assert r == stats.fit_log_linear(vols, scores, seed=0, n_boot=2000)
    json.dumps(r)


def test_fit_log_linear_exact_and_validation():
    r = stats.fit_log_linear([10, 100, 1000], [1.0, 3.0, 5.0], n_boot=200)
    assert r["slope"] == pytest.approx(2.0) and r["intercept"] == pytest.approx(-1.0)
    assert r["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="distinct"):
        stats.fit_log_linear([10, 10, 10], [1, 2, 3])
    with pytest.raises(ValueError, match="> 0"):
        stats.fit_log_linear([0, 10, 100], [1, 2, 3])
    with pytest.raises(ValueError, match="differ in length"):
        stats.fit_log_linear([1, 10, 100, 1000], [1, 2, 3])


@pytest.mark.parametrize("c, beta, e_inf", [(50.0, 0.3, 10.0), (5.0, 0.5, 0.0), (200.0, 0.15, 25.0)])
def test_fit_power_law_recovers_noiseless(c, beta, e_inf):
    vols = np.array([1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 3e5])
    err = c * vols ** (-beta) + e_inf
    r = stats.fit_power_law(vols, err)
    assert r["c"] == pytest.approx(c, rel=0.01)
    assert r["beta"] == pytest.approx(beta, rel=0.01)
    assert r["e_inf"] == pytest.approx(e_inf, rel=0.01, abs=0.01 * c * vols.max() ** (-beta))
    assert max(abs(x) for x in r["residuals"]) < 1e-3 * err.min()
    json.dumps(r)


def test_fit_power_law_fixed_e_inf_and_noise():
    vols = np.geomspace(1e3, 1e6, 10)
    err = 30.0 * vols ** (-0.25) + 5.0
    fixed = stats.fit_power_law(vols, err, e_inf=5.0)
    assert fixed["e_inf_fixed"] and fixed["beta"] == pytest.approx(0.25, rel=1e-9)
    noisy = err * (1 + np.random.default_rng(0).normal(0, 0.005, err.size))
    r = stats.fit_power_law(vols, noisy)
    assert r["rmse"] < 0.05
    assert 0.1 < r["beta"] < 0.5


def test_fit_power_law_validation():
    with pytest.raises(ValueError, match="3 distinct"):
        stats.fit_power_law([1, 1, 10, 10], [3, 3, 2, 2])
    with pytest.raises(ValueError, match="e_inf"):
        stats.fit_power_law([1, 10, 100], [3, 2, 1], e_inf=1.0)
    with pytest.raises(ValueError, match="> 0"):
        stats.fit_power_law([1, 10, 100], [3, 2, 0])


# ---------------------------------------------------------------- groups and power


def test_group_means_real_codes():
    from xlrepro import languages

    scores = {
        "en": 90.0,
        "de": 80.0,
        "fr": 82.0,
        "bg": 75.0,
        "id": 77.0,
        "sw": 60.0,
        "te": 62.0,
        "yo": 40.0,
        "qu": 44.0,
    }
    r = stats.group_means(scores)
    # expected groups from the table itself, not a hard-coded list
    expected: dict[str, list[float]] = {}
    for code, s in scores.items():
        expected.setdefault(languages.get(code).resource_group, []).append(s)
    assert set(r["means"]) == set(expected)
    for g, vals in expected.items():
        assert r["means"][g] == pytest.approx(np.mean(vals))
    assert list(r["means"]) == [g for g in stats.GROUP_ORDER if g in expected]
    # unseen kept apart from under-resourced
    assert r["means"]["unseen"] == 42.0 and sorted(r["languages"]["unseen"]) == ["qu", "yo"]
    assert r["means"]["under-resourced"] == 61.0
    for code in scores:
        assert code in r["note"]
    json.dumps(r)


def test_group_means_validation():
    with pytest.raises(ValueError, match="zz"):
        stats.group_means({"zz": 1.0})
    with pytest.raises(ValueError, match="finite"):
        stats.group_means({"de": float("nan")})
    with pytest.raises(ValueError, match="non-empty"):
        stats.group_means({})


def test_underpowered():
    assert stats.underpowered(5.0, 3.0)
    assert stats.underpowered(5.0, -3.0)
    assert not stats.underpowered(2.0, 3.0)
    with pytest.raises(ValueError):
        stats.underpowered(-1.0, 3.0)
    with pytest.raises(ValueError):
        stats.underpowered(1.0, float("nan"))


@pytest.mark.parametrize(
    "n, points", [(47, 14.3), (100, 9.8), (205, 6.8), (390, 5.0), (500, 4.4), (1000, 3.1), (5010, 1.4)]
)
def test_half_width_table_languages_md(n, points):
    """95% normal-approximation half-width of an accuracy near 50%."""
    assert 100 * stats.ci_half_width(n, p=0.5) == pytest.approx(points, abs=0.1)


def test_half_width_shrinks_near_90():
    assert stats.ci_half_width(500, p=0.9) / stats.ci_half_width(500, p=0.5) == pytest.approx(0.6)


def test_min_detectable_difference():
    # unpaired, 500 XCOPA items near 60%, alpha .05, power .8 -> roughly 8-9 points
    mdd = 100 * stats.min_detectable_difference(500, p=0.6)
    assert 8.0 <= mdd <= 9.0
    # pairing helps exactly through the correlation of the two systems
    assert stats.min_detectable_difference(500, 0.6, paired=True, correlation=0.0) == pytest.approx(mdd / 100)
    paired = stats.min_detectable_difference(500, 0.6, paired=True, correlation=0.5)
    assert paired == pytest.approx(mdd / 100 * math.sqrt(0.5))
    # more items, more power -> smaller detectable difference
    assert stats.min_detectable_difference(5010) < stats.min_detectable_difference(500)
    assert stats.min_detectable_difference(500, power=0.9) > stats.min_detectable_difference(500)
    with pytest.raises(ValueError, match="correlation"):
        stats.min_detectable_difference(500, paired=True)
    with pytest.raises(ValueError, match="correlation"):
        stats.min_detectable_difference(500, correlation=0.3)
    with pytest.raises(ValueError, match="n_items"):
        stats.min_detectable_difference(0)
    with pytest.raises(ValueError, match="power"):
        stats.min_detectable_difference(100, power=1.0)
    with pytest.raises(ValueError, match="p must"):
        stats.min_detectable_difference(100, p=0.0)


# --------------------------------------------------------------------------- paired_bootstrap_statistic


def test_paired_bootstrap_statistic_equals_paired_bootstrap_for_a_mean():
    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.7).astype(float)
    b = (rng.random(300) < 0.6).astype(float)
    ref = stats.paired_bootstrap(a, b, n_boot=500, seed=11)
    got = stats.paired_bootstrap_statistic(300, lambda idx: float(a[idx].mean() - b[idx].mean()), n_boot=500, seed=11)
    for k in ("diff", "low", "high", "p_value", "n", "n_boot"):
        assert got[k] == pytest.approx(ref[k]), k


def test_paired_bootstrap_statistic_detects_a_planted_ratio_difference():
    # per-sentence chunk counts [correct, predicted, gold]: system A finds 80% of the chunks, B 60%
    rng = np.random.default_rng(5)
    gold = rng.integers(1, 5, size=400)
    ca = np.stack([rng.binomial(gold, 0.8), gold, gold], axis=1)
    cb = np.stack([rng.binomial(gold, 0.6), gold, gold], axis=1)

    def f1(c, idx):
        s = c[idx].sum(axis=0)
        return 200.0 * s[0] / (s[1] + s[2])

    res = stats.paired_bootstrap_statistic(400, lambda idx: f1(ca, idx) - f1(cb, idx), n_boot=500, seed=0)
    assert 15 < res["diff"] < 25 and res["low"] > 0 and res["p_value"] < 0.01
    null = stats.paired_bootstrap_statistic(400, lambda idx: f1(ca, idx) - f1(ca, idx), n_boot=200, seed=0)
    assert null["diff"] == 0 and null["p_value"] == 1.0
    with pytest.raises(ValueError, match="n_items"):
        stats.paired_bootstrap_statistic(0, lambda idx: 0.0)


# ---------------------------------------------------------------------- the scaling study's mixed model


def _scaling_world(interaction: float, seed: int) -> list[dict]:
    """Synthetic scores: 10 seen languages spread over log CC-100 sizes and 2 unseen ones, 3 seeds,
    5 volumes; random language and seed intercepts and item noise; ``interaction`` is the planted
    change of the log-volume slope per tenfold more pre-training data."""
    rng = np.random.default_rng(seed)
    langs = {f"l{i}": float(v) for i, v in enumerate(np.linspace(-0.5, 2.5, 10))}
    langs.update({"u1": None, "u2": None})
    lang_eff = {lang: rng.normal(0, 3) for lang in langs}
    seed_eff = {s: rng.normal(0, 1.0) for s in range(3)}
    rows = []
    for lang, lc in langs.items():
        for s in range(3):
            for v in (1000, 3000, 10000, 30000, 100000):
                lv, c = np.log10(v) - 4, (lc - 1.0) if lc is not None else 0.0
                score = 60 + 2 * lv + 4 * c + interaction * lv * c + lang_eff[lang] + seed_eff[s] + rng.normal(0, 1.5)
                rows.append({"score": score, "volume": v, "language": lang, "seed": s, "log_cc100": lc})
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_mixed_model_recovers_a_planted_interaction_and_reports_a_null(seed):
    planted = stats.scaling_mixed_model(_scaling_world(-1.5, seed))
    est = planted["estimand"]
    assert est["term"] == "lv:lc" and est["detected"] and est["ci"][0] < -1.5 < est["ci"][1]
    assert planted["converged"] and set(planted["variance_components"]) == {"language", "seed"}
    assert planted["n_languages"] == 12 and "lv:unseen" in planted["effects"]
    null = stats.scaling_mixed_model(_scaling_world(0.0, seed))
    assert not null["estimand"]["detected"] and null["estimand"]["ci"][0] < 0 < null["estimand"]["ci"][1]


def test_mixed_model_rejects_rows_it_cannot_fit():
    rows = _scaling_world(0.0, 0)
    with pytest.raises(ValueError, match="volume must be > 0"):
        stats.scaling_mixed_model([{**r, "volume": 0} for r in rows])
    with pytest.raises(ValueError, match="needs 'log_cc100'"):
        stats.scaling_mixed_model([{k: v for k, v in r.items() if k != "log_cc100"} for r in rows])


def test_collapse_rate_per_volume():
    entries = [
        {"volume": 1000, "collapsed": True},
        {"volume": 1000, "collapsed": False},
        {"volume": "all", "collapsed": False},
    ]
    assert stats.collapse_rate_by_volume(entries) == {
        "1000": {"runs": 2, "collapsed": 1, "rate": 0.5},
        "all": {"runs": 1, "collapsed": 0, "rate": 0.0},
    }
