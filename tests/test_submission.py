"""Leaderboard export: every task family written in the XTREME submission layout and read back by
``xlrepro score`` (round trip against labels), and the registry rows of ``xlrepro tasks --json``.

Expected scores are worked out by hand in the comments (they do not come from xlrepro's metrics).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import needs_samples  # noqa: E402

from xlrepro.data.types import (
    Answer,
    BitextExample,
    ClassificationExample,
    EntityMentionExample,
    Format,
    MultipleChoiceExample,
    SpanQAExample,
    TaggingExample,
)
from xlrepro.errors import ConfigError
from xlrepro.submission import (
    assemble_submission,
    label_text,
    prediction_text,
    qa_ids,
    submission_path,
    write_labels,
    write_predictions,
)
from xlrepro.tasks import all_tasks, get_task
from xlrepro.tasks.registry import _parse


def xlrepro(*args, check=True):
    return subprocess.run([sys.executable, "-m", "xlrepro", *args], capture_output=True, text=True, check=check)


# =========================================================================== per-family examples


def _qa(guid, answer, question="q?"):
    ctx = f"some context with {answer} in it"
    return SpanQAExample(guid, question, ctx, [Answer(answer, ctx.index(answer))])


def _raw(examples, ids):
    return [
        {
            "title": "t",
            "paragraphs": [
                {
                    "context": e.context,
                    "qas": [
                        {
                            "id": i,
                            "question": e.question,
                            "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers],
                        }
                    ],
                }
            ],
        }
        for e, i in zip(examples, ids)
    ]


def family_cases():
    """task -> (format, examples, predictions, raw, expected {metric: value}) for one language."""
    nli = [
        ClassificationExample(f"x{i}", "a", "b", l)
        for i, l in enumerate(["entailment", "neutral", "contradiction", "neutral"])
    ]
    paws = [ClassificationExample(f"p{i}", "a", "b", l) for i, l in enumerate(["0", "1", "1"])]
    pos = [TaggingExample("s1", ["a", "b", "c"], ["DET", "NOUN", "VERB"]), TaggingExample("s2", ["d"], ["PUNCT"])]
    ner = [
        TaggingExample("n1", ["anna", "berg", "eats"], ["B-PER", "I-PER", "O"]),
        TaggingExample("n2", ["in", "oslo"], ["O", "B-LOC"]),
    ]
    xquad = [_qa("q1", "the cat"), _qa("q2", "a red box")]
    mlqa = [_qa("m1", "Berlin"), _qa("m2", "the dog")]
    tydi = [_qa("tydiqa.goldp.en.dev.json#0", "1848"), _qa("tydiqa.goldp.en.dev.json#1", "Nairobi")]
    tydi_raw = _raw(tydi, ["english-123-0", "english--456-1"])
    bucc = BitextExample(
        "b",
        "de",
        "en",
        ["de-1", "de-2", "de-3"],
        ["s1", "s2", "s3"],
        ["en-1", "en-2", "en-3"],
        ["t1", "t2", "t3"],
        [("de-1", "en-2"), ("de-3", "en-1")],
    )
    tatoeba = BitextExample(
        "t",
        "de",
        "en",
        ["0", "1", "2", "3"],
        list("abcd"),
        ["0", "1", "2", "3"],
        list("ABCD"),
        [(str(i), str(i)) for i in range(4)],
    )
    return {
        # 3 of 4 right -> 75
        "xnli": (
            Format.CLASSIFICATION,
            nli,
            ["entailment", "neutral", "contradiction", "entailment"],
            None,
            {"accuracy": 75.0},
        ),
        "pawsx": (Format.CLASSIFICATION, paws, ["0", "1", "1"], None, {"accuracy": 100.0}),
        # one run chunk DET, NOUN, VERB + PUNCT all right -> 100
        "udpos": (Format.TAGGING, pos, [["DET", "NOUN", "VERB"], ["PUNCT"]], None, {"f1": 100.0}),
        # gold PER(0-1), LOC(1:1); predicted PER only: P 1/1, R 1/2 -> F1 2*1*0.5/1.5 = 66.67
        "panx": (Format.TAGGING, ner, [["B-PER", "I-PER", "O"], ["O", "O"]], None, {"f1": 200 / 3}),
        # q1 exact, q2 wrong -> EM 50, F1 50
        "xquad": (Format.SPAN_QA, xquad, ["the cat", "blue"], None, {"exact_match": 50.0, "f1": 50.0}),
        "mlqa": (Format.SPAN_QA, mlqa, ["Berlin", "the dog"], None, {"exact_match": 100.0, "f1": 100.0}),
        # keyed by the file's official ids, not by the file-position guids
        "tydiqa": (Format.SPAN_QA, tydi, ["1848", "Nairobi"], tydi_raw, {"exact_match": 100.0, "f1": 100.0}),
        # 1 of 2 predicted pairs in the gold (2 pairs): P = R = F1 = 50
        "bucc2018": (Format.RETRIEVAL, [bucc], [("de-1", "en-2"), ("de-2", "en-3")], None, {"f1": 50.0}),
        # English rows 0..3 retrieve 0, 1, 3, 2: 2 of 4 -> 50
        "tatoeba": (Format.RETRIEVAL, [tatoeba], [0, 1, 3, 2], None, {"accuracy": 50.0}),
    }


def xtreme_r_cases():
    copa = [MultipleChoiceExample("c0", "p", ["a", "b"], 0, "cause"), MultipleChoiceExample("c1", "p", ["a", "b"], 1)]
    mentions = [
        EntityMentionExample("m1", "en", "d", "t", 0, 1, "t", "Q1", []),
        EntityMentionExample("m2", "en", "d", "t", 0, 1, "t", "Q4", []),
    ]
    return {
        "xcopa": (Format.MULTIPLE_CHOICE, copa, [0, 0], None, {"accuracy": 50.0}),  # 1 of 2
        # gold Q1 at rank 1 (1), Q4 at rank 2 (1/2): MRR@20 = 75
        "mewslix": (Format.RETRIEVAL, mentions, {"m1": ["Q1", "Q2"], "m2": ["Q3", "Q4"]}, None, {"map@20": 75.0}),
    }


def xtreme_r_all_cases():
    """Every XTREME-R task that has a submission file (all but LAReQA)."""
    cases = {t: c for t, c in family_cases().items() if "xtreme_r" in get_task(t).benchmarks}
    cases.update(xtreme_r_cases())
    return cases


def _write_all(root, version, cases):
    bench = "xtreme" if version == "xtreme" else "xtreme_r"
    for task, (fmt, examples, preds, raw, _) in cases.items():
        for lang in get_task(task).languages(bench):
            write_predictions(root / "pred", task, "test", lang, fmt, preds, examples, raw)
            write_labels(root / "gold", task, "test", lang, fmt, examples, raw)


@pytest.mark.parametrize("version,cases", [("xtreme", family_cases), ("xtreme-r", xtreme_r_all_cases)])
def test_score_reads_what_export_writes(tmp_path, version, cases):
    cases = cases()
    _write_all(tmp_path, version, cases)
    out = json.loads(
        xlrepro(
            "score", "--predictions", str(tmp_path / "pred"), "--labels", str(tmp_path / "gold"), "--version", version
        ).stdout
    )
    assert set(out["detailed"]) == set(cases)
    for task, (*_, expected) in cases.items():
        for metric, value in expected.items():
            assert out["detailed"][task][f"avg_{metric}"] == pytest.approx(value), (task, metric)
    if version == "xtreme":
        # all nine tasks present: the XTREME score is the plain mean of the task metrics (QA: (EM+F1)/2)
        metrics = [75, 100, 100, 200 / 3, 50, 100, 100, 50, 50]
        assert out["overall"]["all_task"] == pytest.approx(sum(metrics) / 9)
    else:
        assert set(cases) == {t for t in all_tasks() if "xtreme_r" in get_task(t).benchmarks} - {"lareqa"}
    # identical numbers: what `xlrepro score` reads back equals what the pipeline computes in memory
    bench = "xtreme" if version == "xtreme" else "xtreme_r"
    for task, case in cases.items():
        for lang in get_task(task).languages(bench):
            for metric, value in _in_memory_scores(task, case, lang).items():
                assert out["detailed"][task][metric][lang] == value, (task, lang, metric)
    # XCOPA files are JSON lines with a 'label' field (what evaluate.py's read_xcopa parses)
    for path in (tmp_path / "pred" / "xcopa").glob("*.jsonl") if version == "xtreme-r" else ():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert rows and all(isinstance(r, dict) and "label" in r for r in rows), path


def _in_memory_scores(task, case, lang):
    """The metric values the pipeline records for these predictions (the adapters' score(), or the
    retrieval metrics), restricted to the keys evaluate.py reports."""
    from types import SimpleNamespace

    from xlrepro.formats import adapter_for
    from xlrepro.metrics import bucc_f1, mewslix_map_at_k, tatoeba_accuracy
    from xlrepro.metrics._common import is_metric_key

    fmt, examples, preds, raw, _ = case
    if task == "bucc2018":
        out = bucc_f1(preds, examples[0].gold)
    elif task == "tatoeba":
        out = tatoeba_accuracy(preds)
    elif task == "mewslix":
        out = mewslix_map_at_k(preds, {e.guid: [e.entity_id] for e in examples})
    else:
        out = adapter_for(get_task(task), None, 384, None).score(
            preds, examples, SimpleNamespace(raw=raw), lang, "official"
        )
    return {k: v for k, v in out.items() if is_metric_key(k)}


def test_files_are_in_the_official_layout(tmp_path):
    cases = family_cases()
    assert submission_path(tmp_path, "tydiqa", "test", "sw").name == "test-sw.json"
    assert submission_path(tmp_path, "xcopa", "test", "et").name == "test-et.jsonl"
    assert submission_path(tmp_path, "panx", "dev", "en").name == "dev-en.tsv"
    fmt, ex, preds, raw, _ = cases["panx"]
    assert prediction_text("panx", fmt, preds, ex) == "B-PER\nI-PER\nO\n\nO\nO\n\n"
    assert label_text("panx", fmt, ex) == "B-PER\nI-PER\nO\n\nO\nB-LOC\n\n"
    fmt, ex, preds, raw, _ = cases["tydiqa"]
    assert json.loads(prediction_text("tydiqa", fmt, preds, ex, raw)) == {
        "english-123-0": "1848",
        "english--456-1": "Nairobi",
    }
    fmt, ex, preds, raw, _ = cases["bucc2018"]
    assert prediction_text("bucc2018", fmt, preds) == "de-1\ten-2\nde-2\ten-3\n"
    assert label_text("bucc2018", fmt, ex) == "de-1\ten-2\nde-3\ten-1\n"
    fmt, ex, preds, raw, _ = cases["tatoeba"]
    assert prediction_text("tatoeba", fmt, preds) == "0\n1\n3\n2\n"
    assert label_text("tatoeba", fmt, ex) == "0\n1\n2\n3\n"
    # a shuffled Tatoeba side: English row j's label is the line of its translation
    shuffled = ex[0].__class__(
        "t",
        "de",
        "en",
        ["0", "1", "2"],
        list("abc"),
        ["0", "1", "2"],
        list("ABC"),
        [("2", "0"), ("0", "1"), ("1", "2")],
    )
    assert label_text("tatoeba", fmt, [shuffled]) == "2\n0\n1\n"
    copa = xtreme_r_cases()["xcopa"]
    # XCOPA: one JSON object per line with the example id and the chosen alternative (evaluate.py
    # parses each line and compares 'label'); a numeric id is written as a number
    assert (
        prediction_text("xcopa", copa[0], copa[2], copa[1]) == '{"idx": "c0", "label": 0}\n{"idx": "c1", "label": 0}\n'
    )
    numeric = [MultipleChoiceExample("7", "p", ["a", "b"], 1)]
    assert label_text("xcopa", copa[0], numeric) == '{"idx": 7, "label": 1}\n'
    with pytest.raises(ValueError, match="index of an alternative"):
        prediction_text("xcopa", copa[0], ["1"], numeric)


def test_an_unlabelled_split_has_no_label_file_and_bad_predictions_are_refused(tmp_path):
    withheld = [ClassificationExample("x", "a", "b", None)]
    with pytest.raises(ValueError, match="withheld"):
        label_text("pawsx", Format.CLASSIFICATION, withheld)
    with pytest.raises(ValueError, match="without answers"):
        label_text("tydiqa", Format.SPAN_QA, [SpanQAExample("q", "q?", "ctx", [])])
    with pytest.raises(ValueError, match="withheld"):
        label_text("panx", Format.TAGGING, [TaggingExample("s", ["a"], None)])
    with pytest.raises(ValueError, match="2 tags for the 3 words"):
        prediction_text("panx", Format.TAGGING, [["O", "O"]], [TaggingExample("s", ["a", "b", "c"], None)])
    with pytest.raises(ValueError, match="one field"):
        prediction_text("xnli", Format.CLASSIFICATION, ["entail\tment"], withheld)
    with pytest.raises(ValueError, match="1 predictions for 2 examples"):
        prediction_text("xnli", Format.CLASSIFICATION, ["neutral"], withheld * 2)
    with pytest.raises(ValueError, match="no per-file metric"):
        prediction_text("lareqa", Format.RETRIEVAL, [])
    ex = [_qa("a", "x"), _qa("b", "y")]
    with pytest.raises(ValueError, match="occurs twice"):
        qa_ids(ex, _raw(ex, ["same", "same"]))
    with pytest.raises(ValueError, match="1 questions but there are 2"):
        qa_ids(ex, _raw(ex[:1], ["a"]))
    assert not list(tmp_path.iterdir())  # nothing was written


def test_score_reports_bad_files_without_a_traceback(tmp_path):
    copa = xtreme_r_cases()["xcopa"]
    langs = get_task("xcopa").languages("xtreme_r")
    for lang in langs:
        write_predictions(tmp_path / "pred", "xcopa", "test", lang, copa[0], copa[2], copa[1])
        write_labels(tmp_path / "gold", "xcopa", "test", lang, copa[0], copa[1])
    bad = submission_path(tmp_path / "pred", "xcopa", "test", langs[0])
    bad.write_text("0\n1\n")  # the old bare-line form, which evaluate.py's read_xcopa rejects
    r = xlrepro(
        "score",
        "--predictions",
        str(tmp_path / "pred"),
        "--labels",
        str(tmp_path / "gold"),
        "--version",
        "xtreme-r",
        check=False,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("xlrepro: error: ") and f"{bad}, line 1, field 'label'" in r.stderr, r.stderr
    # a content problem a metric finds names the files too
    bad.write_text('{"label": 0}\n')
    r = xlrepro(
        "score",
        "--predictions",
        str(tmp_path / "pred"),
        "--labels",
        str(tmp_path / "gold"),
        "--version",
        "xtreme-r",
        check=False,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and f"{bad}: number of examples (1)" in r.stderr


def test_assemble_submission_rebuilds_from_the_manifest(tmp_path):
    runs = tmp_path / "runs"
    for run, task, langs in (("r1", "xnli", ["de", "en"]), ("r2", "xnli", ["de"]), ("r3", "panx", ["fr"])):
        for lang in langs:
            f = runs / run / task / f"test-{lang}.tsv"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{run}\n")
    dest = tmp_path / "out" / "submission"
    sources = [
        ("xnli", "r1", runs / "r1" / "xnli"),
        ("xnli", "r2", runs / "r2" / "xnli"),
        ("panx", "r3", runs / "r3" / "panx"),
    ]
    manifest = assemble_submission(dest, sources, {("xnli", "de")})
    # the later run wins for xnli/de
    assert manifest == {
        "panx": {"fr": {"run": "r3", "scored": False}},
        "xnli": {"de": {"run": "r2", "scored": True}, "en": {"run": "r1", "scored": False}},
    }
    assert (dest / "xnli" / "test-de.tsv").read_text() == "r2\n"
    assert json.loads((dest / "MANIFEST.json").read_text()) == manifest
    # a later run of the experiment without panx and without xnli/en: their files do not stay, nor do
    # stray files or the temporary folder of an interrupted call
    (dest / "xnli" / "stray.txt").write_text("old")
    (tmp_path / "out" / ".submission.tmp-99999").mkdir()
    manifest = assemble_submission(dest, [("xnli", "r2", runs / "r2" / "xnli")])
    assert manifest == {"xnli": {"de": {"run": "r2", "scored": False}}}
    listed = {"MANIFEST.json"} | {f"{t}/test-{l}.tsv" for t, ls in manifest.items() for l in ls}
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} == listed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["submission"]
    # nothing left to submit: the folder goes
    assert assemble_submission(dest, []) == {} and not dest.exists()


@needs_samples
def test_tydiqa_is_scored_by_its_official_ids(samples):
    """TyDiQA guids are file positions; the pipeline's scorer must key predictions by the file's
    ids (before, every TyDiQA prediction was unmatched and scored 0)."""
    from xlrepro.formats import SpanQAAdapter

    spec = get_task("tydiqa")
    data = spec.read(samples / "tydiqa-goldp", "test", "sw")
    assert data.examples[0].guid.endswith("#0") and data.raw
    gold = [e.answers[0].text for e in data.examples]
    scores = SpanQAAdapter(spec, None, 384, None).score(gold, data.examples, data, "sw", "official")
    assert scores["f1"] == pytest.approx(100.0) and scores["exact_match"] == pytest.approx(100.0)


# =========================================================================== registry / tasks --json

TARGET_BENCHMARKS = ("xtreme", "xtreme_r")


def test_tasks_json_describes_every_task():
    rows = {r["name"]: r for r in json.loads(xlrepro("tasks", "--json").stdout)}
    assert set(rows) == set(all_tasks())
    for name, r in rows.items():
        spec = get_task(name)
        assert r["version"] == spec.version >= 1 and r["format"] == spec.format.value and r["metric"] == spec.metric
        assert r["benchmarks"] == list(spec.benchmarks) and r["description"]
        assert set(r["languages"]) == set(r["labelled"]) == set(spec.splits)
        assert set(r["languages_by_benchmark"]) == set(spec.benchmarks)
        for bench, by_split in r["languages_by_benchmark"].items():
            for split, langs in by_split.items():
                assert set(langs) <= set(r["languages"][split]), (name, bench, split)
        chain = r["english_training_chain"]
        assert r["english_training_source"] == (chain[-1] if chain else None)
        if spec.format.value != "retrieval" and set(spec.benchmarks) & set(TARGET_BENCHMARKS):
            # every target task can be trained: each stage has an English train split, the last
            # stage's early stopping an English dev split
            assert chain, name
            for stage in chain:
                assert "en" in get_task(stage).split_languages("train"), (name, stage)
            assert "en" in get_task(r["english_dev_source"]).split_languages("dev"), name
    assert rows["xcopa"]["english_training_chain"] == ["socialiqa", "copa"]
    assert rows["xcopa"]["english_training_source"] == "copa" and rows["xcopa"]["version"] == 2
    assert rows["xnli"]["english_training_chain"] == ["mnli"] and rows["xnli"]["english_dev_source"] == "mnli"
    assert rows["tydiqa"]["english_training_chain"] == ["tydiqa"] and rows["tydiqa"]["english_dev_source"] == "squad"
    assert rows["xquad"]["english_dev_source"] == "squad" and rows["tatoeba"]["english_training_chain"] == []
    panx = rows["panx"]["languages_by_benchmark"]
    assert len(panx["xtreme"]["test"]) == 40 and len(panx["xtreme_r"]["test"]) == 48
    assert rows["pawsx"]["labelled"] == {"train": True, "dev": True, "test": False}
    assert rows["xcopa"]["labelled"]["test"] is True
    assert "kk" not in rows["udpos"]["languages"]["dev"] and "kk" in rows["udpos"]["languages"]["test"]
    text = xlrepro("tasks").stdout
    assert "socialiqa>copa" in text


def test_a_training_chain_must_end_with_the_train_source():
    base = {
        "name": "t",
        "version": 1,
        "format": "multiple_choice",
        "description": "d",
        "benchmarks": ["xtreme_r"],
        "language_column": {"fixed": ["en"]},
        "metric": "accuracy",
        "splits": {"test": {}},
        "layouts": [{"name": "x", "reader": "copa_jsonl", "files": {"test": "t.jsonl"}}],
    }
    with pytest.raises(ConfigError, match="must end with train_source 'copa'"):
        _parse({**base, "train_source": "copa", "train_chain": ["copa", "socialiqa"]}, "t.yaml")
    assert _parse(
        {**base, "train_source": "copa", "train_chain": ["socialiqa", "copa"]}, "t.yaml"
    ).training_chain() == ["socialiqa", "copa"]
