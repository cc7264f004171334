"""The report's comparison logic on planted records (fast; the end-to-end report is in test_sweep.py)."""
import pytest

from xlrepro.experiments import load_spec
from xlrepro.sweep_report import XTREME_TASKS, _paper_comparison, to_html


def _rec(task, variant, split, metric, value, seed=1, lang="de"):
    return {"task": task, "variant": variant, "split": split, "metric": metric, "value": value, "seed": seed,
            "language": lang, "phase": "target"}


def test_best_intermediate_model_is_chosen_on_dev_and_reported_on_test():
    spec = load_spec("xstilts-submission")
    recs = []
    for variant, dev, test in (("baseline", 70.0, 79.0), ("mnli", 75.0, 80.2), ("squad", 74.0, 95.0)):
        for seed, noise in ((1, -0.5), (2, 0.5)):
            for lang in ("de", "fr"):
                recs.append(_rec("xnli", variant, "dev", "accuracy", dev + noise, seed, lang))
                recs.append(_rec("xnli", variant, "test", "accuracy", test + noise, seed, lang))
    table = next(t for t in _paper_comparison(recs, spec, {}) if t["id"] == "xtreme_test")
    rows = {(r["system"], r["task"], r["metric"]): r for r in table["rows"]}
    best = rows[("xstilts_best", "xnli", "accuracy")]
    # squad has the best *test* score, but the choice is made on dev: mnli
    assert best["chosen"] == "mnli" and best["ours"] == pytest.approx(80.2)
    assert best["diff"] == pytest.approx(80.2 - 80.4) and best["mark"] == "pass"
    base = rows[("xlmr_large", "xnli", "accuracy")]
    assert base["ours"] == pytest.approx(79.0) and base["mark"] == "pass"
    assert rows[("xlmr_large", "pawsx", "accuracy")]["mark"] == "not run"
    assert rows[("xstilts_best", "bucc2018", "f1")]["mark"] == "no reference"
    assert rows[("xlmr_large", "xtreme_score", "score")]["ours"] is None  # needs all nine tasks


def test_xtreme_score_is_the_plain_nine_task_mean_with_qa_as_mean_of_f1_and_em():
    spec = load_spec("xstilts-table")
    recs, expect = [], []
    for i, task in enumerate(XTREME_TASKS):
        metric = "accuracy" if task in ("xnli", "pawsx", "tatoeba") else "f1"
        recs.append(_rec(task, "baseline", "test", metric, 60.0 + i))
        if task in ("xquad", "mlqa", "tydiqa"):
            recs.append(_rec(task, "baseline", "test", "exact_match", 40.0 + i))
            expect.append(50.0 + i)
        else:
            expect.append(60.0 + i)
    table = next(t for t in _paper_comparison(recs, spec, {}) if t["id"] == "xtreme_test")
    row = next(r for r in table["rows"] if r["system"] == "xlmr_large" and r["task"] == "xtreme_score")
    assert row["ours"] == pytest.approx(sum(expect) / 9)


def test_html_keeps_tables_images_and_the_smoke_banner():
    md = "# T\n\n> **Smoke scale.** x\n\n| a | b |\n|---|---|\n| 1 | *no reference* |\n\n![c](c.png)\n\n- item `x`\n"
    h = to_html(md, "t")
    assert "<h1>T</h1>" in h and "<blockquote><b>Smoke scale.</b> x</blockquote>" in h
    assert "<th>a</th>" in h and "<td><i>no reference</i></td>" in h and "src='c.png'" in h
    assert "<li>item <code>x</code></li>" in h
