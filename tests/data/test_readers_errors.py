"""Malformed values the readers used to accept or crash on: each is a ``DataFormatError`` naming
the file, the line (JSON lines, text files) or JSON path, and the field."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from conftest import assert_names  # noqa: E402

from xlrepro.data.all_readers import get_reader
from xlrepro.errors import DataFormatError
from xlrepro.tasks import get_task


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def _raises(fn, path, line=None, field=None, match=None):
    with pytest.raises(DataFormatError, match=match) as e:
        fn()
    assert_names(e.value, path, line, field)
    return e.value


# =========================================================================== SQuAD-style JSON

CTX = "The cat sat on the mat. The cat sat."


def _squad(**qa_over):
    qa = {"id": "q1", "question": "Who sat?", "answers": [{"text": "cat", "answer_start": 4}]}
    qa.update(qa_over)
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": CTX, "qas": [qa]}]}]}


def _xquad(tmp_path, obj) -> tuple[Path, callable]:
    p = _write(tmp_path / "xquad.de.json", json.dumps(obj))
    return p, lambda: get_task("xquad").read(tmp_path, "test", "de")


def test_squad_reads_the_clean_file(tmp_path):
    _, read = _xquad(tmp_path, _squad())
    ex = read().examples
    assert [(e.guid, e.answers[0].start) for e in ex] == [("q1", 4)]


@pytest.mark.parametrize("value", ["4", None, 4.0, True, -32, 999])
def test_squad_answer_start_must_be_an_offset_in_the_context(tmp_path, value):
    # "4" / 4.0 / True used to be converted by int(); -32 aliased the same "cat" from the end
    # (CTX[-32:-29] == "cat"); 999 is past the context
    assert CTX[-32:-29] == "cat"
    p, read = _xquad(tmp_path, _squad(answers=[{"text": "cat", "answer_start": value}]))
    _raises(read, p, field="data[0].paragraphs[0].qas[0].answers[0].answer_start")


def test_squad_types_of_context_article_question_and_is_impossible(tmp_path):
    obj = _squad()
    obj["data"][0]["paragraphs"][0]["context"] = 12345
    p, read = _xquad(tmp_path, obj)
    _raises(read, p, field="data[0].paragraphs[0].context")
    p, read = _xquad(tmp_path, {"data": ["not an article"]})
    _raises(read, p, field="data[0]", match="expected an object")
    p, read = _xquad(tmp_path, _squad(question=["Who?"]))
    _raises(read, p, field="data[0].paragraphs[0].qas[0].question")
    p, read = _xquad(tmp_path, _squad(is_impossible="false"))  # a non-empty string was read as True
    _raises(read, p, field="data[0].paragraphs[0].qas[0].is_impossible")
    p, read = _xquad(tmp_path, _squad(answers={"text": "cat"}))
    _raises(read, p, field="data[0].paragraphs[0].qas[0].answers")


def test_squad_duplicate_question_ids_in_evaluation_files(tmp_path):
    obj = _squad()
    para = obj["data"][0]["paragraphs"][0]
    para["qas"].append(copy.deepcopy(para["qas"][0]))
    p, read = _xquad(tmp_path, obj)
    e = _raises(read, p, field="data[0].paragraphs[0].qas[1].id", match="duplicate question id 'q1'")
    assert "data[0].paragraphs[0].qas[0]" in str(e)
    # MLQA and TyDiQA evaluation files too
    mlqa = _write(tmp_path / "mlqa" / "MLQA_V1" / "test" / "test-context-de-question-de.json", json.dumps(obj))
    _raises(lambda: get_task("mlqa").read(tmp_path / "mlqa", "test", "de"), mlqa, match="duplicate")
    tydi_dev = _write(tmp_path / "tydi" / "tydiqa-goldp-v1.1-dev" / "tydiqa.goldp.sw.dev.json", json.dumps(obj))
    _raises(lambda: get_task("tydiqa").read(tmp_path / "tydi", "test", "sw", "xtreme"), tydi_dev, match="duplicate")


def test_tydiqa_train_allows_repeated_ids(tmp_path):
    # XTREME's processed train files keep only the last id component, which repeats
    obj = _squad()
    para = obj["data"][0]["paragraphs"][0]
    para["qas"].append({**copy.deepcopy(para["qas"][0]), "question": "What sat?"})
    _write(tmp_path / "tydiqa-goldp-v1.1-train" / "tydiqa.goldp.en.train.json", json.dumps(obj))
    r = get_task("tydiqa").read(tmp_path, "train", "en", "xtreme")
    assert len(r) == 2 and len({e.guid for e in r.examples}) == 2


# =========================================================================== LAReQA / XQuAD-R


def _lareqa(qa):
    ctx = "A b. C d."
    return {
        "data": [
            {
                "paragraphs": [
                    {"context": ctx, "sentences": ["A b.", "C d."], "sentence_breaks": [[0, 4], [5, 9]], "qas": qa}
                ]
            }
        ]
    }


def test_lareqa_qa_must_be_an_object_with_unique_id(tmp_path):
    p = _write(tmp_path / "xquad-r" / "de.json", json.dumps(_lareqa(["what?"])))
    read = lambda: get_task("lareqa").read(tmp_path, "test", "de")  # noqa: E731
    _raises(read, p, field="data[0].paragraphs[0].qas[0]", match="expected an object")
    qa = {"id": "x", "question": "q?", "answers": [{"text": "C", "answer_start": 5}]}
    _write(p, json.dumps(_lareqa([qa])))
    assert read().examples[0].gold == [("x", "de:0:0:1")]
    _write(p, json.dumps(_lareqa([qa, qa])))
    _raises(read, p, field="data[0].paragraphs[0].qas[1].id", match="duplicate")
    _write(p, json.dumps(_lareqa([{**qa, "answers": [{"text": "C", "answer_start": "5"}]}])))
    _raises(read, p, field="data[0].paragraphs[0].qas[0].answers[0].answer_start")


# =========================================================================== Mewsli-X


def _mention_record(text="Hi Paris now.", lang="en", eid="e1"):
    md5 = hashlib.md5(text.encode("utf-8")).hexdigest()
    return {
        "context": {
            "document_id": f"{lang}-1",
            "language": lang,
            "text": text,
            "sentence_spans": [{"start": 0, "end": len(text)}],
        },
        "mentions": [
            {
                "example_id": eid,
                "mention_span": {"start": 3, "end": 8, "text": "Paris"},
                "entity_id": "Q90",
                "metadata": {"text_md5": md5},
            }
        ],
    }


def _mewslix(tmp_path, *records):
    p = _write(tmp_path / "wikinews_mentions-dev.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    return p, lambda: get_task("mewslix").read(tmp_path, "dev", "en")


def test_mewslix_offsets_ids_entities_and_language_codes(tmp_path):
    p, read = _mewslix(tmp_path, _mention_record())
    assert [(m.guid, m.entity_id) for m in read().examples] == [("e1", "Q90")]
    rec = _mention_record()
    rec["mentions"][0]["mention_span"]["start"] = "3"
    p, read = _mewslix(tmp_path, rec)
    _raises(read, p, 1, "mentions[0].mention_span.start")
    p, read = _mewslix(tmp_path, _mention_record(), _mention_record())
    _raises(read, p, 2, "mentions[0].example_id", match="duplicate example_id 'e1'")
    rec = _mention_record()
    del rec["mentions"][0]["entity_id"]
    p, read = _mewslix(tmp_path, rec)
    _raises(read, p, 1, "mentions[0].entity_id")
    p, read = _mewslix(tmp_path, _mention_record(), _mention_record(lang="EN", eid="e2"))  # was dropped uncounted
    _raises(read, p, 2, "context.language", match="'EN'")
    rec = _mention_record()
    rec["context"]["sentence_spans"] = [{"start": True, "end": 5}]
    p, read = _mewslix(tmp_path, rec)
    _raises(read, p, 1, "context.sentence_spans[0].start")


# =========================================================================== COPA / XCOPA, HellaSwag

COPA = {"premise": "P.", "choice1": "A.", "choice2": "B.", "question": "cause", "label": 0, "idx": 0}


def _copa(tmp_path, *records):
    p = _write(tmp_path / "data" / "et" / "val.et.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    return p, lambda: get_task("xcopa").read(tmp_path, "dev", "et")


@pytest.mark.parametrize("label", [True, 1.0, "1", 2])
def test_copa_label_must_be_the_integer_0_or_1(tmp_path, label):
    p, read = _copa(tmp_path, COPA, {**COPA, "label": label})
    _raises(read, p, 2, "label")


def test_one_unlabelled_record_among_labelled_ones(tmp_path):
    rest = {k: v for k, v in COPA.items() if k != "label"}
    p, read = _copa(tmp_path, COPA, rest, COPA)
    _raises(read, p, 2, "label", match="line 1 has one")
    p, read = _copa(tmp_path, rest, rest)
    assert [e.label for e in read().examples] == [None, None]  # consistently unlabelled: read, judged by the caller
    hs = {"ind": 1, "ctx": "c", "endings": ["a", "b", "c", "d"], "label": 3}
    p = _write(
        tmp_path / "hellaswag_val.jsonl",
        json.dumps(hs)
        + "\n"
        + json.dumps({**hs, "label": None})
        + "\n"
        + json.dumps({k: v for k, v in hs.items() if k != "label"})
        + "\n",
    )
    read = lambda: get_reader("hellaswag_jsonl")({"file": p})  # noqa: E731
    _raises(read, p, 2, "label")  # null is not a label
    _write(p, json.dumps(hs) + "\n" + json.dumps({k: v for k, v in hs.items() if k != "label"}) + "\n")
    _raises(read, p, 2, "label")


# =========================================================================== CoNLL-U

HEAD = "# sent_id = 1\n"


def _tok(i, form, upos="NOUN"):
    return f"{i}\t{form}\t{form.lower()}\t{upos}\t_\t_\t0\troot\t_\t_\n"


def _conllu(tmp_path, body, lang="mr"):
    ud = {"mr": "Marathi-UFAL"}[lang]
    p = _write(tmp_path / f"UD_{ud}" / f"{lang}_ufal-ud-dev.conllu", body)
    return p, lambda: get_task("udpos").read(tmp_path, "dev", lang, layout="original")


def test_conllu_reads_a_multiword_token(tmp_path):
    body = (
        HEAD + "1-2\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n" + _tok(1, "de", "ADP") + _tok(2, "le", "DET") + _tok(3, "x") + "\n"
    )
    _, read = _conllu(tmp_path, body)
    ex = read().examples
    assert ex[0].words == ["du", "x"] and ex[0].tags == ["ADP", "NOUN"]


def test_conllu_unknown_upos_is_an_error(tmp_path):
    p, read = _conllu(tmp_path, HEAD + _tok(1, "a") + _tok(2, "b", "NOUNN") + "\n")
    _raises(read, p, 3, "UPOS", match="NOUNN")


def test_conllu_multiword_range_without_its_words(tmp_path):
    p, read = _conllu(tmp_path, HEAD + _tok(1, "a") + "2-3\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n")  # at end of file
    _raises(read, p, 3, "ID", match="2-3")
    p, read = _conllu(
        tmp_path,
        HEAD + _tok(1, "a") + "2-3\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n" + _tok(2, "b") + "\n" + HEAD + _tok(1, "c") + "\n",
    )
    _raises(read, p, 3, "ID")


def test_conllu_duplicate_or_missing_word_ids(tmp_path):
    p, read = _conllu(tmp_path, HEAD + _tok(1, "a") + _tok(1, "b") + "\n")
    _raises(read, p, 3, "ID", match="expected 2")
    p, read = _conllu(tmp_path, HEAD + _tok(1, "a") + _tok(3, "b") + "\n")
    _raises(read, p, 3, "ID", match="expected 2")


# =========================================================================== line ends, tabs


def test_lone_cr_files_are_an_error_not_zero_examples(tmp_path):
    p, read = _conllu(tmp_path, (HEAD + _tok(1, "a") + _tok(2, "b") + "\n").replace("\n", "\r"))
    _raises(read, p, 1, match="carriage return")
    glue = _write(tmp_path / "dev_matched.tsv", "pairID\tsentence1\tsentence2\tgold_label\r1\ta\tb\tneutral\r")
    _raises(lambda: get_reader("glue_mnli_tsv")({"file": glue}), glue, 1, match="carriage return")
    # CRLF still reads
    _write(glue, "pairID\tsentence1\tsentence2\tgold_label\r\n1\ta\tb\tneutral\r\n")
    assert get_reader("glue_mnli_tsv")({"file": glue}).examples[0].label == "neutral"


def test_tag_file_with_spaces_for_tabs(tmp_path):
    p = _write(tmp_path / "dev-sw.tsv", "Dar B-LOC\nes I-LOC\n\nNi O\n")
    _raises(lambda: get_task("panx").read(tmp_path, "dev", "sw", "xtreme"), p, 1, "tag", match="spaces")
    _write(p, "Dar\nes\n\nNi\n")  # words only (a withheld test file) still reads
    assert get_task("panx").read(tmp_path, "dev", "sw", "xtreme").examples[0].tags is None
