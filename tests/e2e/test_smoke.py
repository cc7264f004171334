"""The kick-the-tires reproduction end to end (every phase, every format, offline, CPU).

The smoke world is built so that a working pipeline transfers: zero-shot scores in the
non-English languages must be clearly above chance, and the same XNLI run with shuffled
training labels must stay at chance. Thresholds leave room for seed noise: with 300 test
items per language, a 3-way chance accuracy has a standard deviation of about 2.7 points.
"""

import json
import time

import pytest

from xlrepro.config import load_config
from xlrepro.metrics.evaluate import score_language
from xlrepro.phases.orchestrator import run_experiment

pytestmark = pytest.mark.slow  # every test here trains (tests/README.md)

CHANCE = {"xnli": 100 / 3, "xcopa": 50.0}
LANGS = {"en", "tr", "vi", "zh"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    t0 = time.time()
    results = run_experiment(load_config("smoke"), out)
    return out, results, time.time() - t0


def _scores(results, task, metric, phase="target", split="test"):
    return {
        r["language"]: r["value"]
        for r in results["records"]
        if r["task"] == task and r["metric"] == metric and r["phase"] == phase and r["split"] == split
    }


def test_every_phase_and_format_produced_results(smoke):
    out, results, _ = smoke
    tasks = {(r["task"], r["phase"]) for r in results["records"]}
    assert {
        ("xnli", "target"),
        ("xcopa", "target"),
        ("xquad", "target"),
        ("udpos", "target"),
        ("pawsx", "target"),
        ("panx", "target"),
        ("mlqa", "target"),
        ("tydiqa", "target"),
        ("tatoeba", "retrieval"),
        ("bucc2018", "retrieval"),
        ("lareqa", "retrieval"),
        ("mewslix", "retrieval"),
        ("xnli", "control"),
    } <= tasks
    langs = {r["language"] for r in results["records"]}
    assert len(langs) >= 4
    kinds = {v["kind"] for v in results["runs"].values()}
    assert kinds == {"pretrain", "intermediate", "chain", "target", "control", "baseline", "retrieval", "dual_encoder"}
    for path in ("report.md", "scores.png", "results.json", "config.json", "submission/MANIFEST.json"):
        assert (out / path).stat().st_size > 0, path
    report = (out / "report.md").read_text()
    assert "Smoke scale" in report and "## xnli" in report and "![zero-shot test scores](scores.png)" in report
    assert "English training: socialiqa → copa" in report


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def _random_span_f1(out, task: str, lang: str, draws: int = 5, seed: int = 0) -> float:
    """Mean F1 (the task's official scorer) of random 1-3 whitespace-token spans of each context."""
    import random

    from xlrepro.metrics.qa import qa_score
    from xlrepro.tasks import get_task

    (world,) = out.glob("world-*")  # the generated smoke world the run read its data from
    raw = get_task(task).read(world / task, "test", lang).raw
    rng = random.Random(f"{seed}-{task}-{lang}")
    f1 = []
    for _ in range(draws):
        preds = {}
        for article in raw:
            for para in article["paragraphs"]:
                words = para["context"].split()
                for qa in para["qas"]:
                    n = rng.randint(1, 3)
                    i = rng.randrange(max(1, len(words) - n + 1))
                    preds[qa["id"]] = " ".join(words[i : i + n])
        f1.append(qa_score(preds, raw, task, lang)["f1"])
    return sum(f1) / len(f1)


def test_zero_shot_transfer_is_above_chance(smoke):
    """Seed 1 on the build host gave (test, packed attention): XNLI en 56.0 / non-English mean 46.1;
    XCOPA 74.2; UD-POS token accuracy ≥ 96.8; XQuAD F1 34.8; Tatoeba 6.9 (chance 0.3); padded
    attention gave the same within noise. The bounds leave room for other CPUs and library builds."""
    _, results, _ = smoke
    xnli = _scores(results, "xnli", "accuracy")
    assert xnli["en"] > 50, xnli
    assert _mean(v for l, v in xnli.items() if l != "en") > CHANCE["xnli"] + 6, xnli
    xcopa = _scores(results, "xcopa", "accuracy")
    assert _mean(xcopa.values()) > CHANCE["xcopa"] + 5, xcopa
    pos = _scores(results, "udpos", "token_accuracy")
    assert min(v for l, v in pos.items() if l != "en") > 60, pos
    # XQuAD: beat a random 1-3 word span of the context on the same test files (seeded; about
    # 10 F1 for en/vi and up to ~30 for zh, whose answers share characters with any span)
    xquad = _scores(results, "xquad", "f1")
    base = {lang: _random_span_f1(smoke[0], "xquad", lang) for lang in xquad}
    assert _mean(v for l, v in xquad.items() if l != "en") > _mean(v for l, v in base.items() if l != "en") + 5, (
        xquad,
        base,
    )
    tatoeba = _scores(results, "tatoeba", "accuracy", phase="retrieval")
    assert _mean(tatoeba.values()) > 3, tatoeba  # chance: 1 in 300 = 0.33
    bucc = _scores(results, "bucc2018", "f1", phase="retrieval")
    assert set(bucc) == {"zh"}
    # XCOPA trains Social IQa, then COPA (XTREME-R's chain): 84.8 on the build host (COPA alone: 74.2)
    assert all(r["train_chain"] == ["socialiqa", "copa"] for r in results["records"] if r["task"] == "xcopa")
    # PAN-X: test labels withheld (see below), so the bound is on dev. Entity F1; an all-O tagger
    # scores 0. Build host: en 68.6, non-English mean 53.0 (tr 42.6, vi 69.9, zh 46.4)
    panx = _scores(results, "panx", "f1", split="dev")
    assert set(panx) == LANGS and _mean(v for l, v in panx.items() if l != "en") > 30, panx
    # PAWS-X runs end to end (dev scored, test exported) but stays near chance (50) at smoke scale
    # (51.0 en / 42.0 zh dev on the build host; 300 steps at batch 8 did no better): no score bound
    assert set(_scores(results, "pawsx", "accuracy", split="dev")) == {"en", "zh"}
    # MLQA and TyDiQA: "chance" for span F1 is a random 1-3 word span of the context, which on the
    # smoke languages scores F1 10.2 (MLQA en), 12.2 (vi), 31.2 (zh: MLQA segments zh per character,
    # and determiners are shared) and 10.5 (TyDiQA en). Build host: MLQA en 25.3, vi 19.2, zh 39.7;
    # TyDiQA en 27.9. Only English is clearly above that; the zero-shot MLQA scores are not asserted.
    mlqa = _scores(results, "mlqa", "f1")
    assert set(mlqa) == {"en", "vi", "zh"} and mlqa["en"] > 18, mlqa
    tydiqa = _scores(results, "tydiqa", "f1")
    assert set(tydiqa) == {"en"} and tydiqa["en"] > 18, tydiqa  # en: the world's only TyDiQA language


def test_withheld_test_labels_are_exported_not_scored(smoke):
    """PAWS-X and PAN-X test labels are withheld in the world, as XTREME's download withholds them:
    no test score is recorded, the predictions are exported, and scored against the labels the
    world kept aside (labels/<task>/test-xx.tsv) they line up with the examples (evaluate.py
    asserts the counts) and PAN-X is above chance (entity F1 0 for an all-O tagger), as on dev."""
    out, results, _ = smoke
    assert not _scores(results, "pawsx", "accuracy") and not _scores(results, "panx", "f1")
    world = next(out.glob("world-*"))
    manifest = json.loads((out / "submission" / "MANIFEST.json").read_text())
    scores = {}
    for task, metric in (("pawsx", "accuracy"), ("panx", "f1")):
        assert set(manifest[task]) == set(_scores(results, task, metric, split="dev"))
        for lang, entry in manifest[task].items():
            assert entry["scored"] is False
            scores[task, lang] = score_language(
                task,
                str(out / "submission" / task / f"test-{lang}.tsv"),
                str(world / "labels" / task / f"test-{lang}.tsv"),
                lang,
            )[metric]
    assert all(0 <= v <= 100 for v in scores.values()) and len(scores) == 2 + 4, scores
    assert _mean(v for (t, l), v in scores.items() if t == "panx" and l != "en") > 30, scores
    for task in ("xnli", "xcopa", "xquad", "mlqa", "tydiqa", "udpos", "tatoeba", "bucc2018"):
        assert task in manifest, task


def test_dual_encoder_retrieval_is_above_chance(smoke):
    """LAReQA (4 smoke languages x 180 questions, pool of 720 sentences, 4 relevant each): chance
    mAP@20 = 0.53 (simulated); seed 1 gave en 5.3, non-English 2.2 / 2.9 / 2.4. Mewsli-X (120
    candidate entities, 90 test mentions per language): chance MRR@20 = H_20/120 = 3.0; seed 1
    gave en 17.3, tr 9.3. Every number carries its protocol, the domain shift included."""
    _, results, _ = smoke
    lareqa = _scores(results, "lareqa", "map@20", phase="retrieval")
    assert set(lareqa) == {"en", "tr", "vi", "zh"}
    assert lareqa["en"] > 2.5 and _mean(v for l, v in lareqa.items() if l != "en") > 1.5, lareqa
    mewslix = _scores(results, "mewslix", "map@20", phase="retrieval")
    assert set(mewslix) == {"en", "tr"} and _mean(mewslix.values()) > 7, mewslix
    for r in results["records"]:
        if r["task"] in ("lareqa", "mewslix"):
            p = r["protocol"]
            assert p["similarity"] == "dot" and p["k"] == 20 and p["search"].startswith("xlrepro.ops.knn/")
            assert p["train_domain"] and p["eval_domain"] and p["encoder_upstream"]["kind"] == "dual_encoder"
        if r["task"] == "tatoeba":
            assert r["protocol"]["encoder_source"] == "intermediate" and r["protocol"]["layer"] == 1


def test_shuffled_labels_stay_at_chance(smoke):
    _, results, _ = smoke
    control = _scores(results, "xnli", "accuracy", phase="control")
    assert len(control) == 4
    for lang, v in control.items():
        assert abs(v - CHANCE["xnli"]) < 9, (lang, v)


def test_the_report_shows_intermediate_minus_the_no_intermediate_baseline(smoke):
    """XNLI fine-tuned from the pre-trained encoder as well (the control task's baseline run): the report
    gives the difference per resource group with a paired-bootstrap CI, and chance (1/3) beside it."""
    out, results, _ = smoke
    baseline = _scores(results, "xnli", "accuracy", phase="baseline")
    assert set(baseline) == LANGS
    md = (out / "report.md").read_text()
    sec = md.split("## Intermediate training minus the no-intermediate baseline")[1].split("\n## ")[0]
    assert "| xnli | source (en) | 300 |" in sec and "| xnli | high (tr vi zh) | 900 |" in sec
    assert sec.count("| 33.3 |") == 2 and "no chance line for F1, QA and retrieval" in sec


def test_results_carry_provenance_and_split(smoke):
    _, results, _ = smoke
    assert results["config"]["name"] == "smoke" and results["config"]["seed"] == 1
    prov = results["provenance"]
    for key in ("git_commit", "versions", "cpu", "extension", "seed", "determinism"):
        assert key in prov
    assert prov["extension"]["extension_loaded"] is True
    for r in results["records"]:
        assert r["split"] in ("dev", "test") and r["mode"] in ("official", "corrected") and r["n"] > 0
        assert len(r["data_sha256"]) == 64


def test_a_second_run_skips_every_finished_run(smoke):
    out, results, first = smoke
    t0 = time.time()
    again = run_experiment(load_config("smoke"), out)
    assert time.time() - t0 < max(30.0, first / 5)
    strip = lambda rs: sorted(json.dumps({k: v for k, v in r.items()}, sort_keys=True) for r in rs)
    assert strip(again["records"]) == strip(results["records"])
