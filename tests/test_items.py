"""Item-level scores (xlrepro.items): their aggregate equals the official corpus-level metric, so
bootstrap CIs and paired tests resample the right thing; and the re-seed policy of the sweep."""

import json
import random

import numpy as np
import pytest

from xlrepro.data.types import Answer, ClassificationExample, SpanQAExample, TaggingExample
from xlrepro.formats import squad_data as _squad_data
from xlrepro.items import collapse_check, item_scores, statistic
from xlrepro.metrics import accuracy, qa_score, tagging_f1
from xlrepro.tasks import get_task


def test_tagging_items_give_the_official_micro_f1():
    rnd = random.Random(0)
    tags = ["B-PER", "I-PER", "B-LOC", "I-LOC", "O", "O"]
    gold = [[rnd.choice(tags) for _ in range(rnd.randint(1, 12))] for _ in range(60)]
    pred = [[t if rnd.random() < 0.7 else rnd.choice(tags) for t in s] for s in gold]
    ex = [TaggingExample(str(i), ["w"] * len(s), s) for i, s in enumerate(gold)]
    e = item_scores(get_task("panx"), "tagging", pred, ex, "de", "official")
    assert e["kind"] == "ratio"
    _, f = statistic(e)
    assert f(np.arange(len(ex))) == pytest.approx(tagging_f1(pred, gold)["f1"])
    sub = np.array([0, 0, 5, 7, 7, 7])  # a resample recomputes the ratio over the drawn sentences
    assert f(sub) == pytest.approx(tagging_f1([pred[i] for i in sub], [gold[i] for i in sub])["f1"])


def test_classification_and_qa_items_average_to_the_metric():
    ex = [ClassificationExample(str(i), "a", "b", lab) for i, lab in enumerate(["x", "y", "x", "z", "y"])]
    preds = ["x", "x", "x", "z", "z"]
    e = item_scores(get_task("xnli"), "classification", preds, ex, "de", "official")
    assert np.mean(e["scores"]) == pytest.approx(accuracy(preds, [x.label for x in ex])["accuracy"])
    qa = [
        SpanQAExample("q1", "who?", "the old king sat", [Answer("old king", 4)]),
        SpanQAExample("q2", "what?", "a red cup", [Answer("red cup", 2)]),
        SpanQAExample("q3", "where?", "in the house", [Answer("the house", 3)]),
    ]
    p = {"q1": "the old king", "q2": "cup", "q3": "garden"}
    e = item_scores(get_task("xquad"), "span_qa", p, qa, "en", "official")
    whole = qa_score(p, _squad_data(qa), task="xquad", lang="en", mode="official")
    assert np.mean(e["scores"]) == pytest.approx(whole["f1"])
    assert np.mean(e["exact_match"]) == pytest.approx(whole["exact_match"])


def test_collapse_check_reads_english_dev_first(tmp_path):
    items = {
        "test/en": {"kind": "binary", "scores": [100.0] * 6, "predictions": list("abcabc"), "labels": list("abcabc")},
        "dev/en": {"kind": "binary", "scores": [], "predictions": ["a"] * 9, "labels": list("abcabcabc")},
    }
    (tmp_path / "items.json").write_text(json.dumps({"items": items}))
    res = collapse_check(tmp_path)
    assert res["on"] == "dev/en" and res["collapsed"] and "dominant-prediction" in res["reason"]
    (tmp_path / "items.json").write_text(json.dumps({"items": {"dev/de": items["test/en"]}}))
    assert collapse_check(tmp_path)["collapsed"] is False


def test_a_collapsed_fine_tune_is_reseeded_and_logged(tmp_path, monkeypatch):
    """The policy re-runs a collapsed classification target with seed + 1000 (intermediate included),
    logs each decision to reseeds.jsonl, and the report then uses the accepted run."""
    from xlrepro import sweep
    from xlrepro.study.spec import parse_spec

    spec = parse_spec(
        {
            "name": "t",
            "result": "r",
            "kind": "table",
            "config": "xstilts-squad",
            "overrides": ["target.tasks=[xnli]", "retrieval.tasks=[]"],
            "variants": [{"label": "mnli", "overrides": ["intermediate.tasks=[mnli]"]}],
            "seeds": [1],
            "max_reseeds": 2,
        },
        "t.yaml",
    )
    graph = sweep.Graph(spec, __import__("xlrepro.study.spec", fromlist=["expand"]).expand(spec), tmp_path, [])
    executed = []
    collapsed = {"predictions": ["entailment"] * 30, "labels": ["entailment", "neutral", "contradiction"] * 10}
    healthy = {"predictions": ["entailment", "neutral", "contradiction"] * 10, "labels": collapsed["labels"]}

    def fake_execute(self, exp, pnode, nodes):
        kind = pnode.kind
        run_dir = tmp_path / pnode.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "done.json").write_text("{}")
        executed.append((kind, exp.cfg.seed))
        if kind == "target":  # the first re-seed collapses too, the second is healthy
            entry = collapsed if exp.cfg.seed in (1, 1001) else healthy
            (run_dir / "items.json").write_text(
                json.dumps({"items": {"dev/en": {"kind": "binary", "scores": [], **entry}}})
            )

    monkeypatch.setattr(sweep.Runner, "_execute", fake_execute)
    monkeypatch.setattr(sweep.Runner, "context", lambda self, cell: sweep.cell_context(cell, tmp_path))
    runner = sweep.Runner(graph, "cpu")
    for key in graph.nodes:
        runner.run(key)
    assert executed == [
        ("intermediate", 1),
        ("target", 1),
        ("intermediate", 1001),
        ("target", 1001),
        ("intermediate", 2001),
        ("target", 2001),
    ]
    log = [json.loads(l) for l in (tmp_path / "reseeds.jsonl").read_text().splitlines()]
    assert [(d["action"], d["seed"], d["next_seed"]) for d in log] == [
        ("reseed", 1, 1001),
        ("reseed", 1001, 2001),
        ("accept", 2001, None),
    ]
    assert log[-1]["run_dir"] != log[0]["run_dir"] and log[-1]["policy"] == "seed + 1000*k"


def test_a_sweep_killed_before_the_reseed_decision_decides_on_restart(tmp_path, monkeypatch):
    from xlrepro import sweep
    from xlrepro.study.spec import expand, parse_spec

    spec = parse_spec(
        {
            "name": "t",
            "result": "r",
            "kind": "table",
            "config": "xstilts-squad",
            "overrides": ["target.tasks=[xnli]", "retrieval.tasks=[]"],
            "variants": [{"label": "none", "overrides": ["intermediate.tasks=[]"]}],
            "seeds": [1],
        },
        "t.yaml",
    )
    graph = sweep.Graph(spec, expand(spec), tmp_path, [])
    (node,) = graph.nodes.values()
    run_dir = tmp_path / node.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "done.json").write_text("{}")  # finished, killed before items.json and the decision
    healthy = {"kind": "binary", "scores": [], "predictions": ["a", "b", "c"] * 5, "labels": ["a", "b", "c"] * 5}
    monkeypatch.setattr(sweep.Runner, "context", lambda self, cell: None)
    monkeypatch.setattr(
        "xlrepro.items.write_items",
        lambda exp, task, d: (d / "items.json").write_text(json.dumps({"items": {"dev/en": healthy}})),
    )
    assert sweep.Runner(graph, "cpu").run(node.key) == "skipped"
    log = [json.loads(l) for l in (tmp_path / "reseeds.jsonl").read_text().splitlines()]
    assert [d["action"] for d in log] == ["accept"]
    sweep.Runner(graph, "cpu").run(node.key)  # decided: not again
    assert len((tmp_path / "reseeds.jsonl").read_text().splitlines()) == 1


def test_retrieval_items_give_tatoeba_accuracy_and_bucc_set_f1():
    from xlrepro.data.types import BitextExample
    from xlrepro.metrics import bucc_f1, tatoeba_accuracy

    ids = [str(i) for i in range(6)]
    tat = BitextExample("tatoeba.de", "de", "en", ids, ["s"] * 6, ids, ["e"] * 6, [(i, i) for i in ids])
    preds = ["0", "2", "2", "3", "0", "5"]  # the exported file's lines: retrieved line per English query
    e = item_scores(get_task("tatoeba"), "retrieval", preds, [tat], "de", "official")
    assert e["kind"] == "binary"
    assert np.mean(e["scores"]) == pytest.approx(tatoeba_accuracy([int(p) for p in preds])["accuracy"])
    with pytest.raises(ValueError, match="5 predictions for 6"):
        item_scores(get_task("tatoeba"), "retrieval", preds[:5], [tat], "de", "official")

    src = ["de-1", "de-2", "de-3", "de-4", "de-5"]
    gold = [("de-1", "en-1"), ("de-2", "en-2"), ("de-4", "en-4"), ("de-4", "en-9")]
    bucc = BitextExample("bucc.de", "de", "en", src, ["s"] * 5, ["en-1"], ["e"], gold)
    lines = ["de-1\ten-1", "de-2\ten-7", "de-3\ten-3", "de-4\ten-4"]
    e = item_scores(get_task("bucc2018"), "retrieval", lines, [bucc], "de", "official")
    assert e["kind"] == "ratio" and len(e["scores"]) == len(src)
    _, f = statistic(e)
    assert f(np.arange(len(src))) == pytest.approx(bucc_f1([tuple(x.split("\t")) for x in lines], gold)["f1"])
    with pytest.raises(ValueError, match="not in the data"):
        item_scores(get_task("bucc2018"), "retrieval", ["de-99\ten-1"], [bucc], "de", "official")


def _mention(guid, entity):
    from xlrepro.data.types import EntityMentionExample

    return EntityMentionExample(guid, "de", "d", "Bob met x", 0, 3, "Bob", entity)


def test_mewslix_items_give_the_official_mrr_at_20():
    from xlrepro.metrics import mewslix_map_at_k

    mentions = [_mention(f"m{i}", f"Q{i}") for i in range(5)]
    preds = {
        "m0": ["Q0", "Q9"],
        "m1": ["Q9", "Q1"],
        "m2": [f"Q{j}" for j in range(10, 30)] + ["Q2"],
        "m3": [" Q3"],
    }  # m2's gold sits at rank 21 (outside @20), m3's is unstripped, m4 is missing
    gold = {m.guid: [m.entity_id] for m in mentions}
    for mode in ("official", "corrected"):
        e = item_scores(get_task("mewslix"), "retrieval", preds, mentions, "de", mode)
        assert e["kind"] == "mean" and e["metric"] == "map@20"
        assert e["scores"][:3] == [100.0, 50.0, 0.0] and e["scores"][4] == 0.0
        assert np.mean(e["scores"]) == pytest.approx(
            mewslix_map_at_k(preds, gold, k=20, mode=mode)["map@20"], rel=1e-12
        )
    with pytest.raises(ValueError, match="not in the data"):
        item_scores(get_task("mewslix"), "retrieval", {"m99": ["Q1"]}, mentions, "de", "official")
    with pytest.raises(ValueError, match="without a gold entity"):
        item_scores(get_task("mewslix"), "retrieval", preds, mentions + [_mention("m5", None)], "de", "official")


def test_lareqa_items_are_the_per_question_average_precisions():
    from xlrepro.data.types import QASentencePool

    pool = QASentencePool(
        "p.de",
        "de",
        ["a", "b", "c"],
        ["?"] * 3,
        ["de:0:0:0"],
        ["s"],
        ["c"],
        [["a", "b", "c"]],
        [("a", "de:0:0:0"), ("b", "de:0:0:0"), ("c", "de:0:0:0")],
    )
    per_q = {"metric": "map@20", "question_ids": ["a", "b", "c"], "average_precision": [1.0, 0.25, 0.0]}
    e = item_scores(get_task("lareqa"), "retrieval", per_q, [pool], "de", "official")
    assert e == {"metric": "map@20", "kind": "mean", "scores": [100.0, 25.0, 0.0]}
    with pytest.raises(ValueError, match="question ids differ"):
        item_scores(
            get_task("lareqa"), "retrieval", {**per_q, "question_ids": ["a", "c", "b"]}, [pool], "de", "official"
        )
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        item_scores(
            get_task("lareqa"), "retrieval", {**per_q, "average_precision": [1.0, 25.0, 0.0]}, [pool], "de", "official"
        )


def test_a_retrieval_run_without_per_item_files_gets_no_items(tmp_path):
    """Runs finished before LAReQA/Mewsli-X exported their per-item files: empty items, no error."""
    from xlrepro.items import load_items, write_items

    for task in ("lareqa", "mewslix"):
        run_dir = tmp_path / task
        run_dir.mkdir()
        write_items(None, task, run_dir)  # no file to score: the experiment is never asked for data
        assert load_items(run_dir) == {}
