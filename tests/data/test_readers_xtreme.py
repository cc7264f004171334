"""Readers of the XTREME / XTREME-R target tasks on the real samples in ``shared/data-samples``.

Expected counts were taken independently of xlrepro (``wc -l``, ``grep -c``, ``awk 'BEGIN{RS=""}'``,
``jq '[.data[].paragraphs[].qas[]]|length'``) and are written out here. Every sample file of
PAWS-X, XNLI-1.0, PAN-X, MLQA, TyDiQA-GoldP, BUCC 2018, XQuAD-R and Mewsli-X is read; files that
are not part of a registry split (MLQA cross-language pairs, PAWS-X translated train, PAN-X and
TyDiQA non-English train) are read with the same layout's reader directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, assert_names, needs_samples  # noqa: E402  (shared helpers)

from xlrepro import languages as langtab
from xlrepro.data.all_readers import get_reader
from xlrepro.data.readers_xtreme import (
    TYDIQA_ENGLISH_TRAIN_SIZE,
    filter_tydiqa_english,
    pool_lareqa,
    tydiqa_language_prefix,
)
from xlrepro.errors import DataFormatError
from xlrepro.tasks import all_tasks, get_task


def read_direct(task: str, layout: str, root: Path, split: str, lang: str):
    """Read files of a layout that no registry split covers (e.g. non-English train), with the layout's reader."""
    spec = get_task(task)
    lay = spec.layout(layout)
    opts = dict(lay.options)
    if spec.labels is not None:
        opts.setdefault("labels", list(spec.labels))
    return get_reader(lay.reader)(spec.files(root, split, lang, layout), src_lang=lang, split=split, **opts)


# =========================================================================== registry and languages

XTREME_COUNTS = {
    "pawsx": 7,
    "xnli": 15,
    "panx": 40,
    "udpos": 33,
    "bucc2018": 4,
    "tatoeba": 36,
    "xquad": 11,
    "mlqa": 7,
    "tydiqa": 9,
}
XTREME_R_COUNTS = {
    "xnli": 15,
    "panx": 48,
    "udpos": 38,
    "tatoeba": 41,
    "xcopa": 11,
    "mewslix": 11,
    "xquad": 12,
    "mlqa": 7,
    "tydiqa": 9,
    "lareqa": 11,
}


def test_every_registry_entry_loads():
    tasks = all_tasks()
    for name in ("pawsx", "panx", "mlqa", "tydiqa", "bucc2018", "lareqa", "mewslix", "xnli"):
        assert name in tasks
    for spec in tasks.values():
        assert spec.version >= 1
        for lay in spec.layouts:
            get_reader(lay.reader)
        if spec.hub is not None:
            assert spec.hub.revision is None or len(spec.hub.revision) == 40


def test_task_languages_are_in_the_language_table():
    table = set(langtab.table())
    for spec in all_tasks().values():
        langs = spec.all_languages()
        assert langs, spec.name
        assert set(langs) <= table, (spec.name, set(langs) - table)
        for split in spec.splits:
            assert set(spec.split_languages(split)) <= set(langs), (spec.name, split)


@pytest.mark.parametrize("benchmark,counts", [("xtreme", XTREME_COUNTS), ("xtreme_r", XTREME_R_COUNTS)])
def test_language_counts_per_benchmark(benchmark, counts):
    tasks = all_tasks()
    members = {n for n, s in tasks.items() if benchmark in s.benchmarks}
    assert members == set(counts), members ^ set(counts)
    for name, n in counts.items():
        assert len(tasks[name].languages(benchmark)) == n, name


def test_benchmark_specific_language_lists():
    assert get_task("pawsx").languages("xtreme") == ["de", "en", "es", "fr", "ja", "ko", "zh"]
    assert get_task("bucc2018").languages("xtreme") == ["de", "fr", "ru", "zh"]
    panx = get_task("panx")
    extra = set(panx.languages("xtreme_r")) - set(panx.languages("xtreme"))
    assert extra == {"qu", "pl", "uk", "az", "lt", "pa", "gu", "ro"}
    assert get_task("mewslix").languages() == ["ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk"]


# =========================================================================== PAWS-X

PAWSX_LANGS = ["de", "en", "es", "fr", "ja", "ko", "zh"]


@needs_samples
@pytest.mark.parametrize("lang", PAWSX_LANGS)
def test_pawsx_xtreme_layout(lang):
    root = SAMPLES / "paws-x" / "xtreme_processed"
    dev = get_task("pawsx").read(root, "dev", lang)
    test = get_task("pawsx").read(root, "test", lang)
    assert (len(dev), len(test)) == (150, 60)
    assert all(e.label in ("0", "1") for e in dev.examples)
    assert all(e.label is None for e in test.examples)


@needs_samples
@pytest.mark.parametrize("lang", PAWSX_LANGS)
def test_pawsx_original_layout(lang):
    root = SAMPLES / "paws-x" / "hf_dummy_data"
    spec = get_task("pawsx")
    for split in ("dev", "test"):
        res = spec.read(root, split, lang, layout="original")
        assert len(res) == 4  # header + 4 rows each (SOURCE.md says 3; counted: 4)
        assert all(e.label in ("0", "1") for e in res.examples)
    if lang != "en":  # translate-train data, not a registry split (train is English only)
        spec_files = spec.files(root, "train", lang, "original")
        translated = spec_files["file"].with_name("translated_train.tsv")
        res = get_reader("header_tsv")(
            {"file": translated},
            text_a="sentence1",
            text_b="sentence2",
            label_column="label",
            id_column="id",
            labels=["0", "1"],
        )
        assert len(res) == 4


@needs_samples
def test_pawsx_content():
    ex = get_task("pawsx").read(SAMPLES / "paws-x" / "hf_dummy_data", "train", "en").examples
    assert len(ex) == 4
    assert ex[0].guid == "1" and ex[0].label == "0"
    assert ex[0].text_a.startswith("In Paris , in October 1560 , he secretly met the English ambassador")
    dev = get_task("pawsx").read(SAMPLES / "paws-x" / "xtreme_processed", "dev", "en").examples
    assert dev[0].text_a.startswith("From the merger of the Four Rivers Council") and dev[0].label == "1"


# =========================================================================== XNLI-1.0 (original layout)

XNLI_LANGS = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()


@needs_samples
@pytest.mark.parametrize("lang", XNLI_LANGS)
def test_xnli_original_tsv(lang):
    root = SAMPLES / "xnli" / "hf_dummy_data" / "XNLI-1.0"
    dev = get_task("xnli").read(root, "dev", lang, layout="original")
    test = get_task("xnli").read(root, "test", lang, layout="original")
    assert (len(dev), len(test)) == (1, 1)  # one row per language in each of the 15-row dummy files
    assert dev.examples[0].label == "neutral" and test.examples[0].label == "contradiction"


@needs_samples
def test_xnli_original_jsonl_and_content():
    root = SAMPLES / "xnli" / "hf_dummy_data" / "XNLI-1.0"
    for split in ("dev", "test"):
        assert len(get_task("xnli").read(root, split, "ar", layout="original_jsonl")) == 5
    en = get_task("xnli").read(root, "dev", "en", layout="original").examples[0]
    assert en.guid == "1" and en.text_a == "And he said, Mama, I'm home."
    with pytest.raises(DataFormatError, match="no row with language = 'en'"):
        get_task("xnli").read(root, "dev", "en", layout="original_jsonl")  # the jsonl dummy is Arabic only


# =========================================================================== PAN-X

# (sentences, tokens) of train / dev / test per language: awk 'BEGIN{RS=""}END{print NR}' and grep -c .
PANX_TOKENS = {
    "en": (11, 10, 20),
    "yo": (3, 5, 5),
    "sw": (9, 6, 6),
    "jv": (7, 4, 6),
    "ta": (13, 5, 7),
    "mr": (7, 12, 6),
    "te": (19, 12, 4),
    "my": (8, 5, 12),
    "kk": (6, 10, 4),
    "ka": (9, 13, 5),
    "eu": (4, 5, 17),
    "hi": (23, 4, 3),
    "ar": (4, 6, 7),
    "zh": (25, 3, 15),
    "ja": (17, 255, 14),
    "th": (28, 208, 29),
}


@needs_samples
@pytest.mark.parametrize("lang", sorted(PANX_TOKENS))
def test_panx_rahimi_layout(lang):
    root = SAMPLES / "panx" / "hf_dummy_data"
    spec = get_task("panx")
    for split, ntok in zip(("train", "dev", "test"), PANX_TOKENS[lang]):
        res = (
            spec.read(root, split, lang)
            if lang == "en" or split != "train"
            else read_direct("panx", "original", root, split, lang)
        )
        assert len(res) == 1, split  # one sentence per file
        ex = res.examples[0]
        assert len(ex.words) == len(ex.tags) == ntok, split
        assert not any(w.startswith(f"{lang}:") for w in ex.words)
        assert set(ex.tags) <= set(spec.labels)


@needs_samples
def test_panx_content():
    ex = get_task("panx").read(SAMPLES / "panx" / "hf_dummy_data", "train", "en").examples[0]
    assert ex.words[:4] == ["R.H.", "Saunders", "(", "St."]
    assert ex.tags[:4] == ["B-ORG", "I-ORG", "O", "B-ORG"]
    with pytest.raises(KeyError, match="no train split"):
        get_task("panx").read(SAMPLES / "panx" / "hf_dummy_data", "train", "yo")  # zero-shot: English train only


# =========================================================================== MLQA

MLQA_SAME = {"ar": 84, "de": 82, "en": 81, "es": 81, "hi": 81, "vi": 96, "zh": 80}
MLQA_CROSS = {("de", "en"): 82, ("en", "de"): 86, ("en", "hi"): 83, ("hi", "en"): 81}  # (context, question)


@needs_samples
@pytest.mark.parametrize("lang", sorted(MLQA_SAME))
def test_mlqa_same_language(lang):
    res = get_task("mlqa").read(SAMPLES / "mlqa", "dev", lang)
    assert len(res) == MLQA_SAME[lang]
    assert len({e.guid for e in res.examples}) == len(res)
    assert all(len(e.answers) == 1 for e in res.examples)


@needs_samples
@pytest.mark.parametrize("pair", sorted(MLQA_CROSS))
def test_mlqa_cross_language_files(pair):
    c, q = pair
    path = SAMPLES / "mlqa" / "MLQA_V1" / "dev" / f"dev-context-{c}-question-{q}.json"
    assert len(get_reader("squad_json")({"file": path})) == MLQA_CROSS[pair]


@needs_samples
def test_mlqa_content():
    ex = get_task("mlqa").read(SAMPLES / "mlqa", "dev", "en").examples[0]
    assert ex.guid == "569666f4dc3983dab5624e989212c1d9d0cd1798"
    assert ex.title == "Pappataci fever"
    assert (ex.answers[0].text, ex.answers[0].start) == ("remains infected for its lifetime", 571)


# =========================================================================== TyDiQA-GoldP

TYDIQA_LANGS = ["ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"]


@needs_samples
@pytest.mark.parametrize("lang", TYDIQA_LANGS)
def test_tydiqa_test_split_both_layouts(lang):
    root = SAMPLES / "tydiqa-goldp"
    xt = get_task("tydiqa").read(root / "xtreme_processed", "test", lang)
    orig = get_task("tydiqa").read(root, "test", lang, layout="by_language")
    assert len(xt) == len(orig) == 50
    # XTREME blanks the test answers: withheld, not an empty gold answer
    assert all(e.answers == [] for e in xt.examples)
    assert xt.skipped == {"answers withheld (blank answer text; kept with answers=[])": 50}
    assert all(e.answers for e in orig.examples) and orig.skipped == {}
    assert [e.question for e in xt.examples] == [e.question for e in orig.examples]


@needs_samples
@pytest.mark.parametrize("lang", ["en", "sw"])
def test_tydiqa_train_both_layouts(lang):
    root = SAMPLES / "tydiqa-goldp"
    if lang == "en":
        xt = get_task("tydiqa").read(root / "xtreme_processed", "train", "en")
        orig = get_task("tydiqa").read(root, "train", "en", layout="by_language")
    else:  # not a registry split: zero-shot trains on English only
        xt = read_direct("tydiqa", "xtreme", root / "xtreme_processed", "train", lang)
        orig = read_direct("tydiqa", "by_language", root, "train", lang)
    assert len(xt) == len(orig) == 100
    raw_ids = [qa["id"] for art in xt.raw for p in art["paragraphs"] for qa in p["qas"]]
    assert len(set(raw_ids)) == {"en": 21, "sw": 24}[lang]  # XTREME train ids are truncated, not unique
    assert len({e.guid for e in xt.examples}) == 100  # guids are (file, index)
    assert xt.examples[0].guid == f"tydiqa.goldp.{lang}.train.json#0"
    assert [e.question for e in xt.examples] == [e.question for e in orig.examples]


@needs_samples
def test_tydiqa_content():
    ex = get_task("tydiqa").read(SAMPLES / "tydiqa-goldp", "test", "en", layout="by_language").examples[0]
    assert ex.guid == "english_tydiqa_dev.json#0"
    assert ex.question == "What is a way to increase your wound healing speed?"
    assert (ex.answers[0].text, ex.answers[0].start) == ("Wound care", 0)


@needs_samples
def test_tydiqa_official_multilingual_file_is_filtered_by_id_prefix(tmp_path):
    root = SAMPLES / "tydiqa-goldp" / "language_data"
    data = []
    for name in ("english", "swahili"):
        data += json.loads((root / name / f"{name}_tydiqa_dev.json").read_text(encoding="utf-8"))["data"]
    (tmp_path / "tydiqa-goldp-v1.1-dev.json").write_text(
        json.dumps({"data": data, "version": "TyDiQA-GoldP-1.1"}), encoding="utf-8"
    )
    en = get_task("tydiqa").read(tmp_path, "test", "en")
    sw = get_task("tydiqa").read(tmp_path, "test", "sw")
    assert len(en) == len(sw) == 50
    assert en.skipped == {"TyDi QA id prefix is not 'english-'": 50}
    assert sum(len(p["qas"]) for a in en.raw for p in a["paragraphs"]) == 50
    assert (
        en.examples[0].guid == "tydiqa-goldp-v1.1-dev.json#0" and sw.examples[0].guid == "tydiqa-goldp-v1.1-dev.json#50"
    )


@needs_samples
def test_filter_tydiqa_english():
    root = SAMPLES / "tydiqa-goldp" / "language_data"
    rows = []
    for name in ("english", "swahili"):
        d = json.loads((root / name / f"{name}_tydiqa_train.json").read_text(encoding="utf-8"))
        rows += [
            {"id": qa["id"], "question": qa["question"]} for a in d["data"] for p in a["paragraphs"] for qa in p["qas"]
        ]
    assert len(rows) == 200
    en = filter_tydiqa_english(rows)
    assert len(en) == 100 and all(r["id"].startswith("english-") for r in en)
    assert tydiqa_language_prefix("en") == "english-" and TYDIQA_ENGLISH_TRAIN_SIZE == 3696
    with pytest.raises(ValueError, match="expected 3696"):
        filter_tydiqa_english(rows, expect_full=True)  # a sample, not the full 49,881


# =========================================================================== BUCC 2018


@needs_samples
def test_bucc_dev_zh(tmp_path):
    res = get_task("bucc2018").read(SAMPLES / "bucc2018", "dev", "zh")
    (ex,) = res.examples
    assert (len(ex.src_sentences), len(ex.tgt_sentences), len(ex.gold)) == (400, 400, 100)
    assert ex.src_ids[0] == "zh-000000001" and ex.tgt_ids[0] == "en-000000001"
    assert ex.gold[0] == ("zh-000000057", "en-000008530")
    assert ex.tgt_sentences[0].startswith("Coalition strategy relied on establishing")
    assert len(res.files) == 3
    # the original BUCC names: 'sample' = XTREME dev
    for ext in ("zh", "en", "gold"):
        shutil.copy(SAMPLES / "bucc2018" / f"zh-en.dev.{ext}", tmp_path / f"zh-en.sample.{ext}")
    orig = get_task("bucc2018").read(tmp_path, "dev", "zh")
    assert orig.examples[0].gold == ex.gold and orig.examples[0].src_sentences == ex.src_sentences


# =========================================================================== LAReQA / XQuAD-R

LAREQA_SENTENCES = {
    "ar": 68,
    "de": 77,
    "el": 69,
    "en": 68,
    "es": 69,
    "hi": 68,
    "ru": 68,
    "th": 54,
    "tr": 69,
    "vi": 68,
    "zh": 67,
}


@needs_samples
@pytest.mark.parametrize("lang", sorted(LAREQA_SENTENCES))
def test_lareqa_per_language(lang):
    res = get_task("lareqa").read(SAMPLES / "xquad-r", "test", lang)
    (pool,) = res.examples
    assert len(pool.questions) == len(pool.gold) == 105
    assert len(pool.sentences) == len(pool.contexts) == LAREQA_SENTENCES[lang]
    assert len(set(pool.sentence_ids)) == len(pool.sentences)


@needs_samples
def test_lareqa_pool_and_content():
    pools = [get_task("lareqa").read(SAMPLES / "xquad-r", "test", l).examples[0] for l in sorted(LAREQA_SENTENCES)]
    sids, sents, gold = pool_lareqa(pools)
    assert len(sids) == len(sents) == sum(LAREQA_SENTENCES.values()) == 745
    assert len(gold) == 11 * 105
    assert all(len(g) == 11 for g in gold.values())  # one answer sentence per language
    en = pools[sorted(LAREQA_SENTENCES).index("en")]
    assert en.question_ids[0] == "56beb4343aeaaa14008c925b"
    sid = dict(en.gold)["56beb4343aeaaa14008c925b"]
    assert en.sentences[en.sentence_ids.index(sid)].startswith("The Panthers defense gave up just 308 points")


# =========================================================================== Mewsli-X


@needs_samples
def test_mewslix_fixture(tmp_path):
    shutil.copy(SAMPLES / "mewsli-x" / "testdata" / "example_mentions.jsonl", tmp_path / "wikinews_mentions-test.jsonl")
    en = get_task("mewslix").read(tmp_path, "test", "en")
    ar = get_task("mewslix").read(tmp_path, "test", "ar")
    assert (len(en), len(ar)) == (1, 2)
    m = en.examples[0]
    assert (m.guid, m.entity_id, m.start, m.end, m.mention) == (
        "c79595350cc2d5c7f2b095e2cb785212",
        "Q1757",
        50,
        58,
        "Helsinki",
    )
    assert m.context[m.start : m.end] == "Helsinki" and m.context[44] == "\u00a0"  # code-point offsets
    assert m.document_id == "en-34985"
    assert [x.mention for x in ar.examples] == ["أبو موسى", "طنب الصغرى"]


@needs_samples
def test_mewslix_no_text_variant():
    path = SAMPLES / "mewsli-x" / "testdata" / "example_mentions_no_text.jsonl"
    with pytest.raises(DataFormatError, match="_no_text") as e:
        get_reader("mewslix_jsonl")({"file": path}, src_lang="en")
    assert_names(e.value, path, 1, "context.text")
    res = get_reader("mewslix_jsonl")({"file": path}, src_lang="ar", allow_missing_text=True)
    assert len(res) == 2 and res.examples[0].context == ""


# =========================================================================== malformed input (written to tmp_path)


def _write(path: Path, text: str, crlf: bool = False) -> Path:
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode("utf-8"))
    return path


PAWS_OK = "id\tsentence1\tsentence2\tlabel\n1\tA b .\tB a .\t0\n2\tC d .\tD c .\t1\n"


def _paws(tmp_path, text, crlf=False):
    (tmp_path / "x-final" / "en").mkdir(parents=True, exist_ok=True)
    p = _write(tmp_path / "x-final" / "en" / "dev_2k.tsv", text, crlf)
    return p, (lambda: get_task("pawsx").read(tmp_path, "dev", "en", layout="original"))


def test_header_tsv_malformed(tmp_path):
    p, read = _paws(tmp_path, PAWS_OK)
    lf = read().examples
    _paws(tmp_path, PAWS_OK, crlf=True)
    assert read().examples == lf and len(lf) == 2
    _paws(tmp_path, "id\tsentence1\tlabel\n1\ta\t0\n")
    with pytest.raises(DataFormatError) as e:
        read()
    assert_names(e.value, p, 1, "sentence2")
    _paws(tmp_path, PAWS_OK + "3\tE f .\tF e .\n")
    with pytest.raises(DataFormatError) as e:
        read()
    assert_names(e.value, p, 4, "label")
    _paws(tmp_path, PAWS_OK.replace("\t1\n", "\t2\n"))
    with pytest.raises(DataFormatError, match="unknown label '2'") as e:
        read()
    assert_names(e.value, p, 3, "label")


def test_xnli_original_malformed(tmp_path):
    head = "language\tgold_label\tsentence1\tsentence2\tpairID\n"
    ok = head + "en\tneutral\tA .\tB .\t1\nde\tneutral\tC .\tD .\t1\n"
    p = _write(tmp_path / "xnli.dev.tsv", ok)
    lf = get_task("xnli").read(tmp_path, "dev", "de", layout="original").examples
    _write(p, ok, crlf=True)
    assert get_task("xnli").read(tmp_path, "dev", "de", layout="original").examples == lf
    _write(p, ok.replace("de\tneutral", "de\tneutrall"))
    with pytest.raises(DataFormatError) as e:
        get_task("xnli").read(tmp_path, "dev", "de", layout="original")
    assert_names(e.value, p, 3, "gold_label")
    jl = tmp_path / "xnli.test.jsonl"
    row = {"language": "ar", "gold_label": "neutral", "sentence1": "a", "sentence2": "b", "pairID": "1"}
    _write(jl, json.dumps(row) + "\n" + json.dumps(row)[:-9] + "\n")
    with pytest.raises(DataFormatError, match="invalid JSON") as e:
        get_task("xnli").read(tmp_path, "test", "ar", layout="original_jsonl")
    assert_names(e.value, jl, 2)
    _write(jl, json.dumps({k: v for k, v in row.items() if k != "sentence2"}) + "\n")
    with pytest.raises(DataFormatError) as e:
        get_task("xnli").read(tmp_path, "test", "ar", layout="original_jsonl")
    assert_names(e.value, jl, 1, "sentence2")


PANX_OK = "en:New\tB-LOC\nen:York\tI-LOC\n\nen:a:b\tO\nen:.\tO\n"


def test_panx_rahimi_malformed(tmp_path):
    (tmp_path / "en").mkdir()
    p = _write(tmp_path / "en" / "dev", PANX_OK)
    lf = get_task("panx").read(tmp_path, "dev", "en", layout="original").examples
    assert [e.words for e in lf] == [["New", "York"], ["a:b", "."]]  # split at the first colon only
    _write(p, PANX_OK, crlf=True)
    assert get_task("panx").read(tmp_path, "dev", "en", layout="original").examples == lf
    for text, line, field, match in [
        (PANX_OK.replace("en:York\tI-LOC", "en:York"), 2, "tag", "columns"),
        (PANX_OK.replace("I-LOC", "I-MISC"), 2, "tag", "unknown label 'I-MISC'"),
        (PANX_OK.replace("en:.", "de:."), 5, "token", "start with 'en:'"),
    ]:
        _write(p, text)
        with pytest.raises(DataFormatError, match=match) as e:
            get_task("panx").read(tmp_path, "dev", "en", layout="original")
        assert_names(e.value, p, line, field)


def _tydiqa_doc(ids=("english-1-0", "english--2-1")):
    return {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "Alpha beta gamma.",
                        "qas": [{"question": f"Q{n}?", "answers": [{"text": "beta", "answer_start": 6}], "id": i}],
                    }
                ],
            }
            for n, i in enumerate(ids)
        ]
    }


def test_tydiqa_malformed(tmp_path):
    d = tmp_path / "language_data" / "english"
    d.mkdir(parents=True)
    p = d / "english_tydiqa_dev.json"
    text = json.dumps(_tydiqa_doc(), indent=1)
    _write(p, text)
    lf = get_task("tydiqa").read(tmp_path, "test", "en", layout="by_language").examples
    _write(p, text, crlf=True)
    assert get_task("tydiqa").read(tmp_path, "test", "en", layout="by_language").examples == lf
    _write(p, text[:-40])
    with pytest.raises(DataFormatError, match="invalid JSON") as e:
        get_task("tydiqa").read(tmp_path, "test", "en", layout="by_language")
    assert_names(e.value, p, text[:-40].count("\n") + 1)
    doc = _tydiqa_doc()
    del doc["data"][1]["paragraphs"][0]["qas"][0]["id"]
    _write(p, json.dumps(doc))
    with pytest.raises(DataFormatError) as e:  # a JSON document: the location is the JSON path
        get_task("tydiqa").read(tmp_path, "test", "en", layout="by_language")
    assert_names(e.value, p, None, "data[1].paragraphs[0].qas[0].id")
    doc = _tydiqa_doc()
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 5
    _write(p, json.dumps(doc))
    with pytest.raises(DataFormatError, match="not found at offset 5") as e:
        get_task("tydiqa").read(tmp_path, "test", "en", layout="by_language")
    assert_names(e.value, p, None, "data[0].paragraphs[0].qas[0].answers[0].answer_start")


def _bucc(tmp_path, zh="zh-1\t甲\nzh-2\t乙\n", en="en-1\tA\nen-2\tB\nen-3\tC\n", gold="zh-2\ten-3\n", crlf=False):
    for ext, text in (("zh", zh), ("en", en), ("gold", gold)):
        _write(tmp_path / f"zh-en.dev.{ext}", text, crlf)
    return lambda: get_task("bucc2018").read(tmp_path, "dev", "zh")


def test_bucc_malformed(tmp_path):
    lf = _bucc(tmp_path)().examples
    assert lf[0].gold == [("zh-2", "en-3")]
    assert _bucc(tmp_path, crlf=True)().examples == lf
    with pytest.raises(DataFormatError) as e:
        _bucc(tmp_path, en="en-1\tA\nen-2\n")()
    assert_names(e.value, tmp_path / "zh-en.dev.en", 2, "sentence")
    with pytest.raises(DataFormatError, match="'en-9' is not in") as e:
        _bucc(tmp_path, gold="zh-1\ten-1\nzh-2\ten-9\n")()
    assert_names(e.value, tmp_path / "zh-en.dev.gold", 2, "en id")
    with pytest.raises(DataFormatError, match="duplicate") as e:
        _bucc(tmp_path, zh="zh-1\t甲\nzh-1\t乙\n")()
    assert_names(e.value, tmp_path / "zh-en.dev.zh", 2, "id")


def _lareqa_doc():
    ctx = "One two. Three four."
    return {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [{"answers": [{"answer_start": 9, "text": "Three"}], "id": "q1", "question": "Which?"}],
                        "sentence_breaks": [[0, 8], [9, 20]],
                        "sentences": ["One two.", "Three four."],
                    }
                ],
            }
        ],
        "version": "1.1",
    }


def test_lareqa_malformed(tmp_path):
    (tmp_path / "xquad-r").mkdir()
    p = tmp_path / "xquad-r" / "en.json"
    text = json.dumps(_lareqa_doc(), indent=2)
    _write(p, text)
    (pool,) = get_task("lareqa").read(tmp_path, "test", "en").examples
    assert pool.gold == [("q1", "en:0:0:1")]
    _write(p, text, crlf=True)
    assert get_task("lareqa").read(tmp_path, "test", "en").examples == [pool]
    _write(p, text[: len(text) // 2])
    with pytest.raises(DataFormatError, match="invalid JSON") as e:
        get_task("lareqa").read(tmp_path, "test", "en")
    assert_names(e.value, p, text[: len(text) // 2].count("\n") + 1)
    doc = _lareqa_doc()
    doc["data"][0]["paragraphs"][0]["sentence_breaks"][1] = [10, 20]
    _write(p, json.dumps(doc))
    with pytest.raises(DataFormatError, match="does not cut") as e:
        get_task("lareqa").read(tmp_path, "test", "en")
    assert_names(e.value, p, None, "data[0].paragraphs[0].sentence_breaks[1]")
    doc = _lareqa_doc()
    del doc["data"][0]["paragraphs"][0]["sentences"]
    _write(p, json.dumps(doc))
    with pytest.raises(DataFormatError) as e:
        get_task("lareqa").read(tmp_path, "test", "en")
    assert_names(e.value, p, None, "data[0].paragraphs[0].sentences")


def _mewslix_record(text="Hi Paris\u00a0now.", lang="en"):
    import hashlib

    md5 = hashlib.md5(text.encode("utf-8")).hexdigest()
    return {
        "context": {
            "document_title": "t",
            "document_url": "u",
            "document_id": f"{lang}-1",
            "language": lang,
            "text": text,
            "sentence_spans": [{"start": 0, "end": len(text)}],
        },
        "mentions": [
            {
                "example_id": "e1",
                "mention_span": {"start": 3, "end": 8, "text": "Paris"},
                "entity_id": "Q90",
                "metadata": {"text_md5": md5},
            }
        ],
    }


def test_mewslix_malformed(tmp_path):
    p = tmp_path / "wikinews_mentions-dev.jsonl"
    body = json.dumps(_mewslix_record(lang="de")) + "\n" + json.dumps(_mewslix_record(), ensure_ascii=False)
    _write(p, body)
    lf = get_task("mewslix").read(tmp_path, "dev", "en").examples
    assert [(m.guid, m.mention) for m in lf] == [("e1", "Paris")]
    _write(p, body, crlf=True)
    assert get_task("mewslix").read(tmp_path, "dev", "en").examples == lf
    _write(p, body[:-30])
    with pytest.raises(DataFormatError, match="invalid JSON") as e:
        get_task("mewslix").read(tmp_path, "dev", "en")
    assert_names(e.value, p, 2)
    rec = _mewslix_record()
    del rec["mentions"][0]["mention_span"]
    _write(p, json.dumps(rec))
    with pytest.raises(DataFormatError) as e:
        get_task("mewslix").read(tmp_path, "dev", "en")
    assert_names(e.value, p, 1, "mentions[0].mention_span")
    rec = _mewslix_record()
    rec["context"]["text"] = rec["context"]["text"].replace("\u00a0", " ")  # the text no longer matches its MD5
    _write(p, json.dumps(rec))
    with pytest.raises(DataFormatError, match="MD5") as e:
        get_task("mewslix").read(tmp_path, "dev", "en")
    assert_names(e.value, p, 1, "mentions[0].metadata.text_md5")


def test_panx_xtreme_layout_generated(tmp_path):
    # no PAN-X sample in XTREME's processed form exists; its format is UD-POS's 'word<TAB>TAG' (test: words only)
    _write(tmp_path / "dev-sw.tsv", "Dar\tB-LOC\nes\tI-LOC\nSalaam\tI-LOC\n\nNi\tO\n")
    _write(tmp_path / "test-sw.tsv", "Dar\nes\n\nNi\n", crlf=True)
    dev = get_task("panx").read(tmp_path, "dev", "sw")
    test = get_task("panx").read(tmp_path, "test", "sw")
    assert [e.words for e in dev.examples] == [["Dar", "es", "Salaam"], ["Ni"]] and dev.examples[1].tags == ["O"]
    assert len(test) == 2 and test.examples[0].tags is None
