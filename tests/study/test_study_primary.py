"""The sweep report fits the pre-registered primary model (xlrepro.study.primary) on a finished
sweep's records, per arm, with and without the re-seeded runs; and its analysis controls
(xlrepro.study.controls). Planted sweep folders, no training."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from xlrepro.study import controls, primary

LANGS = ("en", "de", "hi", "sw", "tr", "yo")  # en is the training language; yo is unseen by XLM-R
VOLUMES = (100, 1000, 10000)
SEEDS = (1, 2, 3)
SLOPE = {"fixed-steps": 4.0, "fixed-epochs": 1.0}  # planted points per tenfold volume


def _write_run(folder, records):
    folder.mkdir(parents=True)
    (folder / "done.json").write_text("{}")
    (folder / "results.json").write_text(json.dumps({"records": records}))


def _planted_sweep(tmp_path, collapse_at=10000):
    """Two arms x 3 volumes x 3 seeds of an mnli intermediate phase, XNLI target in 5 languages.
    In the fixed-steps arm every first XNLI fine-tune at ``collapse_at`` collapsed (chance, 33.3) and
    its re-seed (seed + 1000) was accepted."""
    rng = np.random.default_rng(0)
    nodes, cells, log = {}, [], []
    lang_eff = {l: rng.normal(0, 3) for l in LANGS}
    for arm in ("fixed-epochs", "fixed-steps"):
        for vol in VOLUMES:
            for seed in SEEDS:
                i = len(cells)
                inter, target = f"inter-{i}", f"target-{i}"
                _write_run(tmp_path / "runs" / inter, [])
                (tmp_path / "runs" / inter / "done.json").write_text(
                    json.dumps({"tasks": {"mnli": {"n_examples": vol}}})
                )

                def recs(score_of):
                    return [
                        {
                            "task": "xnli",
                            "language": l,
                            "split": "test",
                            "metric": "accuracy",
                            "value": score_of(l),
                            "n": 1,
                        }
                        for l in LANGS
                    ]

                def healthy(l, vol=vol, arm=arm, seed=seed):
                    return 50 + SLOPE[arm] * math.log10(vol) + lang_eff[l] + 0.3 * seed + rng.normal(0, 0.5)

                collapsed = arm == "fixed-steps" and vol == collapse_at
                _write_run(tmp_path / "runs" / target, recs((lambda l: 100 / 3) if collapsed else healthy))
                if collapsed:
                    _write_run(tmp_path / "runs" / f"reseed-{i}", recs(healthy))
                    log += [
                        {
                            "cell": i,
                            "task": "xnli",
                            "seeds_tried": [seed],
                            "action": "reseed",
                            "attempt": 0,
                            "seed": seed,
                            "run_dir": f"runs/{target}",
                        },
                        {
                            "cell": i,
                            "task": "xnli",
                            "seeds_tried": [seed, seed + 1000],
                            "action": "accept",
                            "attempt": 1,
                            "seed": seed + 1000,
                            "run_dir": f"runs/reseed-{i}",
                        },
                    ]
                elif arm == "fixed-steps":
                    log.append(
                        {
                            "cell": i,
                            "task": "xnli",
                            "seeds_tried": [seed],
                            "action": "accept",
                            "attempt": 0,
                            "seed": seed,
                            "run_dir": f"runs/{target}",
                        }
                    )
                nodes[inter] = {"kind": "intermediate", "task": "mnli", "run_dir": f"runs/{inter}", "upstream": None}
                nodes[target] = {"kind": "target", "task": "xnli", "run_dir": f"runs/{target}", "upstream": inter}
                cells.append(
                    {
                        "index": i,
                        "variant": "mnli",
                        "arm": arm,
                        "volume": vol,
                        "seed": seed,
                        "intermediate": "mnli",
                        "runs": [inter, target],
                        "design": {"xnli": {"overlap": [], "domain": None}},
                    }
                )
    (tmp_path / "reseeds.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    desc = {"spec": "planted", "nodes": nodes, "cells": cells}
    spec = SimpleNamespace(
        kind="scaling",
        arms=["fixed-epochs", "fixed-steps"],
        baseline=None,
        paper=[],
        select_on="dev",
        result="planted",
        seeds=list(SEEDS),
    )
    return desc, spec


def test_the_report_fits_the_primary_model_per_arm_with_and_without_reseeded_runs(tmp_path):
    from xlrepro.study.report import analyse, provenance_of, render

    desc, spec = _planted_sweep(tmp_path)
    a = analyse(tmp_path, desc, spec)
    steps, epochs = a["primary"]["fixed-steps"]["fits"], a["primary"]["fixed-epochs"]["fits"]
    n_langs = len(LANGS) - 1  # English is left out
    acc, first, dropped = steps["accepted"], steps["first"], steps["no-reseeded"]
    assert acc["status"] == first["status"] == dropped["status"] == "fitted"
    assert acc["n"] == first["n"] == len(VOLUMES) * len(SEEDS) * n_langs
    assert dropped["n"] == acc["n"] - len(SEEDS) * n_langs and 10000.0 not in dropped["volumes"]
    assert acc["seen"] == ["de", "hi", "sw", "tr"] and acc["unseen"] == ["yo"]
    # the accepted re-seeds recover the planted slope; the collapsed first attempts pull it down
    assert acc["slope"]["ci"][0] < SLOPE["fixed-steps"] < acc["slope"]["ci"][1] and acc["slope"]["detected"]
    assert first["slope"]["estimate"] < acc["slope"]["estimate"] - 2
    assert dropped["slope"]["ci"][0] < SLOPE["fixed-steps"] < dropped["slope"]["ci"][1]
    # the other arm has its own fit (its own planted slope), untouched by re-seeding
    assert epochs["accepted"]["slope"]["ci"][0] < SLOPE["fixed-epochs"] < epochs["accepted"]["slope"]["ci"][1]
    assert epochs["accepted"]["slope"]["estimate"] == epochs["first"]["slope"]["estimate"]
    for f in (acc, first, dropped):
        assert set(f["estimand"]) >= {"estimate", "ci", "p"} and f["estimand"]["term"] == "lv:lc"
    md = render(desc, spec, a, {"heatmaps": {}, "scaling": {}}, provenance_of(a))
    section = md.split("## Primary analysis")[1].split("\n## ")[0]
    for label in primary.ATTEMPTS.values():
        assert section.count(f"| {label} |") == 2, label
    assert "fixed-steps: primary" in section and "fixed-epochs: secondary" in section
    e = acc["estimand"]
    assert f"{e['estimate']:+.2f} [{e['ci'][0]:+.2f}, {e['ci'][1]:+.2f}], p {e['p']:.3f}" in section
    assert "mnli@fixed-steps @ 10000 3/3" in section  # collapse rate per volume beside the fits
    assert "## Controls of the analysis" in md and "Both controls passed." in md
    json.dumps(a["primary"]), json.dumps(a["controls"])  # analysis.json holds them


def test_too_few_languages_or_volumes_is_said_not_fitted():
    rows = [
        {"score": 50.0 + s, "volume": 1000.0, "language": l, "seed": s, "log_cc100": lc, "task": "xnli|mnli"}
        for l, lc in (("de", 1.8), ("sw", 0.2), ("yo", None))
        for s in (1, 2, 3)
    ]
    f = primary.fit(rows)
    assert f["status"] == "too few" and "1 distinct volume(s)" in f["reason"]
    one_seen = [r for r in rows if r["language"] != "sw"] * 2
    for i, r in enumerate(one_seen):
        r = one_seen[i] = dict(r)
        r["volume"] = 100.0 if i % 2 else 1000.0
    f2 = primary.fit(one_seen)
    assert f2["status"] == "too few" and "1 language(s) seen by XLM-R (de" in f2["reason"]
    text = "\n".join(
        primary.section(
            {
                "fixed-steps": {
                    "role": primary.ARM_ROLE["fixed-steps"],
                    "fits": {"accepted": f, "first": f2},
                    "left_out": {},
                }
            },
            {},
        )
    )
    assert text.count("**too few to fit**") == 2 and "1 distinct volume(s)" in text
    assert "No re-seed decisions were logged" in text


def test_rows_leave_out_english_overlap_and_baseline_and_use_real_volumes():
    base = {
        "split": "test",
        "phase": "target",
        "metric": "accuracy",
        "task": "xnli",
        "seed": 1,
        "cell": 0,
        "intermediate": "mnli",
        "arm": "fixed-steps",
        "value": 60.0,
    }
    recs = [
        {**base, "language": "de", "volume": 1000},
        {**base, "language": "en", "volume": 1000},
        {**base, "language": "de", "volume": None},  # the baseline: no intermediate phase
        {**base, "language": "de", "volume": 1000, "overlap": ["mnli"]},
        {**base, "language": "yo", "volume": "all", "cell": 7},
        {**base, "language": "de", "volume": 1000, "metric": "f1"},
    ]
    out = primary.model_rows(recs, {"xnli": "accuracy"}, {7: 392702.0})
    rows = out["rows"]["fixed-steps"]
    assert [(r["language"], r["volume"], r["log_cc100"] is None) for r in rows] == [
        ("de", 1000.0, False),
        ("yo", 392702.0, True),
    ]
    assert rows[0]["task"] == "xnli|mnli" and out["left_out"] == {"overlapping cell (analysed apart)": 1}


def _design(n_seen=4, seeds=(1, 2), volumes=(100, 300, 900)):
    langs = [("de", 1.8), ("hi", 1.2), ("sw", 0.2), ("tr", 1.5), ("mr", 0.1)][:n_seen] + [("yo", None)]
    return [
        {"score": 0.0, "volume": float(v), "language": l, "seed": s, "log_cc100": lc, "task": t}
        for t in ("udpos|mnli", "tatoeba|mnli")
        for l, lc in langs
        for s in seeds
        for v in volumes
    ]


@pytest.mark.parametrize("n_seen", [2, 4])
def test_analysis_controls_find_a_planted_slope_and_no_slope_where_none(n_seen):
    c = controls.run(_design(n_seen), "fixed-epochs")
    assert c["status"] == "run" and c["passed"]
    pos, neg = c["positive"], c["negative"]
    assert pos["ci_above_0"] >= controls.MIN_DETECTIONS and pos["fitted"] == controls.REPLICATES
    assert abs(pos["mean_estimate"] - controls.PLANTED_SLOPE) < 0.5
    assert neg["ci_excludes_0"] <= controls.MAX_FALSE_POSITIVES and abs(neg["mean_estimate"]) < 0.5
    text = "\n".join(controls.section(c))
    assert text.count("| passed |") == 2 and "Both controls passed." in text


def test_analysis_controls_fail_loudly_when_the_fit_is_broken(monkeypatch):
    """A fit that ignores volume (scores replaced by their task mean plus noise) fails the positive
    control; one that finds a slope in pure noise (a planted trend added) fails the negative one."""
    real = primary.fit

    def blind(rows, alpha=0.05):
        means = {t: np.mean([r["score"] for r in rows if r["task"] == t]) for t in {r["task"] for r in rows}}
        noise = np.random.default_rng(0).normal(0, 1, len(rows))
        return real([{**r, "score": means[r["task"]] + e} for r, e in zip(rows, noise)], alpha)

    def biased(rows, alpha=0.05):
        return real([{**r, "score": r["score"] + 2 * math.log10(r["volume"])} for r in rows], alpha)

    monkeypatch.setattr(primary, "fit", blind)
    c = controls.run(_design(), "fixed-steps")
    assert not c["positive"]["passed"] and c["negative"]["passed"] and not c["passed"]
    text = "\n".join(controls.section(c))
    assert "**FAILED**" in text and "cannot be trusted" in text
    monkeypatch.setattr(primary, "fit", biased)
    c = controls.run(_design(), "fixed-steps")
    assert c["positive"]["passed"] and not c["negative"]["passed"]


def test_analysis_controls_say_why_they_did_not_run():
    c = controls.run(_design(volumes=(100,)), "fixed-steps")
    assert c["status"] == "not run" and "1 distinct volume(s)" in c["reason"]
    assert "**Not run:**" in "\n".join(controls.section(c))
    assert controls.run([], "fixed-steps")["reason"] == "no scores of the fixed-steps arm to take the design from"


# ---------------------------------------------------------------------- trained controls


def _control_records(slopes: dict, seeds=(1, 2), volumes=(100, 300, 900), arm="fixed-epochs"):
    """Target records of control variants: score = 40 + language + seed + slope x log10(volume) +
    noise, UD-POS after ccg, in three non-English languages (yo unseen) and English."""
    rng = np.random.default_rng(3)
    lang = {"en": 10.0, "tr": 2.0, "mr": -3.0, "yo": -6.0}
    out, cell = [], 0
    for variant, slope in slopes.items():
        for v in volumes:
            for s in seeds:
                cell += 1
                for l, e in lang.items():
                    out.append(
                        {
                            "split": "test",
                            "phase": "target",
                            "metric": "accuracy",
                            "task": "udpos",
                            "language": l,
                            "seed": s,
                            "cell": cell,
                            "intermediate": "ccg",
                            "variant": variant,
                            "arm": arm,
                            "volume": v,
                            "value": 40 + e + 0.5 * s + slope * math.log10(v) + rng.normal(0, 0.3),
                        }
                    )
    return out


def test_trained_controls_pass_on_a_real_effect_and_a_null_and_stay_out_of_the_primary_rows():
    recs = _control_records({"ccg": 6.0, "ccg-shuffled": 0.0, "mnli": 1.0})
    roles = {"positive": "ccg", "negative": "ccg-shuffled"}
    t = controls.trained(recs, {"udpos": "accuracy"}, {}, ["fixed-epochs"], roles)
    pos, neg = t["fixed-epochs"]["positive"], t["fixed-epochs"]["negative"]
    assert pos["status"] == "fitted" and pos["passed"] and pos["slope"]["ci"][0] > 0
    assert abs(pos["slope"]["estimate"] - 6.0) < 1.5 and pos["languages"] == ["mr", "tr", "yo"]
    assert neg["passed"] and neg["slope"]["ci"][0] <= 0 <= neg["slope"]["ci"][1]
    text = "\n".join(controls.trained_section(t))
    assert text.count("| passed |") == 2 and "Both trained controls passed." in text
    # the primary rows leave both control variants out, and say so
    rows = primary.model_rows(recs, {"udpos": "accuracy"}, {}, roles.values())
    assert {r["task"] for r in rows["rows"]["fixed-epochs"]} == {"udpos|ccg"} and len(
        rows["rows"]["fixed-epochs"]
    ) == 18
    assert rows["left_out"] == {"analysis-control variant (fitted apart)": 36}


def test_trained_controls_fail_when_the_effect_is_missing_or_appears_in_the_shuffled_variant():
    # the intermediate data hurt the positive variant, and help the "shuffled" one
    recs = _control_records({"ccg": -6.0, "ccg-shuffled": 6.0})
    t = controls.trained(
        recs, {"udpos": "accuracy"}, {}, ["fixed-epochs"], {"positive": "ccg", "negative": "ccg-shuffled"}
    )
    assert not t["fixed-epochs"]["positive"]["passed"] and not t["fixed-epochs"]["negative"]["passed"]
    text = "\n".join(controls.trained_section(t))
    assert text.count("**FAILED**") == 2 and "cannot be trusted" in text
    # a control with too few rows is reported as not fitted, and fails
    t = controls.trained(recs[:4], {"udpos": "accuracy"}, {}, ["fixed-epochs"], {"positive": "ccg"})
    assert t["fixed-epochs"]["positive"]["status"] == "too few" and not t["fixed-epochs"]["positive"]["passed"]
    assert "**not fitted**" in "\n".join(controls.trained_section(t))
    assert controls.trained(recs, {"udpos": "accuracy"}, {}, ["fixed-epochs"], {}) == {}
