"""The report's comparison logic on planted records (fast; the end-to-end report is in tests/e2e/test_sweep.py)."""

import pytest

from xlrepro.study.report import _paper_comparison, to_html
from xlrepro.study.spec import load_spec
from xlrepro.tasks.registry import benchmark_tasks


def _rec(task, variant, split, metric, value, seed=1, lang="de"):
    return {
        "task": task,
        "variant": variant,
        "split": split,
        "metric": metric,
        "value": value,
        "seed": seed,
        "language": lang,
        "phase": "target",
    }


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
    best = rows[("xstilts_mt5", "xnli", "accuracy")]
    # squad has the best *test* score, but the choice is made on dev: mnli
    assert best["chosen"] == "mnli" and best["ours"] == pytest.approx(80.2)
    assert best["diff"] == pytest.approx(80.2 - 80.4) and best["mark"] == "pass"
    # the leaderboard row (RemBERT Table 16) is a separate comparison with its own source
    board = rows[("xstilts_best", "xnli", "accuracy")]
    assert board["diff"] == pytest.approx(80.2 - 80.0) and board["source"] == "rembert16" and best["source"] == "mt5"
    base = rows[("xlmr_large", "xnli", "accuracy")]
    assert base["ours"] == pytest.approx(79.0) and base["mark"] == "pass"
    assert rows[("xlmr_large", "pawsx", "accuracy")]["mark"] == "not run"
    assert rows[("xstilts_best", "bucc2018", "f1")]["mark"] == "no reference"
    assert rows[("xlmr_large", "xtreme_score", "score")]["ours"] is None  # needs all nine tasks


def test_xtreme_score_is_the_plain_nine_task_mean_with_qa_as_mean_of_f1_and_em():
    spec = load_spec("xstilts-table")
    recs, expect = [], []
    for i, task in enumerate(benchmark_tasks("xtreme")):
        metric = "accuracy" if task in ("xnli", "pawsx", "tatoeba") else "f1"
        lang = "ar" if task == "tydiqa" else "de"  # a language of the task in XTREME (TyDiQA has no de)
        recs.append(_rec(task, "baseline", "test", metric, 60.0 + i, lang=lang))
        if task in ("xquad", "mlqa", "tydiqa"):
            recs.append(_rec(task, "baseline", "test", "exact_match", 40.0 + i, lang=lang))
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


def test_lareqa_and_mewslix_runs_get_item_cis_and_paired_tests(tmp_path):
    """Finished LAReQA / Mewsli-X runs are scored item by item from their per-question files (the
    report shows a CI and a paired test); a run without those files (finished before they were
    written) gets neither, and the report says so instead of failing."""
    import json
    from types import SimpleNamespace

    import numpy as np

    from xlrepro.data.types import EntityMentionExample, QASentencePool, ReadResult
    from xlrepro.items import write_items
    from xlrepro.metrics import mewslix_map_at_k
    from xlrepro.phases import Context
    from xlrepro.study.report import analyse, provenance_of, render

    rng = np.random.default_rng(0)
    n = 40
    mentions = [EntityMentionExample(f"m{i}", "de", "d", "Bob met x", 0, 3, "Bob", f"Q{i}") for i in range(n)]
    qids = [f"q{i}" for i in range(n)]
    pool = QASentencePool("p.de", "de", qids, ["?"] * n, ["de:0:0:0"], ["s"], ["c"], [qids], [])
    exp = SimpleNamespace(
        read=lambda task, split, lang: ReadResult(mentions if task == "mewslix" else [pool], {}),
        has_label=Context.has_label,
    )
    nodes, cells = {}, []
    for ci, (variant, p_hit) in enumerate((("baseline", 0.3), ("mnli", 0.8), ("squad", 0.5))):
        keys = []
        for task in ("lareqa", "mewslix"):
            run_dir = tmp_path / "runs" / f"retrieval-{task}-{variant}"
            run_dir.mkdir(parents=True)
            (run_dir / "done.json").write_text("{}")
            if task == "mewslix":  # gold at rank 1 with probability p_hit, else at rank 4
                preds = {
                    m.guid: ([m.entity_id] if rng.random() < p_hit else ["X1", "X2", "X3", m.entity_id])
                    for m in mentions
                }
                value = mewslix_map_at_k(preds, {m.guid: [m.entity_id] for m in mentions})["map@20"]
                item_file, content = run_dir / "predictions" / "mewslix" / "test-de.json", preds
            else:
                aps = np.where(rng.random(n) < p_hit, 1.0, 0.25).tolist()
                value = float(np.mean(aps)) * 100
                item_file = run_dir / "per_question" / "lareqa" / "test-de.json"
                content = {"metric": "map@20", "question_ids": qids, "average_precision": aps}
            if not (variant == "squad" and task == "mewslix"):  # that one finished before the files existed
                item_file.parent.mkdir(parents=True)
                item_file.write_text(json.dumps(content))
            (run_dir / "results.json").write_text(
                json.dumps(
                    {
                        "records": [
                            {
                                "task": task,
                                "language": "de",
                                "split": "test",
                                "metric": "map@20",
                                "value": value,
                                "n": n,
                            }
                        ]
                    }
                )
            )
            write_items(exp, task, run_dir)
            key = f"{task}-{variant}"
            nodes[key] = {
                "kind": "retrieval",
                "task": task,
                "run_dir": str(run_dir.relative_to(tmp_path)),
                "upstream": None,
            }
            keys.append(key)
        cells.append({"index": ci, "runs": keys, "variant": variant, "volume": None, "seed": 1, "intermediate": None})
    desc = {"spec": "planted", "nodes": nodes, "cells": cells}
    spec = SimpleNamespace(baseline="baseline", kind="table", paper=[], select_on="dev", result="planted", seeds=[1])
    a = analyse(tmp_path, desc, spec)
    ci = {(c["task"], c["variant"]): c["languages"]["de"]["ci_half_width"] for c in a["cells"]}
    assert all(ci[(t, v)] is not None and ci[(t, v)] > 0 for t in ("lareqa", "mewslix") for v in ("baseline", "mnli"))
    assert ci[("lareqa", "squad")] is not None and ci[("mewslix", "squad")] is None
    tests = {(t["task"], t["variant"]): t for t in a["paired"]}
    assert set(tests) == {("lareqa", "mnli"), ("lareqa", "squad"), ("mewslix", "mnli")}
    assert tests[("mewslix", "mnli")]["diff"] > 0 and tests[("lareqa", "mnli")]["diff"] > 0
    assert a["no_item_runs"] == {"mewslix": ["retrieval-mewslix-squad"]}
    md = render(desc, spec, a, {"heatmaps": {}, "scaling": {}}, provenance_of(a))
    assert "mewslix: 1 run(s) have no item-level scores" in md and "lareqa: 1 run(s)" not in md
    assert md.count("[CI ±") == 5


def test_collapse_rate_per_volume_from_the_reseed_log(tmp_path):
    import json

    from xlrepro.study.report import collapse_by_volume

    desc = {
        "cells": [
            {"index": 0, "variant": "mnli", "arm": "fixed-epochs", "volume": 100},
            {"index": 1, "variant": "mnli", "arm": "fixed-steps", "volume": 100},
            {"index": 2, "variant": "mnli", "arm": "fixed-epochs", "volume": 900},
        ]
    }
    log = [
        {"cell": 0, "task": "xnli", "seeds_tried": [1], "action": "reseed"},
        {"cell": 0, "task": "xnli", "seeds_tried": [1, 1001], "action": "accept"},
        {"cell": 1, "task": "xnli", "seeds_tried": [1], "action": "accept"},
        {"cell": 2, "task": "xnli", "seeds_tried": [1], "action": "accept"},
    ]
    (tmp_path / "reseeds.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    rates = collapse_by_volume(tmp_path, desc)
    assert rates == {
        "mnli @ 100": {"runs": 1, "collapsed": 1, "rate": 1.0},
        "mnli@fixed-steps @ 100": {"runs": 1, "collapsed": 0, "rate": 0.0},
        "mnli @ 900": {"runs": 1, "collapsed": 0, "rate": 0.0},
    }


def test_records_carry_arm_overlap_domain_and_recipe_and_the_report_shows_them():
    from xlrepro.study.report import _design_fields, _design_rows, _design_section, _row_label

    cell = {
        "variant": "squad",
        "arm": "fixed-steps",
        "volume": 1000,
        "design": {"xquad": {"overlap": ["squad"], "domain": {"shift": "in-domain", "reason": "r"}}},
        "recipes": {
            "target.per_task.xquad": {
                "task": "xquad",
                "source": "train_qa.sh",
                "settings": {"lr": {"value": 3e-5, "from": "registry"}},
            }
        },
    }
    assert _row_label(cell) == "squad@fixed-steps" and _row_label({**cell, "arm": "fixed-epochs"}) == "squad"
    f = _design_fields(cell, "xquad")
    assert f == {
        "arm": "fixed-steps",
        "overlap": ["squad"],
        "domain": {"shift": "in-domain", "reason": "r"},
        "recipe": {"lr": 3e-5},
        "recipe_source": "train_qa.sh",
    }
    rows = _design_rows([{"task": "xquad", "variant": "squad@fixed-steps", **f}])
    text = "\n".join(_design_section(rows))
    assert "| xquad | squad@fixed-steps | fixed-steps | *overlap*: squad | in-domain | lr 3e-05 |" in text
    assert _design_section([{**rows[0], "overlap": [], "domain": None, "recipe": None}]) == []
