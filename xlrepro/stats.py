"""Statistics for xlrepro's reproduction and scaling study (``docs/scaling-study.md``).

Python + numpy; the scaling study's mixed-effects model uses statsmodels. Rules:

1. item-level bootstrap CIs, paired across the systems compared (:func:`bootstrap_ci`,
   :func:`paired_bootstrap`, :func:`paired_permutation_test`);
2. seed mean ± sd next to the item CI (:func:`seed_summary`);
3. primary analysis per resource group (:func:`group_means`, grouping taken from
   :mod:`xlrepro.languages`, never from a hard-coded list);
4. Holm correction across language × task cells (:func:`holm`);
5. flag cells whose CI half-width exceeds the claimed effect (:func:`underpowered`).

It also covers collapsed fine-tunes (XLM-R Large, huggingface/transformers #6210: :func:`detect_collapse`,
:func:`reseed_policy`, :func:`reseed_decision`), volume curves (Hernandez et al. 2021:
:func:`fit_log_linear`, :func:`fit_power_law`) and normal-approximation power
(:func:`ci_half_width`, :func:`min_detectable_difference`).

Conventions
-----------
* Scores are in whatever unit the caller uses (proportions or points); nothing rescales them.
  The normal-approximation helpers take ``p`` as a proportion and answer in proportions
  (multiply by 100 for "points").
* Every random function takes ``seed`` (a non-negative int) and uses its own
  ``numpy.random.default_rng(seed)``: same inputs and seed → same output.
* Results that are meant to be logged are plain dicts of Python scalars / lists
  (JSON-serialisable).
* Invalid input raises ``ValueError`` with a message naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from statistics import NormalDist

import numpy as np

__all__ = [
    "bootstrap_ci",
    "paired_bootstrap",
    "paired_bootstrap_statistic",
    "paired_permutation_test",
    "seed_summary",
    "holm",
    "detect_collapse",
    "reseed_policy",
    "reseed_decision",
    "RESEED_STRIDE",
    "fit_log_linear",
    "fit_power_law",
    "group_means",
    "underpowered",
    "ci_half_width",
    "min_detectable_difference",
]

RESEED_STRIDE = 1000  # reseed_policy: the k-th re-seed uses base_seed + RESEED_STRIDE * k
GROUP_ORDER = ("source", "high", "mid", "under-resourced", "unseen")
_CHUNK_ELEMS = 4_000_000  # bound on the resample-index matrix held at once


# --------------------------------------------------------------------------- validation


def _vector(x, name: str, min_len: int = 1) -> np.ndarray:
    """A finite 1-D float array with at least ``min_len`` entries, or ValueError."""
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of numbers, got a string")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a sequence of numbers: {e}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} value(s), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _count(n, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {n!r}")
    return int(n)


def _prob(x, name: str, *, open_low=True, open_high=True) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {x!r}")
    x = float(x)
    lo_ok = x > 0 if open_low else x >= 0
    hi_ok = x < 1 if open_high else x <= 1
    if not (math.isfinite(x) and lo_ok and hi_ok):
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise ValueError(f"{name} must be in {lo}, {hi}, got {x!r}")
    return x


def _index_chunks(rng: np.random.Generator, n: int, n_boot: int):
    """Yield (rows, n) resample-index matrices, n_boot rows in all, in bounded memory."""
    rows = max(1, _CHUNK_ELEMS // max(n, 1))
    done = 0
    while done < n_boot:
        k = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def _bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([x[idx].mean(axis=1) for idx in _index_chunks(rng, x.size, n_boot)])


def _percentile_interval(boots: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    item_scores: Sequence[float],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = np.mean,
) -> dict:
    """Percentile bootstrap CI of ``statistic`` over items.

    ``item_scores`` holds one score per test item (sentence, question, pair): 0/1 for
    accuracy, a per-sentence F1, ... Items are resampled with replacement ``n_boot`` times.

    Returns ``{"estimate", "low", "high", "half_width", "n", "n_boot", "alpha"}`` where
    ``estimate`` is ``statistic`` on the original items and ``half_width`` is
    ``(high - low) / 2``.
    """
    x = _vector(item_scores, "item_scores")
    n_boot = _count(n_boot, "n_boot", 2)
    alpha = _prob(alpha, "alpha")
    rng = np.random.default_rng(_seed(seed))
    if not callable(statistic):
        raise ValueError("statistic must be callable on a 1-D array")
    if statistic is np.mean:
        boots = _bootstrap_means(x, n_boot, rng)
    else:
        boots = np.array([float(statistic(x[idx])) for chunk in _index_chunks(rng, x.size, n_boot) for idx in chunk])
        if not np.all(np.isfinite(boots)):
            raise ValueError("statistic returned NaN/inf on a bootstrap resample")
    lo, hi = _percentile_interval(boots, alpha)
    return {
        "estimate": float(statistic(x)),
        "low": lo,
        "high": hi,
        "half_width": (hi - lo) / 2,
        "n": int(x.size),
        "n_boot": n_boot,
        "alpha": alpha,
    }


def _paired_diff(scores_a, scores_b) -> np.ndarray:
    a = _vector(scores_a, "scores_a")
    b = _vector(scores_b, "scores_b")
    if a.size != b.size:
        raise ValueError(f"paired scores need the same items: scores_a has {a.size}, scores_b has {b.size}")
    return a - b


def paired_bootstrap(
    scores_a: Sequence[float], scores_b: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Paired item bootstrap of the mean difference ``mean(a) - mean(b)``.

    ``scores_a[i]`` and ``scores_b[i]`` must be the two systems' scores on the same item i;
    items (pairs) are resampled together. The CI is the percentile interval of the
    resampled mean differences. The two-sided p-value tests "mean difference = 0" with the
    null-shifted bootstrap: ``p = (1 + #{|d*_b - d| >= |d|}) / (1 + n_boot)`` where d is the
    observed mean difference and d*_b the resampled ones (so p = 1 when d = 0 and the smallest
    reachable p is 1 / (1 + n_boot)).

    Returns ``{"diff", "low", "high", "half_width", "p_value", "n", "n_boot", "alpha"}``.
    """
    d = _paired_diff(scores_a, scores_b)
    n_boot = _count(n_boot, "n_boot", 2)
    alpha = _prob(alpha, "alpha")
    rng = np.random.default_rng(_seed(seed))
    obs = float(d.mean())
    boots = _bootstrap_means(d, n_boot, rng)
    lo, hi = _percentile_interval(boots, alpha)
    tol = 1e-12 * max(1.0, abs(obs))
    extreme = int(np.count_nonzero(np.abs(boots - obs) >= abs(obs) - tol))
    p = (1 + extreme) / (1 + n_boot)
    return {
        "diff": obs,
        "low": lo,
        "high": hi,
        "half_width": (hi - lo) / 2,
        "p_value": min(1.0, p),
        "n": int(d.size),
        "n_boot": n_boot,
        "alpha": alpha,
    }


def paired_bootstrap_statistic(
    n_items: int, statistic: Callable[[np.ndarray], float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Paired item bootstrap of a difference that is not a mean of item differences.

    ``statistic(idx)`` returns system A's score minus system B's on the items ``idx`` (an int
    array, resampled with replacement from ``range(n_items)``; the same items for both systems).
    Use it for corpus-level metrics such as micro chunk F1, where resampling sentences must
    recompute the ratio. CI and p-value are defined as in :func:`paired_bootstrap` (percentile
    interval; null-shifted two-sided p), and with ``statistic = mean of a - b`` over ``idx`` it
    gives exactly :func:`paired_bootstrap`'s result for the same seed.

    Returns ``{"diff", "low", "high", "half_width", "p_value", "n", "n_boot", "alpha"}``.
    """
    n = _count(n_items, "n_items", 1)
    n_boot = _count(n_boot, "n_boot", 2)
    alpha = _prob(alpha, "alpha")
    if not callable(statistic):
        raise ValueError("statistic must be callable on an index array")
    rng = np.random.default_rng(_seed(seed))
    obs = float(statistic(np.arange(n)))
    boots = np.array([float(statistic(idx)) for chunk in _index_chunks(rng, n, n_boot) for idx in chunk])
    if not np.all(np.isfinite(boots)) or not math.isfinite(obs):
        raise ValueError("statistic returned NaN/inf")
    lo, hi = _percentile_interval(boots, alpha)
    tol = 1e-12 * max(1.0, abs(obs))
    extreme = int(np.count_nonzero(np.abs(boots - obs) >= abs(obs) - tol))
    return {
        "diff": obs,
        "low": lo,
        "high": hi,
        "half_width": (hi - lo) / 2,
        "p_value": min(1.0, (1 + extreme) / (1 + n_boot)),
        "n": n,
        "n_boot": n_boot,
        "alpha": alpha,
    }


def paired_permutation_test(a: Sequence[float], b: Sequence[float], n_perm: int = 10000, seed: int = 0) -> dict:
    """Two-sided paired sign-flip permutation test of ``mean(a - b) = 0``.

    Under the null the two systems are exchangeable on each item, so each item difference
    ``a[i] - b[i]`` keeps or flips its sign with probability 1/2. The p-value is
    ``(1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_perm)`` over ``n_perm`` random sign vectors s.

    Returns ``{"diff", "p_value", "n", "n_perm"}``.
    """
    d = _paired_diff(a, b)
    n_perm = _count(n_perm, "n_perm", 1)
    rng = np.random.default_rng(_seed(seed))
    obs = abs(float(d.mean()))
    tol = 1e-12 * max(1.0, obs)
    extreme = 0
    rows = max(1, _CHUNK_ELEMS // d.size)
    done = 0
    while done < n_perm:
        k = min(rows, n_perm - done)
        signs = rng.integers(0, 2, size=(k, d.size), dtype=np.int8) * 2 - 1
        extreme += int(np.count_nonzero(np.abs((signs * d).mean(axis=1)) >= obs - tol))
        done += k
    return {"diff": float(d.mean()), "p_value": (1 + extreme) / (1 + n_perm), "n": int(d.size), "n_perm": n_perm}


# --------------------------------------------------------------------------- seeds


def seed_summary(values: Sequence[float]) -> dict:
    """Summary of one configuration's scores across fine-tuning seeds.

    Returns ``{"n", "mean", "sd", "olympic_mean", "olympic_n"}``: ``sd`` uses ddof=1 and is
    ``None`` when n < 2; ``olympic_mean`` drops one best and one worst value when n >= 5
    (``olympic_n = n - 2``) and is the plain mean otherwise (``olympic_n = n``).
    """
    x = _vector(values, "values")
    n = int(x.size)
    sd = float(x.std(ddof=1)) if n >= 2 else None
    if n >= 5:
        s = np.sort(x)[1:-1]
        olympic, olympic_n = float(s.mean()), n - 2
    else:
        olympic, olympic_n = float(x.mean()), n
    return {"n": n, "mean": float(x.mean()), "sd": sd, "olympic_mean": olympic, "olympic_n": olympic_n}


# --------------------------------------------------------------------------- multiplicity


def holm(pvalues: Mapping) -> dict:
    """Holm–Bonferroni adjusted p-values, same keys as ``pvalues``.

    With the m p-values sorted ascending p_(1) <= ... <= p_(m), the adjusted value of the
    j-th is ``max_{i <= j} min(1, (m - i + 1) * p_(i))`` (monotone in the sort order).
    Reject a hypothesis at level alpha iff its adjusted p-value <= alpha. Ties are ordered
    by insertion order; tied p-values get equal adjusted values.
    """
    if not isinstance(pvalues, Mapping):
        raise ValueError(f"pvalues must be a dict of name -> p-value, got {type(pvalues).__name__}")
    items = []
    for k, p in pvalues.items():
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
            raise ValueError(f"p-value for {k!r} must be a number, got {p!r}")
        p = float(p)
        if not (0.0 <= p <= 1.0):
            raise ValueError(f"p-value for {k!r} must be in [0, 1], got {p!r}")
        items.append((k, p))
    m = len(items)
    order = sorted(range(m), key=lambda i: items[i][1])
    out: dict = {}
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * items[i][1]))
        out[items[i][0]] = running
    return {k: out[k] for k, _ in items}


# --------------------------------------------------------------------------- collapse


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def detect_collapse(
    predictions: Sequence, labels: Sequence, majority_margin: float = 0.02, dominant_share: float = 0.95
) -> dict:
    """Flag a classifier that collapsed to (nearly) one class (huggingface/transformers #6210, #10588).

    Collapsed if either

    * ``"dominant-prediction"``: one predicted class covers >= ``dominant_share`` of the
      predictions (and the gold labels are not themselves that one-sided), or
    * ``"near-majority"``: accuracy <= majority-class rate + ``majority_margin`` (rates as
      proportions), i.e. the model is no better than always answering the majority label.

    ``predictions`` and ``labels`` are equally long sequences of class ids or names.
    Returns a JSON-friendly dict: ``collapsed``, ``reason`` (None when healthy; both reasons
    joined by "+" when both apply), ``accuracy``, ``majority_label``, ``majority_rate``,
    ``dominant_prediction``, ``dominant_share``, ``n_predicted_classes``, ``n``.
    """
    if isinstance(predictions, (str, bytes)) or isinstance(labels, (str, bytes)):
        raise ValueError("predictions and labels must be sequences, not strings")
    pred = np.asarray(list(predictions))
    gold = np.asarray(list(labels))
    if pred.ndim != 1 or gold.ndim != 1:
        raise ValueError("predictions and labels must be 1-D sequences")
    if pred.size == 0:
        raise ValueError("predictions is empty")
    if pred.size != gold.size:
        raise ValueError(f"predictions ({pred.size}) and labels ({gold.size}) differ in length")
    if isinstance(majority_margin, bool) or not isinstance(majority_margin, (int, float, np.floating)):
        raise ValueError(f"majority_margin must be a number, got {majority_margin!r}")
    majority_margin = float(majority_margin)
    if not (math.isfinite(majority_margin) and 0.0 <= majority_margin < 1.0):
        raise ValueError(f"majority_margin must be in [0, 1), got {majority_margin!r}")
    dominant_share = _prob(dominant_share, "dominant_share", open_high=False)

    p_vals, p_counts = np.unique(pred, return_counts=True)
    g_vals, g_counts = np.unique(gold, return_counts=True)
    top_p = int(np.argmax(p_counts))
    top_g = int(np.argmax(g_counts))
    n = int(pred.size)
    share = float(p_counts[top_p] / n)
    majority_rate = float(g_counts[top_g] / n)
    accuracy = float(np.mean(pred == gold))

    reasons = []
    if share >= dominant_share and majority_rate < dominant_share:
        reasons.append("dominant-prediction")
    if accuracy <= majority_rate + majority_margin:
        reasons.append("near-majority")
    return {
        "collapsed": bool(reasons),
        "reason": "+".join(reasons) or None,
        "accuracy": accuracy,
        "majority_label": _py(g_vals[top_g]),
        "majority_rate": majority_rate,
        "dominant_prediction": _py(p_vals[top_p]),
        "dominant_share": share,
        "n_predicted_classes": int(p_vals.size),
        "n": n,
    }


def _check_seeds(seeds_tried: Sequence[int], max_reseeds) -> tuple[list[int], int]:
    if isinstance(seeds_tried, (str, bytes)) or not isinstance(seeds_tried, Iterable):
        raise ValueError("seeds_tried must be a list of ints, first = the configured seed")
    seeds = list(seeds_tried)
    if not seeds:
        raise ValueError("seeds_tried is empty: it must start with the configured seed")
    for s in seeds:
        _seed(s)
    max_reseeds = _count(max_reseeds, "max_reseeds", 0)
    base = int(seeds[0])
    expected = [base + RESEED_STRIDE * k for k in range(len(seeds))]
    if [int(s) for s in seeds] != expected:
        raise ValueError(
            f"seeds_tried {seeds} does not follow the policy seed + {RESEED_STRIDE}*k (expected {expected})"
        )
    return seeds, max_reseeds


def reseed_policy(seeds_tried: Sequence[int], max_reseeds: int = 2) -> int | None:
    """The next seed after a collapsed run, or None when the re-seed budget is spent.

    Policy: a configuration with seed s runs s first; its k-th re-seed uses
    ``s + RESEED_STRIDE * k`` (1000·k), so re-seeds never coincide with the 3–5 regular
    seeds s, s+1, ... of the same configuration. ``seeds_tried`` lists the seeds already
    run, in order, starting with s; at most ``max_reseeds`` re-seeds are made.
    """
    seeds, max_reseeds = _check_seeds(seeds_tried, max_reseeds)
    k = len(seeds)
    if k - 1 >= max_reseeds:
        return None
    return int(seeds[0]) + RESEED_STRIDE * k


def reseed_decision(seeds_tried: Sequence[int], collapse: Mapping, max_reseeds: int = 2) -> dict:
    """The loggable decision after the run with seed ``seeds_tried[-1]``.

    ``collapse`` is :func:`detect_collapse`'s dict for that run. Returns
    ``{"action": "accept" | "reseed" | "give-up", "seed": last seed, "next_seed",
    "attempt", "max_reseeds", "reason", "policy"}``; "give-up" means the configuration
    stays collapsed and must be reported as such, not silently dropped.
    """
    seeds, max_reseeds = _check_seeds(seeds_tried, max_reseeds)
    if not isinstance(collapse, Mapping) or "collapsed" not in collapse:
        raise ValueError("collapse must be the dict returned by detect_collapse")
    base = {
        "seed": int(seeds[-1]),
        "attempt": len(seeds) - 1,
        "max_reseeds": max_reseeds,
        "reason": collapse.get("reason"),
        "policy": f"seed + {RESEED_STRIDE}*k",
    }
    if not collapse["collapsed"]:
        return {"action": "accept", "next_seed": None, **base}
    nxt = reseed_policy(seeds, max_reseeds)
    return {"action": "reseed" if nxt is not None else "give-up", "next_seed": nxt, **base}


# --------------------------------------------------------------------------- scaling


def _positive(x: np.ndarray, name: str) -> None:
    if np.any(x <= 0):
        raise ValueError(f"{name} must be > 0 (log scale)")


def fit_log_linear(
    volumes: Sequence[float], scores: Sequence[float], seed: int = 0, n_boot: int = 2000, alpha: float = 0.05
) -> dict:
    """Least-squares fit ``score = a + b * log10(volume)`` with a bootstrap CI for b.

    ``volumes`` (> 0, e.g. intermediate examples) and ``scores`` are paired points; repeated
    volumes (several seeds per volume) are fine. The CI resamples (volume, score) points;
    resamples with a single distinct volume (slope undefined) are discarded and counted in
    ``n_boot_degenerate``.

    Returns ``{"intercept", "slope", "slope_low", "slope_high", "r2", "residuals", "n",
    "n_boot", "n_boot_degenerate", "alpha"}``.
    """
    v = _vector(volumes, "volumes", 3)
    y = _vector(scores, "scores", 3)
    if v.size != y.size:
        raise ValueError(f"volumes ({v.size}) and scores ({y.size}) differ in length")
    _positive(v, "volumes")
    if np.unique(v).size < 2:
        raise ValueError("fit_log_linear needs at least 2 distinct volumes")
    n_boot = _count(n_boot, "n_boot", 2)
    alpha = _prob(alpha, "alpha")
    rng = np.random.default_rng(_seed(seed))
    x = np.log10(v)

    def ols(X, Y):
        xm = X.mean(axis=-1, keepdims=True)
        ym = Y.mean(axis=-1, keepdims=True)
        sxx = ((X - xm) ** 2).sum(axis=-1)
        sxy = ((X - xm) * (Y - ym)).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = sxy / sxx
        return b, (ym[..., 0] - b * xm[..., 0]), sxx

    b, a, _ = ols(x, y)
    b, a = float(b), float(a)
    resid = y - (a + b * x)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0

    parts = []
    for idx in _index_chunks(rng, x.size, n_boot):
        bs, _, sxx = ols(x[idx], y[idx])
        parts.append(bs[sxx > 1e-12 * max(1.0, float(np.ptp(x))) ** 2])
    slopes = np.concatenate(parts)
    degenerate = n_boot - int(slopes.size)
    if slopes.size < 2:
        raise ValueError("almost every bootstrap resample had a single distinct volume; add points")
    lo, hi = _percentile_interval(slopes, alpha)
    return {
        "intercept": a,
        "slope": b,
        "slope_low": lo,
        "slope_high": hi,
        "r2": r2,
        "residuals": resid.tolist(),
        "n": int(x.size),
        "n_boot": n_boot,
        "n_boot_degenerate": degenerate,
        "alpha": alpha,
    }


def _power_fit_fixed(logv: np.ndarray, err: np.ndarray, e_inf: float):
    """Given e_inf, least squares of log(err - e_inf) = log c - beta * log v. Returns (c, beta, sse)."""
    z = np.log(err - e_inf)
    xm, zm = logv.mean(), z.mean()
    slope = float(((logv - xm) * (z - zm)).sum() / ((logv - xm) ** 2).sum())
    logc = zm - slope * xm
    c, beta = float(math.exp(logc)), -slope
    pred = c * np.exp(-beta * logv) + e_inf
    return c, beta, float(((err - pred) ** 2).sum())


def fit_power_law(
    volumes: Sequence[float], errors: Sequence[float], e_inf: float | None = None, n_grid: int = 200, n_refine: int = 40
) -> dict:
    """Fit ``error = c * volume**(-beta) + e_inf`` (Hernandez et al. 2021 form).

    ``errors`` are "lower is better" quantities (e.g. ``100 - score`` or ``1 - accuracy``),
    all > e_inf. Method (profile least squares, no optimiser library): for a candidate
    ``e_inf`` in ``[0, min(errors))``, ``c`` and ``beta`` come from ordinary least squares of
    ``log(error - e_inf)`` on ``log(volume)``; the candidate is scored by the sum of squared
    residuals in the original error scale. ``e_inf`` is chosen on a grid of ``n_grid`` points
    and then refined up to ``n_refine`` times by re-gridding the bracket of +-1 grid step around
    the best point (each round shrinks the bracket about n_grid/2-fold). Pass ``e_inf`` to fix
    it (then only c and beta are fitted). Deterministic; exact on noiseless data up to grid resolution.

    Returns ``{"c", "beta", "e_inf", "residuals", "sse", "rmse", "n", "e_inf_fixed"}``.
    """
    v = _vector(volumes, "volumes", 3)
    err = _vector(errors, "errors", 3)
    if v.size != err.size:
        raise ValueError(f"volumes ({v.size}) and errors ({err.size}) differ in length")
    _positive(v, "volumes")
    _positive(err, "errors")
    n_grid = _count(n_grid, "n_grid", 3)
    n_refine = _count(n_refine, "n_refine", 0)
    logv = np.log(v)
    emin = float(err.min())
    if e_inf is not None:
        e_inf = float(e_inf)
        if not (math.isfinite(e_inf) and 0.0 <= e_inf < emin):
            raise ValueError(f"e_inf must be in [0, min(errors)={emin}), got {e_inf!r}")
        if np.unique(v).size < 2:
            raise ValueError("fit_power_law needs at least 2 distinct volumes")
        fixed = True
        best_e = e_inf
    else:
        if np.unique(v).size < 3:
            raise ValueError("fit_power_law with free e_inf needs at least 3 distinct volumes")
        fixed = False
        hi = emin * (1 - 1e-9)
        lo = 0.0
        best_e, best_sse = 0.0, math.inf
        for _ in range(n_refine + 1):
            grid = np.linspace(lo, hi, n_grid)
            sses = [_power_fit_fixed(logv, err, g)[2] for g in grid]
            i = int(np.argmin(sses))
            if sses[i] < best_sse:
                best_e, best_sse = float(grid[i]), sses[i]
            step = grid[1] - grid[0]
            lo, hi = max(0.0, grid[i] - step), min(emin * (1 - 1e-9), grid[i] + step)
            if hi - lo <= 1e-15 * max(1.0, emin):
                break
    c, beta, sse = _power_fit_fixed(logv, err, best_e)
    resid = err - (c * v ** (-beta) + best_e)
    return {
        "c": c,
        "beta": beta,
        "e_inf": best_e,
        "residuals": resid.tolist(),
        "sse": sse,
        "rmse": math.sqrt(sse / v.size),
        "n": int(v.size),
        "e_inf_fixed": fixed,
    }


# --------------------------------------------------------------------------- groups and power


def group_means(per_language: Mapping[str, float]) -> dict:
    """Mean score per resource group (``docs/scaling-study.md``), grouping from the language table.

    ``per_language`` maps ISO 639-1 codes to one number each (e.g. a task's per-language
    score). Groups come from ``xlrepro.languages.get(code).resource_group``; "unseen" is
    never pooled into "under-resourced".

    Returns ``{"means": {group: mean}, "languages": {group: [codes]}, "note": str}``, groups in
    the order source, high, mid, under-resourced, unseen (absent groups omitted). The note
    lists which languages entered each group, since different tasks cover different sets.
    """
    from xlrepro import languages

    if not isinstance(per_language, Mapping) or not per_language:
        raise ValueError("per_language must be a non-empty dict of language code -> score")
    members: dict[str, list[str]] = {}
    values: dict[str, list[float]] = {}
    for code, score in per_language.items():
        try:
            group = languages.get(code).resource_group
        except KeyError as e:
            raise ValueError(f"per_language: {e.args[0] if e.args else code}") from None
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, float, np.floating, np.integer))
            or not math.isfinite(float(score))
        ):
            raise ValueError(f"per_language[{code!r}] must be a finite number, got {score!r}")
        members.setdefault(group, []).append(code)
        values.setdefault(group, []).append(float(score))
    order = [g for g in GROUP_ORDER if g in members] + sorted(g for g in members if g not in GROUP_ORDER)
    means = {g: float(np.mean(values[g])) for g in order}
    langs = {g: members[g] for g in order}
    note = "; ".join(f"{g} (n={len(langs[g])}): {' '.join(langs[g])}" for g in order)
    return {"means": means, "languages": langs, "note": note}


def underpowered(ci_half_width: float, effect: float) -> bool:
    """True when a CI half-width exceeds the absolute effect claimed (rule 5 above)."""
    for name, val in (("ci_half_width", ci_half_width), ("effect", effect)):
        if (
            isinstance(val, bool)
            or not isinstance(val, (int, float, np.floating, np.integer))
            or not math.isfinite(float(val))
        ):
            raise ValueError(f"{name} must be a finite number, got {val!r}")
    if ci_half_width < 0:
        raise ValueError(f"ci_half_width must be >= 0, got {ci_half_width!r}")
    return float(ci_half_width) > abs(float(effect))


def ci_half_width(n_items: int, p: float = 0.5, alpha: float = 0.05) -> float:
    """Normal-approximation half-width ``z_{1-alpha/2} * sqrt(p(1-p)/n)`` of one accuracy.

    In proportions (×100 for points): n=47 → 0.143, n=500 → 0.044 at p = 0.5
    (the power table of ``docs/scaling-study.md``).
    """
    n = _count(n_items, "n_items", 1)
    p = _prob(p, "p")
    alpha = _prob(alpha, "alpha")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return z * math.sqrt(p * (1 - p) / n)


def min_detectable_difference(
    n_items: int,
    p: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool = False,
    correlation: float | None = None,
) -> float:
    """Smallest accuracy difference a two-sided test detects with the given power (normal approx.).

    ``(z_{1-alpha/2} + z_power) * sqrt(2 p (1-p) (1 - rho) / n)``, in proportions. Unpaired
    (two independent samples of n items, ``paired=False``): rho = 0. Paired (both systems on
    the same n items): rho = ``correlation`` between the two systems' item scores, which must
    be given, since the gain of pairing depends entirely on it. Example:
    n=500, p=0.6, unpaired → 0.087 (8–9 points).
    """
    n = _count(n_items, "n_items", 1)
    p = _prob(p, "p")
    alpha = _prob(alpha, "alpha")
    power = _prob(power, "power")
    if not isinstance(paired, bool):
        raise ValueError(f"paired must be a bool, got {paired!r}")
    if paired:
        if correlation is None:
            raise ValueError("paired=True needs correlation (between the systems' item scores, in [0, 1))")
        rho = float(correlation)
        if not (math.isfinite(rho) and -1.0 <= rho < 1.0):
            raise ValueError(f"correlation must be in [-1, 1), got {correlation!r}")
    else:
        if correlation is not None:
            raise ValueError("correlation only applies to paired=True")
        rho = 0.0
    nd = NormalDist()
    z = nd.inv_cdf(1 - alpha / 2) + nd.inv_cdf(power)
    return z * math.sqrt(2 * p * (1 - p) * (1 - rho) / n)


# ---------------------------------------------------------------------- the scaling study's model


def scaling_mixed_model(rows: Sequence[Mapping], alpha: float = 0.05) -> dict:
    """The pre-registered primary model (``docs/scaling-study.md``), fitted with statsmodels' MixedLM.

    ``rows``: one per (language, seed, volume) score, with keys ``score``, ``volume`` (intermediate
    training examples, > 0), ``language``, ``seed``, ``log_cc100`` (log10 GiB of the language's
    CC-100 data; None for a language XLM-R never saw) and optionally ``task``. Model::

        score ~ lv + lc + unseen + lv:lc + lv:unseen [+ task]  (random intercepts: language, seed)

    with ``lv`` = log10(volume) centred, ``lc`` = log CC-100 centred over the seen languages (0 for
    unseen ones) and ``unseen`` = 1 for languages outside XLM-R's pre-training (their own stratum,
    never a point on the log-size axis). Language and seed are crossed random effects (variance
    components in one group). The primary estimand is the ``lv:lc`` coefficient: the change in
    the volume slope per tenfold more pre-training data (negative = more data helps the
    low-resource languages more). Returns every fixed effect with its estimate, SE, CI and p, the
    variance components, and ``estimand`` (the ``lv:lc`` row)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    alpha = _prob(alpha, "alpha")
    if len(rows) < 8:
        raise ValueError(f"rows: need at least 8 scores to fit the model, got {len(rows)}")
    df = pd.DataFrame([dict(r) for r in rows])
    for k in ("score", "volume", "language", "seed", "log_cc100"):
        if k not in df:
            raise ValueError(f"rows: every row needs {k!r}")
    if (df["volume"] <= 0).any():
        raise ValueError("rows: volume must be > 0 (the baseline without intermediate data has no log volume)")
    df["unseen"] = df["log_cc100"].isna().astype(float)
    seen = df.loc[df["unseen"] == 0, "log_cc100"].astype(float)
    df["lc"] = (df["log_cc100"].astype(float) - seen.mean()).fillna(0.0)
    lv = np.log10(df["volume"].astype(float))
    df["lv"] = lv - lv.mean()
    df["language"] = df["language"].astype(str)
    df["seed"] = df["seed"].astype(str)
    terms = ["lv", "lc", "lv:lc"]
    if df["unseen"].any():
        terms += ["unseen", "lv:unseen"]
    if "task" in df and df["task"].nunique() > 1:
        terms.append("C(task)")
    formula = "score ~ " + " + ".join(terms)
    df["all"] = 1
    model = smf.mixedlm(
        formula, df, groups="all", re_formula="0", vc_formula={"language": "0 + C(language)", "seed": "0 + C(seed)"}
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(reml=True, method=["lbfgs", "powell"])
    ci = fit.conf_int(alpha=alpha)
    effects: dict[str, dict] = {}
    for name in fit.fe_params.index:
        effects[name] = {
            "estimate": float(fit.fe_params[name]),
            "se": float(fit.bse_fe[name]),
            "ci": [float(ci.loc[name, 0]), float(ci.loc[name, 1])],
            "p": float(fit.pvalues[name]),
        }
    vcomp = dict(zip(model.exog_vc.names, (float(v) for v in fit.vcomp)))
    est = effects["lv:lc"]
    return {
        "formula": formula,
        "random": "crossed intercepts: language, seed",
        "n": int(len(df)),
        "n_languages": int(df["language"].nunique()),
        "n_seeds": int(df["seed"].nunique()),
        "effects": effects,
        "variance_components": vcomp,
        "residual_variance": float(fit.scale),
        "estimand": {"term": "lv:lc", **est, "detected": bool(est["ci"][0] > 0 or est["ci"][1] < 0)},
        "converged": bool(fit.converged),
        "alpha": alpha,
    }


def collapse_rate_by_volume(entries: Iterable[Mapping]) -> dict:
    """Share of fine-tunes whose first attempt collapsed, per intermediate volume.

    ``entries``: one per (cell, task) with ``volume`` and ``collapsed`` (bool: the first attempt
    was re-seeded). Returns {volume: {"runs", "collapsed", "rate"}} (volume as text)."""
    out: dict[str, dict] = {}
    for e in entries:
        v = str(e["volume"])
        d = out.setdefault(v, {"runs": 0, "collapsed": 0})
        d["runs"] += 1
        d["collapsed"] += int(bool(e["collapsed"]))
    for d in out.values():
        d["rate"] = d["collapsed"] / d["runs"]
    return out
