"""Positive and negative controls of the primary analysis, on a sweep's own design.

The analysis must find a volume effect where there is one and must not find one where there is
none. Training a smoke-scale world where intermediate data measurably helps is too weak and too
slow for CI (``docs/scaling-study.md``, "Analysis controls"), so the controls run the same code
(``xlrepro.study.primary.fit``, hence ``xlrepro.study.stats.scaling_mixed_model``) on generated
scores laid out exactly like the sweep's rows (its languages, seeds, volumes, target x intermediate
tasks):

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


def section(c: Mapping) -> list[str]:
    """The report's Markdown section of the analysis controls."""
    if not c:
        return []
    L = [
        "## Controls of the analysis",
        "",
        "The primary model fitted to generated scores laid out like this sweep's rows (same languages, seeds, "
        f"volumes and tasks; arm {c['arm']}): a **positive control** where the score rises "
        f"{c['planted_slope']:g} points per tenfold volume (the fitted `lv` must be positive, its CI excluding 0) "
        "and a **negative control** where intermediate data carry no information, as with shuffled intermediate "
        "labels (the `lv` CI must cover 0). Noise: language sd {language_sd:g}, seed sd {seed_sd:g}, task sd "
        "{task_sd:g}, item sd {item_sd:g} points; {replicates} generated worlds each. "
        "These check the analysis code and the design's power; the "
        "controls are synthetic, not trained runs (docs/scaling-study.md).".format(replicates=REPLICATES, **c["noise"]),
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
