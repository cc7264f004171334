"""Readers of the English intermediate tasks on the real samples in ``shared/data-samples``.

Expected counts were taken independently of xlrepro (``jq -s length``, ``grep -c .``, Python's
``csv.DictReader``, ``jq '[..qas[]]|length'``). SNLI, SST-2 and CCGbank have no sample (SST-2 and
SNLI were not sampled; CCGbank cannot be redistributed): their fixtures are generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, assert_names, needs_samples  # noqa: E402  (shared helpers)

from xlrepro.data.readers_intermediate import CCG_SECTIONS
from xlrepro.errors import DataFormatError
from xlrepro.tasks import all_tasks, get_task


def _write(path: Path, text: str, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode("utf-8"))
    return path


def test_intermediate_entries_load():
    tasks = all_tasks()
    for name in (
        "anli",
        "anli_plus",
        "snli",
        "qqp",
        "sst2",
        "squad_v2",
        "commonsenseqa",
        "cosmosqa",
        "socialiqa",
        "ccg",
    ):
        spec = tasks[name]
        assert spec.benchmarks == ("intermediate",) and spec.languages() == ["en"]
    assert tasks["anli_plus"].components == ("anli", "mnli", "snli")
    assert tasks["anli_plus"].layouts == ()


# =========================================================================== ANLI / ANLI+ / SNLI


@needs_samples
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_anli_rounds(split):
    res = get_task("anli").read(SAMPLES / "anli" / "hf_dummy_data" / "anli_v0.1", split, "en")
    assert len(res) == 9  # 3 lines in each of R1, R2, R3
    assert len(res.files) == 3 and [Path(f).parent.name for f in res.files] == ["R1", "R2", "R3"]
    assert {e.label for e in res.examples} <= {"entailment", "neutral", "contradiction"}


@needs_samples
def test_anli_content():
    ex = get_task("anli").read(SAMPLES / "anli" / "hf_dummy_data" / "anli_v0.1", "train", "en").examples[0]
    assert ex.guid == "0fd0abfb-659e-4453-b196-c3a64d2d8267"
    assert ex.label == "entailment"  # 'e' in the file
    assert ex.text_b == "The trolleybus system has over 2 urban routes"


SNLI = [
    {
        "annotator_labels": ["neutral"],
        "captionID": "1.jpg#0",
        "gold_label": "neutral",
        "pairID": "1.jpg#0r1n",
        "sentence1": "A dog runs on grass.",
        "sentence2": "The dog is chasing a ball.",
    },
    {
        "annotator_labels": ["neutral", "contradiction"],
        "captionID": "1.jpg#0",
        "gold_label": "-",
        "pairID": "1.jpg#0r1c",
        "sentence1": "A dog runs on grass.",
        "sentence2": "The dog sleeps.",
    },
    {
        "annotator_labels": ["entailment"],
        "captionID": "1.jpg#0",
        "gold_label": "entailment",
        "pairID": "1.jpg#0r1e",
        "sentence1": "A dog runs on grass.",
        "sentence2": "An animal is outside.",
    },
]


def test_snli_generated(tmp_path):
    _write(tmp_path / "snli_1.0_train.jsonl", "".join(json.dumps(r) + "\n" for r in SNLI))
    res = get_task("snli").read(tmp_path, "train", "en")
    assert [e.guid for e in res.examples] == ["1.jpg#0r1n", "1.jpg#0r1e"]
    assert res.skipped == {"gold_label '-' (no majority)": 1}


@needs_samples
def test_anli_plus_is_the_union_of_its_components(tmp_path):
    snli = tmp_path / "snli_root"
    _write(snli / "snli_1.0_train.jsonl", "".join(json.dumps(r) + "\n" for r in SNLI))
    roots = {
        "anli": SAMPLES / "anli" / "hf_dummy_data" / "anli_v0.1",
        "mnli": SAMPLES / "mnli" / "hf_dummy_data" / "glue" / "MNLI",
        "snli": snli,
    }
    res = get_task("anli_plus").read(roots, "train", "en")
    assert len(res) == 9 + 3 + 2
    assert [e.guid.split("/")[0] for e in res.examples] == ["anli"] * 9 + ["mnli"] * 3 + ["snli"] * 2
    assert res.skipped == {"snli: gold_label '-' (no majority)": 1}
    assert len(res.files) == 3 + 1 + 1
    # the folder form: one sub-folder per component
    (tmp_path / "plus").mkdir()
    for name, root in roots.items():
        (tmp_path / "plus" / name).symlink_to(root, target_is_directory=True)
    again = get_task("anli_plus").read(tmp_path / "plus", "train", "en")
    assert [e.guid for e in again.examples] == [e.guid for e in res.examples]
    with pytest.raises(KeyError, match="no split 'dev'"):
        get_task("anli_plus").read(roots, "dev", "en")  # early stopping uses dev_source (anli)
    assert get_task("anli_plus").dev_source == "anli"


def test_anli_malformed(tmp_path):
    row = {
        "uid": "u1",
        "context": "P .",
        "hypothesis": "H .",
        "label": "n",
        "model_label": "e",
        "emturk": False,
        "genre": "wiki",
        "reason": "",
        "tag": "r1_dev",
    }
    ok = json.dumps(row) + "\n" + json.dumps({**row, "uid": "u2", "label": "c"}) + "\n"
    p = _write(tmp_path / "R1" / "dev.jsonl", ok)
    lf = get_task("anli").read(tmp_path, "dev", "en").examples
    assert [e.label for e in lf] == ["neutral", "contradiction"]
    _write(p, ok, crlf=True)
    assert get_task("anli").read(tmp_path, "dev", "en").examples == lf
    for text, line, field, match in [
        (ok[:-20], 2, None, "invalid JSON"),
        (ok.replace('"hypothesis": "H .", ', "", 1), 1, "hypothesis", "missing"),
        (ok.replace('"label": "c"', '"label": "x"'), 2, "label", "unknown label 'x'"),
    ]:
        _write(p, text)
        with pytest.raises(DataFormatError, match=match) as e:
            get_task("anli").read(tmp_path, "dev", "en")
        assert_names(e.value, p, line, field)


# =========================================================================== QQP, SST-2


@needs_samples
def test_qqp():
    root = SAMPLES / "qqp" / "hf_dummy_data" / "glue" / "QQP"
    sizes = {s: len(get_task("qqp").read(root, s, "en")) for s in ("train", "dev", "test")}
    assert sizes == {"train": 3, "dev": 2, "test": 1}
    ex = get_task("qqp").read(root, "train", "en").examples[0]
    assert (ex.guid, ex.label) == ("133273", "0")
    assert ex.text_a == "How is the life of a math student? Could you describe your own experiences?"
    assert all(e.label is None for e in get_task("qqp").read(root, "test", "en").examples)


SST2 = {
    "train.tsv": "sentence\tlabel\na gripping , well-acted film \t1\nthe plot goes nowhere \t0\nfun \t1\n",
    "dev.tsv": "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n",
    "test.tsv": "index\tsentence\n0\tuneasy mishmash of styles and genres .\n1\ta warm , funny film .\n",
}


@pytest.mark.parametrize("crlf", [False, True])
def test_sst2_generated(tmp_path, crlf):
    for name, text in SST2.items():
        _write(tmp_path / name, text, crlf)
    spec = get_task("sst2")
    train, dev, test = (spec.read(tmp_path, s, "en") for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (3, 1, 2)
    assert (train.examples[0].text_a, train.examples[0].text_b, train.examples[0].label) == (
        "a gripping , well-acted film ",
        None,
        "1",
    )
    assert test.examples[1].label is None and test.examples[1].text_a == "a warm , funny film ."


def test_header_tsv_malformed(tmp_path):
    p = _write(tmp_path / "train.tsv", "sentence\tlabel\nok \t1\nbad \t2\n")
    with pytest.raises(DataFormatError, match="unknown label '2'") as e:
        get_task("sst2").read(tmp_path, "train", "en")
    assert_names(e.value, p, 3, "label")
    _write(p, "text\tlabel\nok \t1\n")
    with pytest.raises(DataFormatError) as e:
        get_task("sst2").read(tmp_path, "train", "en")
    assert_names(e.value, p, 1, "sentence")
    _write(p, "sentence\tlabel\nok \t1\nno label\n")
    with pytest.raises(DataFormatError, match="expected 2 tab-separated columns") as e:
        get_task("sst2").read(tmp_path, "train", "en")
    assert_names(e.value, p, 3, "label")
    # QQP: GLUE's train.tsv has rows broken by an embedded newline; they are skipped and counted
    _write(
        tmp_path / "qqp" / "train.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tA?\tB?\t0\n4\t5\t6\tC\n\tD?\t1\n",
    )
    res = get_task("qqp").read(tmp_path / "qqp", "train", "en")
    assert len(res) == 1 and res.skipped == {"row with a wrong number of columns": 2}


# =========================================================================== SQuAD v2.0


@needs_samples
def test_squad_v2_dev():
    res = get_task("squad_v2").read(SAMPLES / "squad" / "dataset", "dev", "en")
    assert len(res) == 89
    impossible = [e for e in res.examples if e.is_impossible]
    assert len(impossible) == 51 and all(e.answers == [] for e in impossible)
    ex = res.examples[0]
    assert (ex.guid, ex.question, ex.title) == (
        "56ddde6b9a695914005b9628",
        "In what country is Normandy located?",
        "Normans",
    )
    assert (ex.answers[0].text, ex.answers[0].start) == ("France", 159)


def test_squad_v2_malformed(tmp_path):
    doc = {
        "version": "v2.0",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "qas": [
                            {"question": "Q?", "id": "a", "answers": [], "is_impossible": True},
                            {"question": "R?", "id": "b", "answers": []},
                        ],
                        "context": "C .",
                    }
                ],
            }
        ],
    }
    p = _write(tmp_path / "dev-v2.0.json", json.dumps(doc))
    with pytest.raises(DataFormatError, match="question b has no answers") as e:
        get_task("squad_v2").read(tmp_path, "dev", "en")
    assert_names(e.value, p, None, "data[0].paragraphs[0].qas[1].answers")
    _write(p, json.dumps(doc)[:-5])
    with pytest.raises(DataFormatError, match="invalid JSON") as e:
        get_task("squad_v2").read(tmp_path, "dev", "en")
    assert_names(e.value, p, 1)


# =========================================================================== CommonsenseQA


@needs_samples
def test_commonsenseqa():
    spec = get_task("commonsenseqa")
    dev = spec.read(SAMPLES / "commonsenseqa", "dev", "en")
    train = spec.read(SAMPLES / "commonsenseqa" / "hf_dummy_data", "train", "en")
    test = spec.read(SAMPLES / "commonsenseqa" / "hf_dummy_data", "test", "en")
    assert (len(dev), len(train), len(test)) == (200, 5, 2)
    assert [sum(e.label == k for e in dev.examples) for k in range(5)] == [34, 35, 36, 45, 50]  # SOURCE.md's A-E
    assert all(e.label is None for e in test.examples)
    ex = dev.examples[0]
    assert (ex.guid, ex.label, ex.context) == ("1afa02df02c908a558b4036e80242fac", 0, "")
    assert ex.question.startswith("A revolving door is convenient for two direction travel")
    assert ex.choices == ["bank", "library", "department store", "mall", "new york"]


def test_commonsenseqa_malformed(tmp_path):
    row = {
        "answerKey": "B",
        "id": "x1",
        "question": {
            "question_concept": "c",
            "choices": [{"label": L, "text": f"t{L}"} for L in "ABCDE"],
            "stem": "S?",
        },
    }
    ok = json.dumps(row) + "\n" + json.dumps({**row, "id": "x2"}) + "\n"
    p = _write(tmp_path / "dev_rand_split.jsonl", ok)
    lf = get_task("commonsenseqa").read(tmp_path, "dev", "en").examples
    assert [e.label for e in lf] == [1, 1]
    _write(p, ok, crlf=True)
    assert get_task("commonsenseqa").read(tmp_path, "dev", "en").examples == lf
    bad_stem = {**row, "question": {k: v for k, v in row["question"].items() if k != "stem"}}
    for text, line, field, match in [
        (ok[:-10], 2, None, "invalid JSON"),
        (json.dumps(row) + "\n" + json.dumps(bad_stem) + "\n", 2, "stem", "missing"),
        (json.dumps({**row, "answerKey": "F"}) + "\n", 1, "answerKey", "unknown label 'F'"),
    ]:
        _write(p, text)
        with pytest.raises(DataFormatError, match=match) as e:
            get_task("commonsenseqa").read(tmp_path, "dev", "en")
        assert_names(e.value, p, line, field)


# =========================================================================== Cosmos QA


@needs_samples
def test_cosmosqa():
    spec = get_task("cosmosqa")
    dev = spec.read(SAMPLES / "cosmosqa" / "data", "dev", "en")
    train = spec.read(SAMPLES / "cosmosqa" / "hf_dummy_data", "train", "en")
    test = spec.read(SAMPLES / "cosmosqa" / "hf_dummy_data", "test", "en")
    assert (len(dev), len(train), len(test)) == (300, 2, 2)
    assert [sum(e.label == k for e in dev.examples) for k in range(4)] == [79, 76, 67, 78]
    assert all(e.label is None for e in test.examples) and all(len(e.choices) == 4 for e in test.examples)
    ex = dev.examples[0]
    assert ex.guid.startswith("3BFF0DJK8XA7YNK4QYIGCOG1A95STE##") and ex.label == 1
    assert ex.question == "Why is this person asking about divorce ?"
    assert ex.choices[0] == "If he gets married in the church he wo nt have to get a divorce ."
    assert ex.context.startswith("Do i need to go for a legal divorce ?")
    assert train.examples[0].question == "In the future , will this person go to see other bands play ?"


@needs_samples
def test_cosmosqa_crlf_sample_equals_lf(tmp_path):
    raw = (SAMPLES / "cosmosqa" / "data" / "valid.csv").read_bytes()
    assert raw.count(b"\r\n") == 301
    (tmp_path / "valid.csv").write_bytes(raw.replace(b"\r\n", b"\n"))
    crlf = get_task("cosmosqa").read(SAMPLES / "cosmosqa" / "data", "dev", "en").examples
    assert get_task("cosmosqa").read(tmp_path, "dev", "en").examples == crlf


COSMOS_HEAD = "id,context,question,answer0,answer1,answer2,answer3,label\n"


def test_cosmosqa_malformed(tmp_path):
    ok = COSMOS_HEAD + 'a1,"Ctx , with comma ""quoted"" and\na newline",Q ?,w,x,y,z,2\na2,C,Q2 ?,w,x,y,z,0\n'
    p = _write(tmp_path / "valid.csv", ok)
    lf = get_task("cosmosqa").read(tmp_path, "dev", "en").examples
    assert lf[0].context == 'Ctx , with comma "quoted" and\na newline' and [e.label for e in lf] == [2, 0]
    _write(p, ok, crlf=True)
    crlf = get_task("cosmosqa").read(tmp_path, "dev", "en").examples
    assert crlf[1:] == lf[1:] and crlf[0].context == 'Ctx , with comma "quoted" and\r\na newline'  # quoted data kept
    for text, line, field, match in [
        (COSMOS_HEAD.replace("answer3,", ""), 1, "answer3", "header lacks"),
        (ok + "a3,C,Q3 ?,w,x,y\n", 5, "answer3", "expected 8 comma-separated fields"),
        (ok.replace("z,0", "z,4"), 4, "label", "unknown label '4'"),
        (ok + 'a3,"unterminated,Q ?,w,x,y,z,1\n', 5, None, "invalid CSV"),
    ]:
        _write(p, text)
        with pytest.raises(DataFormatError, match=match) as e:
            get_task("cosmosqa").read(tmp_path, "dev", "en")
        assert_names(e.value, p, line, field)
    t = _write(
        tmp_path / "test.jsonl",
        json.dumps({"id": "a", "context": "C", "question": "Q", "answer0": "w", "answer1": "x", "answer2": "y"}) + "\n",
    )
    with pytest.raises(DataFormatError) as e:
        get_task("cosmosqa").read(tmp_path, "test", "en")
    assert_names(e.value, t, 1, "answer3")


# =========================================================================== Social IQa


@needs_samples
def test_socialiqa_v14():
    root = SAMPLES / "socialiqa" / "socialIQa_v1.4"
    dev = get_task("socialiqa").read(root, "dev", "en")
    test = get_task("socialiqa").read(root, "test", "en")
    assert (len(dev), len(test)) == (200, 100)
    assert [sum(e.label == k for e in dev.examples) for k in range(3)] == [66, 70, 64]
    assert [sum(e.label == k for e in test.examples) for k in range(3)] == [36, 33, 31]
    ex = dev.examples[0]
    assert (ex.guid, ex.label) == ("socialIQa_v1.4_dev.jsonl:1", 2)
    assert ex.context == "Tracy didn't go home that evening and resisted Riley's attacks."
    assert ex.choices == ["make a new plan", "Go home and see Riley", "Find somewhere to go"]


@needs_samples
def test_socialiqa_allenai_labels_are_one_based():
    allen = get_task("socialiqa").read(SAMPLES / "socialiqa" / "hf_dummy_data" / "socialiqa-train-dev", "dev", "en")
    v14 = get_task("socialiqa").read(SAMPLES / "socialiqa" / "socialIQa_v1.4", "dev", "en")
    assert len(allen) == 2 and [e.label for e in allen.examples] == [2, 0]  # file: 3, 1
    for a, b in zip(allen.examples, v14.examples):
        assert (a.context, a.question, a.choices, a.label) == (b.context, b.question, b.choices, b.label)


def test_socialiqa_malformed(tmp_path):
    row = {"context": "C", "question": "Q?", "answerA": "a", "answerB": "b", "answerC": "c", "correct": "B"}
    ok = json.dumps(row) + "\n" + json.dumps({**row, "correct": "C"}) + "\n"
    p = _write(tmp_path / "socialIQa_v1.4_dev.jsonl", ok)
    lf = get_task("socialiqa").read(tmp_path, "dev", "en").examples
    _write(p, ok, crlf=True)
    assert get_task("socialiqa").read(tmp_path, "dev", "en").examples == lf and [e.label for e in lf] == [1, 2]
    for text, line, field, match in [
        (ok[:-8], 2, None, "invalid JSON"),
        (ok.replace(', "answerC": "c"', "", 1), 1, "answerC", "missing"),
        (ok.replace('"correct": "C"', '"correct": "D"'), 2, "correct", "unknown label 'D'"),
    ]:
        _write(p, text)
        with pytest.raises(DataFormatError, match=match) as e:
            get_task("socialiqa").read(tmp_path, "dev", "en")
        assert_names(e.value, p, line, field)
    allen = tmp_path / "allen"
    nolab = "".join(json.dumps({k: v for k, v in row.items() if k != "correct"}) + "\n" for _ in range(2))
    _write(allen / "dev.jsonl", nolab)
    lab = _write(allen / "dev-labels.lst", "2\n4\n")
    with pytest.raises(DataFormatError, match="unknown label '4'") as e:
        get_task("socialiqa").read(allen, "dev", "en")
    assert_names(e.value, lab, 2, "label")
    _write(lab, "2\n", crlf=True)
    with pytest.raises(DataFormatError, match="1 labels but") as e:
        get_task("socialiqa").read(allen, "dev", "en")
    assert_names(e.value, lab, None, "label")
    _write(lab, "2\n3\n", crlf=True)
    assert [e.label for e in get_task("socialiqa").read(allen, "dev", "en").examples] == [1, 2]


# =========================================================================== CCGbank (generated AUTO files)

# Invented derivations in the CCGbank AUTO format (the real corpus cannot be redistributed).
TREE_2 = (
    "(<T S[dcl] 0 2> (<T S[dcl] 1 2> (<L NP NNP NNP John NP>) (<T S[dcl]\\NP 0 2> "
    "(<L (S[dcl]\\NP)/NP VBZ VBZ likes (S[dcl]\\NP_1)/NP_2>) (<T NP 0 1> (<L N NN NN tea N>) ) ) ) "
    "(<L . . . . .>) )"
)
TREE_1 = "(<T S[dcl] 1 2> (<L NP PRP PRP It NP>) (<L S[dcl]\\NP VBZ VBZ rains S[dcl]\\NP_1>) )"


def _auto(root: Path, section: str, n: int, crlf: bool = False) -> Path:
    lines = []
    for k in range(1, n + 1):
        lines += [f"ID=wsj_{section}01.{k} PARSER=GOLD NUMPARSE=1", TREE_2 if k % 2 else TREE_1]
    return _write(root / "ccgbank" / "data" / "AUTO" / section / f"wsj_{section}01.auto", "\n".join(lines) + "\n", crlf)


@pytest.mark.parametrize("crlf", [False, True])
def test_ccg_generated_corpus(tmp_path, crlf):
    for sec in range(25):  # every WSJ section; 00 has 2 derivations, the others 1
        _auto(tmp_path, f"{sec:02d}", 2 if sec == 0 else 1, crlf)
    spec = get_task("ccg")
    train, dev, test = (spec.read(tmp_path, s, "en") for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (20, 2, 1)  # sections 02-21 / 00 / 23 (01, 22, 24 unused)
    assert [e.guid for e in dev.examples] == ["wsj_0001.1", "wsj_0001.2"]
    assert test.examples[0].guid == "wsj_2301.1" and len(train.files) == 20
    ex = dev.examples[0]
    assert ex.words == ["John", "likes", "tea", "."]
    assert ex.tags == ["NP", "(S[dcl]\\NP)/NP", "N", "."]
    assert dev.examples[1].words == ["It", "rains"] and dev.examples[1].tags == ["NP", "S[dcl]\\NP"]
    assert CCG_SECTIONS["train"] == tuple(f"{n:02d}" for n in range(2, 22))


def test_ccg_malformed(tmp_path):
    p = _auto(tmp_path, "00", 2)
    good = p.read_text(encoding="utf-8")
    cases = [
        (good.replace(" (<L . . . . .>) )", ""), 2, "ends inside an open node"),  # truncated derivation
        (good.replace("(<T NP 0 1>", "(<T NP 0 2>"), 2, "declares 2 children but has 1"),
        (good.replace("(<L N NN NN tea N>)", "(<L N NN tea N>)"), 2, "expected a leaf"),  # a missing field
        (good.rsplit("\n", 2)[0] + "\n", 3, "not followed by a derivation"),
    ]
    for text, line, match in cases:
        _write(p, text)
        with pytest.raises(DataFormatError, match=match) as e:
            get_task("ccg").read(tmp_path, "dev", "en")
        assert_names(e.value, p, line, "tree")
    with pytest.raises(DataFormatError, match="no wsj_\\*.auto files"):
        _write(p, good)
        get_task("ccg").read(tmp_path, "test", "en")  # section 23 missing from this partial copy


def test_composite_task_config_is_checked():
    from xlrepro.errors import ConfigError
    from xlrepro.tasks.registry import _parse

    base = {
        "name": "x",
        "version": 1,
        "format": "classification",
        "description": "d",
        "benchmarks": ["intermediate"],
        "language_column": {"fixed": ["en"]},
        "metric": "accuracy",
        "splits": {"train": {}},
    }
    assert _parse({**base, "components": ["anli"], "layouts": []}, "x.yaml").components == ("anli",)
    with pytest.raises(ConfigError, match="has no layouts"):
        _parse(
            {**base, "components": ["anli"], "layouts": [{"name": "a", "reader": "anli_jsonl", "files": {}}]}, "x.yaml"
        )
    with pytest.raises(ConfigError, match="at least one local layout"):
        _parse({**base, "layouts": []}, "x.yaml")
