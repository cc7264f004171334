"""Positive and negative controls of the primary analysis.

The analysis must find a volume effect where there is one and must not find one where there is
none (``docs/scaling-study.md``, "Analysis controls"). Two kinds, both fitted with the same code as
the primary analysis (``xlrepro.study.primary.fit``, hence ``xlrepro.stats.scaling_mixed_model``):

**Trained controls** (:func:`trained`): two variants of the sweep, named by the spec's
``analysis_controls``, are trained like every other cell and fitted apart from the primary rows:

* positive: an intermediate task whose data can help the target (in the smoke world, CCG
  supertags, a refinement of the UD-POS target's tags, drawn from the same grammar); the fitted
  ``lv`` slope must be positive with a 95% CI above 0;
* negative: the same task with its intermediate labels shuffled
  (``intermediate.train.shuffle_labels``), so more of it carries no more information; the ``lv`` CI
  must cover 0.

**Synthetic controls** (:func:`run`): generated scores laid out exactly like the sweep's rows (its
languages, seeds, volumes, target x intermediate tasks), which test the fitting code and the
design's power without training:

* positive control: scores rise by ``PLANTED_SLOPE`` points per tenfold intermediate volume; the
  fitted ``lv`` must be positive with a 95% CI that excludes 0;
* negative control: the intermediate data carry no information (as with shuffled intermediate
  labels), so the score does not depend on volume; the ``lv`` CI must cover 0.

Each control is ``REPLICATES`` generated worlds (fixed generator seeds, so the result is
reproducible) with random language, seed and task intercepts and item-level noise (standard
deviations below). A 95% CI excludes a true 0 in 5% of worlds, so one world cannot judge the
negative control: it passes when at most ``MAX_FALSE_POSITIVES`` of the replicates exclude 0
(probability 1.2% for a calibrated test), and the positive control passes when at least
``MIN_DETECTIONS`` of them find the planted slope.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PLANTED_SLOPE = 3.0  # points per tenfold intermediate volume (positive control)
LANGUAGE_SD = 3.0
SEED_SD = 1.0
TASK_SD = 5.0
NOISE_SD = 1.5
REPLICATES = 10
MIN_DETECTIONS = 8
MAX_FALSE_POSITIVES = 2
GENERATOR_SEEDS = {"positive": 1000, "negative": 2000}  # replicate k uses seed + k


def synthetic_scores(design: Sequence[Mapping], slope: float, seed: int) -> list[dict]:
    """``design``'s rows with generated scores: 50 + task + language + seed intercepts +
    ``slope`` x log10(volume) + noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lang = {k: rng.normal(0, LANGUAGE_SD) for k in sorted({str(r["language"]) for r in design})}
    seeds = {k: rng.normal(0, SEED_SD) for k in sorted({str(r["seed"]) for r in design})}
    tasks = {k: rng.normal(0, TASK_SD) for k in sorted({str(r["task"]) for r in design})}
    out = []
    for r in design:
        score = (
            50
            + tasks[str(r["task"])]
            + lang[str(r["language"])]
            + seeds[str(r["seed"])]
            + slope * math.log10(float(r["volume"]))
            + rng.normal(0, NOISE_SD)
        )
        out.append({**r, "score": float(score)})
    return out


def run(design: Sequence[Mapping], arm: str) -> dict:
    """Both controls on ``design`` (rows of ``xlrepro.study.primary.model_rows``). Returns
    ``{"status": "run", "positive", "negative", "passed", ...}`` or ``{"status": "not run", "reason"}``."""
    from xlrepro.study import primary

    base = {
        "arm": arm,
        "planted_slope": PLANTED_SLOPE,
        "noise": {"language_sd": LANGUAGE_SD, "seed_sd": SEED_SD, "task_sd": TASK_SD, "item_sd": NOISE_SD},
    }
    if not design:
        return {"status": "not run", "reason": f"no scores of the {arm} arm to take the design from", **base}
    why = primary.fittable(list(design))
    if why is not None:
        return {"status": "not run", "reason": f"the design cannot be fitted: {why}", **base}
    out: dict[str, Any] = {"status": "run", "n": len(design), "replicates": REPLICATES, **base}
    for name, slope in (("positive", PLANTED_SLOPE), ("negative", 0.0)):
        estimates, excluding, above, failed = [], 0, 0, []
        for k in range(REPLICATES):
            f = primary.fit(synthetic_scores(design, slope, GENERATOR_SEEDS[name] + k))
            if f["status"] != "fitted":
                failed.append(f["reason"])
                continue
            lo, hi = f["slope"]["ci"]
            estimates.append(f["slope"]["estimate"])
            excluding += int(lo > 0 or hi < 0)
            above += int(lo > 0)
        ok = (above >= MIN_DETECTIONS if name == "positive" else excluding <= MAX_FALSE_POSITIVES) and not failed
        out[name] = {
            "planted": slope,
            "fitted": len(estimates),
            "failed": failed,
            "mean_estimate": sum(estimates) / len(estimates) if estimates else None,
            "ci_above_0": above,
            "ci_excludes_0": excluding,
            "passed": ok,
        }
    out["passed"] = bool(out["positive"]["passed"] and out["negative"]["passed"])
    return out


def trained(
    records: Sequence[Mapping],
    main: Mapping[str, str],
    volumes_by_cell: Mapping[int, float],
    arms: Sequence[str],
    variants: Mapping[str, str],
) -> dict:
    """The trained controls: ``{arm: {role: {...}}}`` with the primary model fitted on each control
    variant's own rows (``variants``: {"positive" | "negative": variant label}); {} when the spec
    names none."""
    from xlrepro.study import primary

    out: dict[str, dict] = {arm: {} for arm in arms}
    for role, label in variants.items():
        by_arm = primary.model_rows([r for r in records if r.get("variant") == label], main, volumes_by_cell)["rows"]
        for arm in arms:
            f = primary.fit(by_arm.get(arm, []))
            entry: dict[str, Any] = {
                "variant": label,
                "n": f["n"],
                "languages": f["seen"] + f["unseen"],
                "volumes": f["volumes"],
                "status": f["status"],
                "tasks": f["tasks"],
            }
            if f["status"] != "fitted":
                entry.update(reason=f["reason"], passed=False)
            else:
                lo, hi = f["slope"]["ci"]
                entry["slope"] = {k: f["slope"][k] for k in ("estimate", "ci", "p")}
                entry["passed"] = bool(lo > 0) if role == "positive" else bool(lo <= 0 <= hi)
            out[arm][role] = entry
    return {arm: by_role for arm, by_role in out.items() if by_role}


TRAINED_EXPECTED = {
    "positive": "slope > 0, CI above 0 (the effect that exists is found)",
    "negative": "CI covers 0 (no effect where there is none)",
}


def trained_section(t: Mapping) -> list[str]:
    """The report's Markdown table of the trained controls."""
    if not t:
        return []
    L = [
        "### Trained controls",
        "",
        "Two variants of this sweep, trained like every other cell and fitted apart from the primary rows with "
        "the same model: the **positive** control's intermediate data can help the target, the **negative** "
        "control trains on the same data with its intermediate labels shuffled. `lv` = points per tenfold "
        "intermediate volume.",
        "",
        "| control | variant | arm | scores | languages | volumes | lv (volume slope), 95% CI, p | expected | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    passed = True
    for arm, by_role in t.items():
        for role, e in by_role.items():
            head = (
                f"| {role} | {e['variant']} | {arm} | {e['n']} | {' '.join(e['languages']) or '—'} | "
                f"{len(e['volumes'])} |"
            )
            if e["status"] != "fitted":
                L.append(f"{head} — ({e['reason']}) | {TRAINED_EXPECTED[role]} | **not fitted** |")
            else:
                s = e["slope"]
                ci = f"{s['estimate']:+.2f} [{s['ci'][0]:+.2f}, {s['ci'][1]:+.2f}], p {s['p']:.3f}"
                L.append(f"{head} {ci} | {TRAINED_EXPECTED[role]} | {'passed' if e['passed'] else '**FAILED**'} |")
            passed = passed and e["passed"]
    L += [
        "",
        "Both trained controls passed."
        if passed
        else "**A trained control failed: the primary analysis above cannot be trusted on this design.**",
        "",
    ]
    return L


def section(c: Mapping) -> list[str]:
    """The report's Markdown section of the analysis controls (trained, then synthetic)."""
    if not c:
        return []
    L = ["## Controls of the analysis", ""]
    L += trained_section(c.get("trained") or {})
    L += [
        "### Synthetic controls",
        "",
        "The primary model fitted to generated scores laid out like this sweep's rows (same languages, seeds, "
        f"volumes and tasks; arm {c['arm']}): a **positive control** where the score rises "
        f"{c['planted_slope']:g} points per tenfold volume (the fitted `lv` must be positive, its CI excluding 0) "
        "and a **negative control** where intermediate data carry no information, as with shuffled intermediate "
        "labels (the `lv` CI must cover 0). Noise: language sd {language_sd:g}, seed sd {seed_sd:g}, task sd "
        "{task_sd:g}, item sd {item_sd:g} points; {replicates} generated worlds each. "
        "These check the analysis code and the design's power without training (docs/scaling-study.md).".format(
            replicates=REPLICATES, **c["noise"]
        ),
        "",
    ]
    if c["status"] != "run":
        return L + [f"**Not run:** {c['reason']}.", ""]
    n = c["replicates"]
    L += [
        "| control | planted lv | mean fitted lv | replicates with the CI above 0 | with the CI excluding 0 | "
        "expected | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, want in (
        ("positive", f"CI above 0 in at least {MIN_DETECTIONS} of {n}"),
        ("negative", f"CI excludes 0 in at most {MAX_FALSE_POSITIVES} of {n}"),
    ):
        e = c[name]
        mean = "—" if e["mean_estimate"] is None else f"{e['mean_estimate']:+.2f}"
        L.append(
            f"| {name} | {e['planted']:+.1f} | {mean} | {e['ci_above_0']}/{n} | {e['ci_excludes_0']}/{n} | "
            f"{want} | {'passed' if e['passed'] else '**FAILED**'} |"
        )
        if e["failed"]:
            L.append(f"| | {len(e['failed'])} fit(s) failed: {e['failed'][0]} | | | | | |")
    L += [
        "",
        "Both controls passed."
        if c["passed"]
        else "**A control failed: the primary analysis above cannot be trusted on this design.**",
        "",
    ]
    return L
