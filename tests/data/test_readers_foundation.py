"""Readers of the foundation tasks on the real samples (exact counts, counted with wc/grep/jq)
and on malformed input (errors name file, line and field)."""

import pytest

from xlrepro.data.readers import read_conllu_upos, read_xtreme_tag_tsv
from xlrepro.errors import DataFormatError
from xlrepro.tasks import get_task

XNLI_LANGS = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()


@pytest.mark.parametrize("lang", XNLI_LANGS)
def test_xnli_xtreme_layout(samples, lang):
    t = get_task("xnli")
    dev = t.read(samples / "xnli" / "xtreme_processed", "dev", lang)
    test = t.read(samples / "xnli" / "xtreme_processed", "test", lang)
    assert len(dev) == 150 and len(test) == 60
    assert all(e.label in ("entailment", "neutral", "contradiction") for e in dev.examples)
    assert all(e.label is None for e in test.examples), "XTREME withholds XNLI test labels"
    assert not dev.examples[0].text_a.endswith("\r"), "CRLF is stripped"


def test_mnli_both_layouts(samples):
    t = get_task("mnli")
    glue = samples / "mnli" / "hf_dummy_data" / "glue" / "MNLI"
    orig = samples / "mnli" / "hf_dummy_data" / "multinli_1.0"
    assert len(t.read(glue, "train", "en")) == 3 and len(t.read(glue, "dev", "en")) == 2
    tr = t.read(orig, "train", "en")
    assert len(tr) == 5 and tr.examples[0].text_a.startswith("Conceptually cream skimming")
    assert tr.examples[0].label == "neutral" and t.read(orig, "dev", "en").skipped == {}


@pytest.mark.parametrize("lang", "et ht id it qu sw ta th tr vi zh".split())
def test_xcopa_original_layout(samples, lang):
    t = get_task("xcopa")
    assert len(t.read(samples / "xcopa", "dev", lang)) == 100
    test = t.read(samples / "xcopa", "test", lang)
    assert len(test) == 100 and {e.question for e in test.examples} <= {"cause", "effect"}


def test_copa_and_xcopa_xtreme_layout(samples):
    root = samples / "xcopa" / "xtreme_processed"
    tr = get_task("copa").read(root, "train", "en")
    assert len(tr) == 100 and tr.examples[0].context == "My body cast a shadow over the grass."
    assert tr.examples[0].choices == ["The sun was rising.", "The grass was cut."] and tr.examples[0].label == 0
    assert len(get_task("copa").read(root, "dev", "en")) == 100
    assert len(get_task("xcopa").read(root, "test", "qu")) == 20


def test_hellaswag(samples):
    t = get_task("hellaswag")
    root = samples / "hellaswag" / "hf_dummy_data"
    tr = t.read(root, "train", "en")
    assert len(tr) == 2 and tr.examples[0].label == 3 and len(tr.examples[0].choices) == 4
    assert [e.label for e in t.read(root, "test", "en").examples] == [None, None]


@pytest.mark.parametrize("lang", "ar de el en es hi ro ru th tr vi zh".split())
def test_xquad(samples, lang):
    r = get_task("xquad").read(samples / "xquad", "test", lang)
    assert len(r) == 105 and all(e.answers for e in r.examples)
    assert r.raw[0]["paragraphs"][0]["qas"][0]["id"] == r.examples[0].guid


def test_squad_dev(samples):
    r = get_task("squad").read(samples / "squad" / "dataset", "dev", "en")
    assert len(r) == 208 and len(r.examples[0].answers) >= 1


@pytest.mark.parametrize(
    "lang,split,n",
    [
        ("en", "dev", 100),
        ("en", "test", 100),
        ("eu", "dev", 100),
        ("mr", "train", 0),
        ("mr", "dev", 46),
        ("mr", "test", 47),
        ("ta", "dev", 60),
        ("tl", "test", 55),
        ("yo", "test", 100),
    ],
)
def test_udpos_conllu_layout(samples, lang, split, n):
    t = get_task("udpos")
    if split == "train":
        with pytest.raises(KeyError, match="no train split"):
            t.read(samples / "udpos", split, lang)
        return
    r = t.read(samples / "udpos", split, lang, layout="original")
    assert len(r) == n and all(len(e.words) == len(e.tags) for e in r.examples)


@pytest.mark.parametrize(
    "conllu,xtreme",
    [
        ("UD_English-EWT/en_ewt-ud-dev.conllu", "dev-en.tsv"),
        ("UD_Basque-BDT/eu_bdt-ud-dev.conllu", "dev-eu.tsv"),
        ("UD_Basque-BDT/eu_bdt-ud-test.conllu", "test-eu.tsv"),
        ("UD_Marathi-UFAL/mr_ufal-ud-train.conllu", "train-mr.tsv"),
        ("UD_Marathi-UFAL/mr_ufal-ud-dev.conllu", "dev-mr.tsv"),
        ("UD_Marathi-UFAL/mr_ufal-ud-test.conllu", "test-mr.tsv"),
    ],
)
def test_conllu_conversion_reproduces_xtremes_processed_files(samples, conllu, xtreme):
    """XTREME replaces multi-word tokens by the fused surface form with the first part's tag (xtreme
    ``utils_preprocess.py``, ``--replace_subtokens_with_fused_forms`` in ``scripts/download_data.sh``)."""
    ours = read_conllu_upos({"file": samples / "udpos" / conllu}).examples
    theirs = read_xtreme_tag_tsv({"file": samples / "udpos" / "xtreme_processed" / xtreme}).examples
    assert len(theirs) <= len(ours)
    for a, b in zip(ours, theirs):
        assert a.words == b.words
        if b.tags is not None:
            assert a.tags == b.tags
    plain = read_conllu_upos({"file": samples / "udpos" / conllu}, fused_forms=False).examples
    if "mr_ufal-ud-dev" in conllu:
        assert any(len(p.words) > len(a.words) for p, a in zip(plain, ours)), "Marathi has multi-word tokens"


@pytest.mark.parametrize(
    "lang,split,n",
    [
        ("en", "train", 50),
        ("en", "dev", 50),
        ("wo", "dev", 50),
        ("kk", "test", 50),
        ("yo", "test", 50),
        ("mr", "test", 47),
    ],
)
def test_udpos_xtreme_layout(samples, lang, split, n):
    r = get_task("udpos").read(samples / "udpos" / "xtreme_processed", split, lang, layout="xtreme")
    assert len(r) == n
    assert all((e.tags is None) == (split == "test") for e in r.examples)


@pytest.mark.parametrize(
    "lang,root",
    [
        ("zh", "data/tatoeba/v1"),
        ("de", "data/tatoeba/v1"),
        ("sw", "data/tatoeba/v1"),
        ("sw", "xtreme_processed"),
        ("jv", "xtreme_processed"),
    ],
)
def test_tatoeba_both_layouts(samples, lang, root):
    ex = get_task("tatoeba").read(samples / "tatoeba" / root, "test", lang).examples[0]
    assert len(ex.src_sentences) == len(ex.tgt_sentences) == 200 and ex.gold[7] == ("7", "7")


# ---------------------------------------------------------------------- malformed input


def test_malformed_tsv_names_file_line_and_field(tmp_path):
    t = get_task("xnli")
    (tmp_path / "dev-de.tsv").write_text("a\tb\tentailment\nc\td\tmaybe\n")
    with pytest.raises(DataFormatError, match=r"dev-de.tsv, line 2, field 'label': unknown label 'maybe'"):
        t.read(tmp_path, "dev", "de")
    (tmp_path / "dev-de.tsv").write_text("a\tb\tentailment\nc\td\n")
    with pytest.raises(DataFormatError, match=r"dev-de.tsv, line 2: expected 3 tab-separated columns"):
        t.read(tmp_path, "dev", "de")


def test_crlf_and_lf_read_the_same(tmp_path):
    t = get_task("xnli")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "dev-de.tsv").write_bytes(b"x y\tz\tneutral\r\np\tq\tentailment\r\n")
    (tmp_path / "b" / "dev-de.tsv").write_bytes(b"x y\tz\tneutral\np\tq\tentailment\n")
    a, b = t.read(tmp_path / "a", "dev", "de").examples, t.read(tmp_path / "b", "dev", "de").examples
    assert [(e.text_a, e.text_b, e.label) for e in a] == [(e.text_a, e.text_b, e.label) for e in b]


def test_truncated_and_incomplete_json(tmp_path):
    t = get_task("copa")
    (tmp_path / "train-en.jsonl").write_text(
        '{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0}\n'
        '{"premise": "p", "choice1": "a", "choi\n'
    )
    with pytest.raises(DataFormatError, match=r"train-en.jsonl, line 2: invalid JSON"):
        t.read(tmp_path, "train", "en")
    (tmp_path / "train-en.jsonl").write_text('{"premise": "p", "choice2": "b", "question": "cause", "label": 0}\n')
    with pytest.raises(DataFormatError, match=r"line 1, field 'choice1': missing required field"):
        t.read(tmp_path, "train", "en")
    (tmp_path / "train-en.jsonl").write_text(
        '{"premise": "p", "choice1": "a", "choice2": "b", "question": "why", "label": 0}\n'
    )
    with pytest.raises(DataFormatError, match=r"line 1, field 'question': expected 'cause' or 'effect'"):
        t.read(tmp_path, "train", "en")
    (tmp_path / "xquad.de.json").write_text('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1"')
    with pytest.raises(DataFormatError, match=r"xquad.de.json, line 1: invalid JSON"):
        get_task("xquad").read(tmp_path, "test", "de")
    (tmp_path / "xquad.de.json").write_text(
        '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", '
        '"question": "q", "answers": [{"text": "bc", "answer_start": 0}]}]}]}]}'
    )
    with pytest.raises(DataFormatError, match=r"field 'data\[0\].paragraphs\[0\].qas\[0\].answers\[0\].answer_start'"):
        get_task("xquad").read(tmp_path, "test", "de")


def test_malformed_conllu_and_tags(tmp_path):
    d = tmp_path / "UD_German-X"
    d.mkdir()
    (d / "de_x-ud-test.conllu").write_text("1\tDas\tder\tDET\t_\t_\t2\tdet\t_\t_\n2\tHaus\tHaus\n\n")
    with pytest.raises(
        DataFormatError, match=r"de_x-ud-test.conllu, line 2: expected 10 tab-separated CoNLL-U columns"
    ):
        get_task("udpos").read(tmp_path, "test", "de", layout="original")
    (tmp_path / "dev-de.tsv").write_text("Das\tDET\nHaus\tNOUNN\n")
    with pytest.raises(DataFormatError, match=r"dev-de.tsv, line 2, field 'tag': unknown label 'NOUNN'"):
        get_task("udpos").read(tmp_path, "dev", "de", layout="xtreme")
