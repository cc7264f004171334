"""The XTREME task families added to the smoke world (PAWS-X, PAN-X, MLQA, TyDiQA-GoldP, Social IQa),
XCOPA's training chain, and the leaderboard export, on a miniature world (CPU, seconds)."""

from __future__ import annotations

import json

import pytest
from mini import MINI as BASE

from xlrepro.config import load_config
from xlrepro.metrics.evaluate import score_language
from xlrepro.phases.orchestrator import run_experiment
from xlrepro.smoke.world import generate
from xlrepro.tasks import get_task

LANGS = ["en", "tr", "vi", "zh"]
MINI = BASE + [
    "retrieval.tasks=[tatoeba]",
    "target.per_task={}",
    "target.train.doc_stride=32",
    "target.train.max_query_length=24",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("w") / "world"
    generate(root, LANGS, seed=3, n_train=120, n_dev=30, n_test=30, n_corpus=300)
    return root


def test_world_tasks_are_read_by_their_registry_readers(world):
    """Sizes: pawsx/panx train max(40, 120//2)=60, dev max(20, 30//2)=20, test max(20, 30//3)=20;
    mlqa 9 questions per split (3 paragraphs x 3); tydiqa English train max(30, 120//5)=30 and test 9;
    socialiqa train max(30, 120//4)=30, dev 20."""

    def read(task, split, lang):
        return get_task(task).read(world / task, split, lang)

    assert len(read("pawsx", "train", "en").examples) == 60
    for lang in ("en", "zh"):  # the world's PAWS-X languages
        assert len(read("pawsx", "dev", lang).examples) == 20
        test = read("pawsx", "test", lang).examples
        assert len(test) == 20 and all(e.label is None for e in test)  # withheld, as XTREME's
        assert len((world / "labels" / "pawsx" / f"test-{lang}.tsv").read_text().split()) == 20
    assert not (world / "pawsx" / "dev-tr.tsv").exists()  # PAWS-X has no Turkish
    train = read("panx", "train", "en").examples
    assert len(train) == 60 and {t[2:] for e in train for t in e.tags if t != "O"} == {"PER", "ORG", "LOC"}
    for lang in LANGS:
        assert len(read("panx", "dev", lang).examples) == 20
        test = read("panx", "test", lang).examples
        assert len(test) == 20 and all(e.tags is None for e in test)
        labels = (world / "labels" / "panx" / f"test-{lang}.tsv").read_text().split("\n\n")
        assert [len(s.split()) for s in labels if s.strip()] == [len(e.words) for e in test]
    for lang in ("en", "vi", "zh"):
        for split in ("dev", "test"):
            assert len(read("mlqa", split, lang).examples) == 9
    tydi = read("tydiqa", "train", "en")
    # the official file mixes en with ar, fi, sw (a quarter as many each): the filter keeps English only
    assert len(tydi.examples) == 30 and tydi.skipped == {"TyDi QA id prefix is not 'english-'": 3 * 6}
    assert len(read("tydiqa", "test", "en").examples) == 9
    assert len(read("socialiqa", "train", "en").examples) == 30
    siqa = read("socialiqa", "dev", "en").examples
    assert len(siqa) == 20 and {len(e.choices) for e in siqa} == {3}


def test_world_is_deterministic(world, tmp_path):
    again = tmp_path / "again"
    generate(again, LANGS, seed=3, n_train=120, n_dev=30, n_test=30, n_corpus=300)
    for f in world.rglob("*"):
        if f.is_file():
            assert (again / f.relative_to(world)).read_bytes() == f.read_bytes(), f


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("xtasks")
    res = run_experiment(load_config("smoke", MINI + ["target.tasks=[xcopa, pawsx, panx, tydiqa]"]), out)
    return out, res


def _runs(res, kind):
    return {v["task"]: v for v in res["runs"].values() if v["kind"] == kind}


def _log(run_dir):
    return [json.loads(l) for l in open(f"{run_dir}/log.jsonl")]


@pytest.mark.slow
def test_xcopa_trains_social_iqa_then_copa_on_one_model(mini):
    out, res = mini
    chain = _runs(res, "chain")
    assert set(chain) == {"socialiqa"} and chain["socialiqa"]["chain_of"] == "xcopa"
    siqa_spec = json.loads(open(f"{chain['socialiqa']['dir']}/spec.json").read())
    inter = next(h for h, v in res["runs"].items() if v["kind"] == "intermediate")
    assert siqa_spec["upstream"] == {"kind": "intermediate", "run": inter}
    target = _runs(res, "target")["xcopa"]
    spec = json.loads(open(f"{target['dir']}/spec.json").read())
    siqa_hash = next(h for h, v in res["runs"].items() if v["kind"] == "chain")
    assert spec["upstream"] == {"kind": "chain", "task": "socialiqa", "run": siqa_hash}
    data = {e["task"]: e for r in (chain["socialiqa"], target) for e in _log(r["dir"]) if e["event"] == "data"}
    assert data["socialiqa"]["head"] == "fresh" and data["socialiqa"]["train_source"] == "socialiqa"
    assert (
        data["xcopa"]["head"] == "continued from the previous chain stage" and data["xcopa"]["train_source"] == "copa"
    )
    recs = [r for r in res["records"] if r["task"] == "xcopa"]
    assert recs and all(r["train_chain"] == ["socialiqa", "copa"] for r in recs)
    assert {r["language"] for r in recs} == {"tr", "vi", "zh"}
    assert all(
        r["train_chain"] == [get_task(r["task"]).training_chain()[-1]]
        for r in res["records"]
        if r["phase"] == "target" and r["task"] != "xcopa"
    )


@pytest.mark.slow
def test_unlabelled_splits_are_exported_never_scored(mini):
    out, res = mini
    world = next(out.glob("world-*"))
    recs = {(r["task"], r["split"]) for r in res["records"]}
    assert ("pawsx", "dev") in recs and ("panx", "dev") in recs and ("tydiqa", "test") in recs
    assert ("pawsx", "test") not in recs and ("panx", "test") not in recs  # XTREME withholds these labels
    manifest = json.loads((out / "submission" / "MANIFEST.json").read_text())
    assert manifest["pawsx"]["zh"]["scored"] is False and manifest["panx"]["tr"]["scored"] is False
    assert manifest["tydiqa"]["en"]["scored"] is True and manifest["xcopa"]["vi"]["scored"] is True
    assert set(manifest["tatoeba"]) == {"tr", "vi", "zh"}
    for task, lang in (("pawsx", "zh"), ("panx", "tr"), ("panx", "zh")):
        log = _log(_runs(res, "target")[task]["dir"])
        assert {"event": "unlabelled", "split": "test", "language": lang} in [
            {k: e.get(k) for k in ("event", "split", "language")} for e in log
        ]
        # the exported predictions line up with the withheld labels the world kept aside
        scores = score_language(
            task,
            str(out / "submission" / task / f"test-{lang}.tsv"),
            str(world / "labels" / task / f"test-{lang}.tsv"),
            lang,
        )
        assert 0.0 <= scores["accuracy" if task == "pawsx" else "f1"] <= 100.0
    # a labelled split's export scores exactly as the pipeline scored it
    rec = next(r["value"] for r in res["records"] if r["task"] == "tydiqa" and r["metric"] == "f1")
    tydi = get_task("tydiqa").read(world / "tydiqa", "test", "en")
    from xlrepro.data.types import Format
    from xlrepro.submission import write_labels

    labels = write_labels(out / "labels", "tydiqa", "test", "en", Format.SPAN_QA, tydi.examples, tydi.raw)
    again = score_language("tydiqa", str(out / "submission" / "tydiqa" / "test-en.json"), str(labels), "en")
    assert again["f1"] == pytest.approx(rec)
