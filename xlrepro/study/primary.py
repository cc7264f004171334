"""The pre-registered primary analysis of a finished sweep (``docs/scaling-study.md``).

From the records of a sweep's finished runs (``xlrepro.study.report.collect``) this module builds
the rows of the primary model, one per (target task, intermediate task, language, seed, volume)
test score, and fits ``xlrepro.stats.scaling_mixed_model`` on them:

* per arm (fixed-epochs and fixed-steps each get their own fit; fixed-steps is the primary one);
* three times, side by side, for the re-seed rule: the accepted runs (a re-seeded run replaces
  the collapsed one), the first attempts only (collapsed runs kept), and with every re-seeded cell
  left out (the exclusion rule of the pre-registration). Re-seeding keeps survivors; if the three
  disagree, the collapse rate per volume is the reason to look at.

Rows: the main metric of the test split of target and retrieval runs with an intermediate phase;
English (the training language) and cells whose intermediate data overlap the target's own
training data are left out (analysed apart). ``task`` is the target task crossed with the
intermediate task (one intercept per pair; the volume terms are shared). ``log_cc100`` comes from
the language table (``xlrepro.languages``): log10 of the language's CC-100 GiB, None for the
languages XLM-R never saw (their own stratum). A design that cannot identify the estimand (too
few rows, volumes or seen languages) is reported as such with the reason, never fitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

ATTEMPTS = {
    "accepted": "accepted runs (re-seeds in)",
    "first": "first attempts (collapsed runs kept)",
    "no-reseeded": "re-seeded cells left out",
}
ARM_ROLE = {
    "fixed-steps": "primary (volume at equal compute)",
    "fixed-epochs": "secondary (volume and compute together)",
}
MIN_ROWS = 8
MIN_VOLUMES = 2
MIN_SEEN_LANGUAGES = 2
FEW_LANGUAGES = 5  # below this many seen languages the interaction is a slope difference among a few


def log_cc100(code: str) -> tuple[bool, float | None]:
    """(known, log10 CC-100 GiB or None for a language outside XLM-R's pre-training)."""
    from xlrepro import languages

    try:
        lang = languages.get(code)
    except KeyError:
        return False, None
    if not lang.in_xlmr_pretraining:
        return True, None
    if not lang.cc100_gib or lang.cc100_gib <= 0:
        return False, None
    return True, math.log10(lang.cc100_gib)


def model_rows(
    records: Iterable[Mapping],
    main: Mapping[str, str],
    volumes_by_cell: Mapping[int, float],
    exclude_variants: Iterable[str] = (),
) -> dict:
    """{arm: [row]} for ``stats.scaling_mixed_model`` and what was left out, with reasons counted.
    ``exclude_variants``: the analysis-control variants, fitted apart (``xlrepro.study.controls``)."""
    excluded = set(exclude_variants)
    by_arm: dict[str, list[dict]] = {}
    left_out: dict[str, int] = {}

    def skip(why: str) -> None:
        left_out[why] = left_out.get(why, 0) + 1

    for r in records:
        if r.get("split") != "test" or r.get("phase") not in ("target", "retrieval") or r.get("volume") is None:
            continue
        if r.get("metric") != main.get(r["task"]):
            continue
        if r["language"] == "en":
            continue
        if r.get("variant") in excluded:
            skip("analysis-control variant (fitted apart)")
            continue
        if r.get("overlap"):
            skip("overlapping cell (analysed apart)")
            continue
        vol = r["volume"]
        if not isinstance(vol, (int, float)) or isinstance(vol, bool):
            vol = volumes_by_cell.get(r["cell"])
            if not vol:
                skip("volume 'all' without its intermediate run's example count")
                continue
        known, lc = log_cc100(r["language"])
        if not known:
            skip(f"language {r['language']} has no CC-100 size in the language table")
            continue
        by_arm.setdefault(r.get("arm") or "fixed-epochs", []).append(
            {
                "score": float(r["value"]),
                "volume": float(vol),
                "language": r["language"],
                "seed": r["seed"],
                "log_cc100": lc,
                "task": f"{r['task']}|{r.get('intermediate')}",
                "cell": r["cell"],
            }
        )
    return {"rows": by_arm, "left_out": left_out}


def fittable(rows: Sequence[Mapping]) -> str | None:
    """Why ``rows`` cannot identify the primary estimand, or None when they can."""
    seen = sorted({r["language"] for r in rows if r["log_cc100"] is not None})
    vols = sorted({r["volume"] for r in rows})
    problems = []
    if len(rows) < MIN_ROWS:
        problems.append(f"{len(rows)} scores (at least {MIN_ROWS} needed)")
    if len(vols) < MIN_VOLUMES:
        problems.append(f"{len(vols)} distinct volume(s) (at least {MIN_VOLUMES} needed for a slope)")
    if len({r["log_cc100"] for r in rows if r["log_cc100"] is not None}) < MIN_SEEN_LANGUAGES:
        problems.append(
            f"{len(seen)} language(s) seen by XLM-R ({', '.join(seen) or 'none'}; at least "
            f"{MIN_SEEN_LANGUAGES} with different CC-100 sizes needed for the interaction)"
        )
    return "; ".join(problems) if problems else None


def fit(rows: list[dict], alpha: float = 0.05) -> dict:
    """The primary model on ``rows``: ``{"status": "fitted", ...}`` with the estimand (``lv:lc``) and
    the average volume slope (``lv``), or ``{"status": "too few" | "failed", "reason"}``."""
    from xlrepro import stats

    seen = sorted({r["language"] for r in rows if r["log_cc100"] is not None})
    unseen = sorted({r["language"] for r in rows if r["log_cc100"] is None})
    design = {
        "n": len(rows),
        "seen": seen,
        "unseen": unseen,
        "seeds": sorted({str(r["seed"]) for r in rows}),
        "volumes": sorted({r["volume"] for r in rows}),
        "tasks": sorted({r["task"] for r in rows}),
    }
    why = fittable(rows)
    if why is not None:
        return {"status": "too few", "reason": why, **design}
    try:
        res = stats.scaling_mixed_model([{k: v for k, v in r.items() if k != "cell"} for r in rows], alpha=alpha)
    except (ValueError, ArithmeticError, IndexError) as e:  # numpy's LinAlgError is a ValueError
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}", **design}
    lv = res["effects"]["lv"]
    notes = []
    if len(seen) < FEW_LANGUAGES:
        notes.append(
            f"only {len(seen)} seen languages: the interaction is their slope difference, and the "
            "language variance is barely estimable"
        )
    if not res["converged"]:
        notes.append("the optimiser did not report convergence")
    return {
        "status": "fitted",
        **design,
        "estimand": res["estimand"],
        "slope": {"term": "lv", **lv, "detected": bool(lv["ci"][0] > 0 or lv["ci"][1] < 0)},
        "effects": res["effects"],
        "formula": res["formula"],
        "random": res["random"],
        "variance_components": res["variance_components"],
        "residual_variance": res["residual_variance"],
        "converged": res["converged"],
        "notes": notes,
    }


def analyse(
    records_by_attempt: Mapping[str, list],
    main: Mapping[str, str],
    volumes_by_cell: Mapping[int, float],
    arms: Iterable[str],
    exclude_variants: Iterable[str] = (),
) -> dict:
    """{arm: {"role", "fits": {attempt: fit}, "left_out": {...}}} for every arm of the spec."""
    built = {
        mode: model_rows(recs, main, volumes_by_cell, exclude_variants) for mode, recs in records_by_attempt.items()
    }
    out = {}
    for arm in arms:
        out[arm] = {
            "role": ARM_ROLE.get(arm, arm),
            "fits": {},
            "left_out": built["accepted"]["left_out"] if "accepted" in built else {},
        }
        for mode in ATTEMPTS:
            if mode in built:
                out[arm]["fits"][mode] = fit(built[mode]["rows"].get(arm, []))
    return out


def _ci(e: dict) -> str:
    return f"{e['estimate']:+.2f} [{e['ci'][0]:+.2f}, {e['ci'][1]:+.2f}], p {e['p']:.3f}"


def section(primary: Mapping, collapse: Mapping | None) -> list[str]:
    """The report's Markdown section of the primary analysis."""
    if not primary:
        return []
    L = [
        "## Primary analysis: the pre-registered mixed model",
        "",
        "`score ~ lv + lc + lv:lc + unseen + lv:unseen + task`, random intercepts for language and seed "
        "(crossed), REML (statsmodels MixedLM; `xlrepro.stats.scaling_mixed_model`). `lv` = centred log10 "
        "intermediate examples, `lc` = centred log10 CC-100 GiB of the seen languages (0 for unseen), "
        "`unseen` = XLM-R never saw the language. Rows: test scores of the main metric, English and cells whose "
        "intermediate data overlap the target's training data left out; `task` = target × intermediate task. "
        "**Estimand (H1): `lv:lc`**, negative = more intermediate data helps the less-resourced languages more; "
        "`lv` is the volume slope at the mean log CC-100 size (H2), in points per tenfold volume. "
        "Each arm is fitted on its own, three ways: with the re-seeded runs, with the first attempts only "
        "(collapsed runs kept), and with every re-seeded cell left out.",
        "",
        "| arm | runs used | scores | languages (seen; unseen) | seeds | volumes | lv:lc (estimand), 95% CI, p | "
        "lv (volume slope), 95% CI, p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for arm, entry in primary.items():
        for mode, f in entry["fits"].items():
            langs = f"{' '.join(f['seen']) or '—'}; {' '.join(f['unseen']) or '—'}"
            head = (
                f"| {arm}: {entry['role']} | {ATTEMPTS[mode]} | {f['n']} | {langs} | {len(f['seeds'])} | "
                f"{len(f['volumes'])} |"
            )
            if f["status"] != "fitted":
                word = "too few to fit" if f["status"] == "too few" else "fit failed"
                L.append(f"{head} — | — | **{word}**: {f['reason']} |")
                continue
            e = f["estimand"]
            verdict = (
                "lv:lc < 0 (H1 supported)"
                if e["ci"][1] < 0
                else "lv:lc > 0 (against H1)"
                if e["ci"][0] > 0
                else "cannot tell (CI spans 0)"
            )
            L.append(f"{head} {_ci(e)} | {_ci(f['slope'])} | {verdict} |")
            notes += [f"- {arm}: {n}" for n in f["notes"] if f"- {arm}: {n}" not in notes]
        dropped = entry.get("left_out") or {}
        if dropped:
            notes.append(
                f"- {arm}: left out of the rows: " + "; ".join(f"{why} ({k})" for why, k in sorted(dropped.items()))
            )
    L += [""] + (notes + [""] if notes else [])
    if collapse:
        L += [
            "Collapse rate per volume beside it (first attempts that collapsed): "
            + ", ".join(f"{v} {d['collapsed']}/{d['runs']}" for v, d in collapse.items())
            + ".",
            "",
        ]
    else:
        L += [
            "No re-seed decisions were logged (no classification fine-tune was checked for collapse, or none "
            "collapsed), so the three fits use the same runs.",
            "",
        ]
    return L
