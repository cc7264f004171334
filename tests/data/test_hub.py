import datasets
import pytest

from xlrepro.data.hub import convert_rows, read_hub
from xlrepro.errors import ConfigError, DataFormatError
from xlrepro.tasks import get_task


def test_unpinned_hub_sources_are_refused_with_the_fix():
    spec = get_task("xnli")
    assert spec.hub.revision is None
    with pytest.raises(ConfigError, match="not pinned to a revision.*allow_unpinned_hub"):
        read_hub(spec, "dev", "de")


def test_a_language_its_repo_lacks_is_read_from_the_other_repo_and_needs_its_pin():
    spec = get_task("panx")  # XTREME-R's ro is not in google/xtreme: unimelb-nlp/wikiann (download.hub_languages)
    with pytest.raises(ConfigError, match="unimelb-nlp/wikiann is not pinned.*download.hub_languages"):
        read_hub(spec, "test", "ro")
    with pytest.raises(ConfigError, match="google/xtreme is not pinned"):
        read_hub(spec, "test", "de")


def test_classification_rows_map_class_ids_to_label_names():
    feats = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"], "label": [2, 0, -1]},
        features=datasets.Features({**feats, "label": datasets.Value("int64")}),
    )
    ds = ds.cast_column("label", datasets.Value("int64"))
    r = convert_rows(get_task("xnli"), _with_names(ds, ["entailment", "neutral", "contradiction"]), "de")
    assert [e.label for e in r.examples] == ["contradiction", "entailment"]
    assert r.skipped == {"label -1 (no gold label)": 1}


def _with_names(ds, names):
    class D(list):
        features = {"label": datasets.ClassLabel(names=names)}

    return D(ds)


def test_qa_rows_check_answer_offsets_and_build_the_scorer_dataset():
    rows = [
        {
            "id": "q1",
            "title": "t",
            "context": "Paris is in France.",
            "question": "Where?",
            "answers": {"text": ["France"], "answer_start": [12]},
        }
    ]
    r = convert_rows(get_task("xquad"), datasets.Dataset.from_list(rows), "de")
    assert r.examples[0].answers[0].start == 12 and r.raw[0]["paragraphs"][0]["qas"][0]["id"] == "q1"
    rows[0]["answers"]["answer_start"] = [3]
    with pytest.raises(DataFormatError, match="line 1, field 'answers.answer_start'"):
        convert_rows(get_task("xquad"), datasets.Dataset.from_list(rows), "de")


def test_tagging_and_retrieval_rows():
    ds = datasets.Dataset.from_dict(
        {"tokens": [["a", "b"]], "pos_tags": [[0, 1]]},
        features=datasets.Features(
            {
                "tokens": datasets.Sequence(datasets.Value("string")),
                "pos_tags": datasets.Sequence(datasets.ClassLabel(names=["ADJ", "ADP"])),
            }
        ),
    )
    assert convert_rows(get_task("udpos"), ds, "de").examples[0].tags == ["ADJ", "ADP"]
    ds = datasets.Dataset.from_dict({"source_sentence": ["x1", "x2"], "target_sentence": ["e1", "e2"]})
    ex = convert_rows(get_task("tatoeba"), ds, "de").examples[0]
    assert ex.src_sentences == ["x1", "x2"] and ex.gold == [("0", "0"), ("1", "1")]


# ---------------------------------------------------------------------- each dataset's published schema
import json  # noqa: E402

from conftest import needs_samples  # noqa: E402

from xlrepro.data.all_readers import get_reader  # noqa: E402


def _glue(names, rows):
    feats = datasets.Features(
        {
            **{k: datasets.Value("string") for k in rows[0] if k not in ("label", "idx")},
            "label": datasets.ClassLabel(names=names),
            "idx": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_list(rows, features=feats)


def test_glue_class_names_map_to_the_task_labels():
    qqp = _glue(
        ["not_duplicate", "duplicate"],
        [
            {"question1": "a?", "question2": "b?", "label": 1, "idx": 0},
            {"question1": "c?", "question2": "d?", "label": 0, "idx": 1},
            {"question1": "e?", "question2": "f?", "label": -1, "idx": 2},
        ],
    )
    r = convert_rows(get_task("qqp"), qqp, "en")
    assert [e.label for e in r.examples] == ["1", "0"] and r.skipped == {"label -1 (no gold label)": 1}
    sst = _glue(
        ["negative", "positive"],
        [{"sentence": "good", "label": 1, "idx": 0}, {"sentence": "bad", "label": 0, "idx": 1}],
    )
    r = convert_rows(get_task("sst2"), sst, "en")
    assert [(e.text_a, e.text_b, e.label) for e in r.examples] == [("good", None, "1"), ("bad", None, "0")]


def _official_tydiqa_rows(samples, names=("english", "arabic")):
    rows = []
    for name in names:
        data = json.loads((samples / f"tydiqa-goldp/language_data/{name}/{name}_tydiqa_dev.json").read_text())["data"]
        for art in data:
            for p in art["paragraphs"]:
                for q in p["qas"]:
                    rows.append(
                        {
                            "id": q["id"],
                            "title": art.get("title", ""),
                            "context": p["context"],
                            "question": q["question"],
                            "answers": {
                                "text": [a["text"] for a in q["answers"]],
                                "answer_start": [a["answer_start"] for a in q["answers"]],
                            },
                        }
                    )
    return rows


@needs_samples
def test_tydiqa_from_the_hub_keeps_only_the_language_asked(samples):
    rows = _official_tydiqa_rows(samples)
    r = convert_rows(get_task("tydiqa"), datasets.Dataset.from_list(rows), "en")
    n_en = sum(x["id"].startswith("english-") for x in rows)
    assert 0 < len(r.examples) == n_en < len(rows)
    assert all(e.guid.startswith("english-") for e in r.examples)
    assert r.skipped == {"other languages (id not starting with 'english-')": len(rows) - n_en}
    ar = convert_rows(get_task("tydiqa"), datasets.Dataset.from_list(rows), "ar")
    assert len(ar.examples) == len(rows) - n_en and all(e.guid.startswith("arabic-") for e in ar.examples)


def test_bucc_is_refused_from_the_hub_with_the_reason():
    spec = get_task("bucc2018")
    with pytest.raises(ConfigError, match="no distractor"):
        read_hub(spec, "test", "de", allow_unpinned=True)
    ds = datasets.Dataset.from_dict({"source_sentence": ["x"], "target_sentence": ["e"]})
    with pytest.raises(ConfigError, match="no distractor"):
        convert_rows(spec, ds, "de")
    assert "hub" not in [l.name for l in spec.layouts]


@needs_samples
def test_social_iqa_hub_rows_match_the_release_reader(samples):
    d = samples / "socialiqa/hf_dummy_data/socialiqa-train-dev"
    local = get_reader("socialiqa_allenai")({"file": d / "dev.jsonl", "labels": d / "dev-labels.lst"}).examples
    labels = (d / "dev-labels.lst").read_text().split()
    rows = [{**json.loads(l), "label": lab} for l, lab in zip((d / "dev.jsonl").read_text().splitlines(), labels)]
    hub = convert_rows(get_task("socialiqa"), datasets.Dataset.from_list(rows), "en").examples  # label: string "1".."3"
    assert [(e.context, e.question, e.choices, e.label) for e in hub] == [
        (e.context, e.question, e.choices, e.label) for e in local
    ]


@needs_samples
def test_commonsenseqa_hub_rows_match_the_release_reader(samples):
    path = samples / "commonsenseqa/dev_rand_split.jsonl"
    local = get_reader("commonsenseqa_jsonl")({"file": path}).examples
    rows = []
    for line in path.read_text().splitlines():
        o = json.loads(line)
        q = o["question"]
        rows.append(
            {
                "id": o["id"],
                "question": q["stem"],
                "question_concept": q.get("question_concept", ""),
                "choices": {"label": [c["label"] for c in q["choices"]], "text": [c["text"] for c in q["choices"]]},
                "answerKey": o.get("answerKey", ""),
            }
        )
    hub = convert_rows(get_task("commonsenseqa"), datasets.Dataset.from_list(rows), "en").examples
    assert len(hub) == len(local) == 200
    assert [(e.guid, e.question, e.choices, e.label) for e in hub] == [
        (e.guid, e.question, e.choices, e.label) for e in local
    ]


@needs_samples
def test_cosmos_qa_hub_rows_match_the_release_reader(samples):
    path = samples / "cosmosqa/data/valid.csv"
    local = get_reader("cosmosqa")({"file": path}).examples
    rows = [
        {
            "id": e.guid,
            "context": e.context,
            "question": e.question,
            **{f"answer{k}": c for k, c in enumerate(e.choices)},
            "label": e.label,
        }
        for e in local
    ]
    rows.append({**rows[0], "id": "unlabelled", "label": -1})  # the Hub's test split
    hub = convert_rows(get_task("cosmosqa"), datasets.Dataset.from_list(rows), "en").examples
    assert [(e.guid, e.context, e.choices, e.label) for e in hub[:-1]] == [
        (e.guid, e.context, e.choices, e.label) for e in local
    ]
    assert hub[-1].label is None


def test_unknown_multiple_choice_columns_are_named_not_a_key_error():
    ds = datasets.Dataset.from_list([{"stem": "q", "options": ["a", "b"]}])
    with pytest.raises(DataFormatError, match="line 1, field 'columns'.*no known multiple-choice schema"):
        convert_rows(get_task("socialiqa"), ds, "en")


@needs_samples
def test_lareqa_hub_rows_build_the_same_pool_as_the_release_file(samples):
    path = samples / "xquad-r/xquad-r/de.json"
    local = get_reader("lareqa_json")({"file": path}, src_lang="de").examples[0]
    rows = []
    for art in json.loads(path.read_text())["data"]:
        for p in art["paragraphs"]:
            for q in p["qas"]:
                rows.append(
                    {
                        "id": q["id"],
                        "title": art.get("title", ""),
                        "context": p["context"],
                        "question": q["question"],
                        "answers": {
                            "text": [a["text"] for a in q["answers"]],
                            "answer_start": [a["answer_start"] for a in q["answers"]],
                        },
                        "sentences": p["sentences"],
                        "sentence_breaks": p["sentence_breaks"],
                    }
                )
    hub = convert_rows(get_task("lareqa"), datasets.Dataset.from_list(rows), "de").examples[0]
    assert hub.questions == local.questions and hub.sentences == local.sentences
    assert hub.sentence_qids == local.sentence_qids
    bare = [{k: v for k, v in r.items() if k not in ("sentences", "sentence_breaks")} for r in rows]
    with pytest.raises(DataFormatError, match="sentence_breaks"):
        convert_rows(get_task("lareqa"), datasets.Dataset.from_list(bare), "de")


@needs_samples
def test_mewslix_hub_rows_go_through_the_release_reader(samples):
    path = samples / "mewsli-x/testdata/example_mentions.jsonl"
    local = get_reader("mewslix_jsonl")({"file": path}, src_lang="en").examples
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    hub = convert_rows(get_task("mewslix"), rows_with_features(rows), "en").examples
    assert [(e.guid, e.start, e.end) for e in hub] == [(e.guid, e.start, e.end) for e in local] and local


def rows_with_features(rows):
    class R(list):
        features = {}

    return R(rows)


def test_data_sources_are_per_task_and_checked():
    from xlrepro.config import load_config

    cfg = load_config("xstilts-squad", ["data.sources={tydiqa: hub}"])
    assert cfg.data.sources == {"tydiqa": "hub"} and cfg.data.source == "local"
    with pytest.raises(ConfigError, match="data.sources.tydiqa"):
        load_config("xstilts-squad", ["data.sources={tydiqa: web}"])
    with pytest.raises(ConfigError, match="unknown task 'tydiq'"):
        load_config("xstilts-squad", ["data.sources={tydiq: hub}"])


def test_the_pipeline_reads_each_task_from_its_own_source(tmp_path):
    from xlrepro.config import load_config
    from xlrepro.phases import Context

    cfg = load_config("xstilts-squad", ["data.sources={tydiqa: hub}", f"data.root={tmp_path / 'none'}"])
    exp = Context(cfg, tmp_path / "out", device="cpu")
    with pytest.raises(ConfigError, match="google/xtreme is not pinned"):
        exp.read("tydiqa", "test", "en")  # the Hub route (refused: unpinned)
    with pytest.raises(FileNotFoundError, match="task xquad: no files"):
        exp.read("xquad", "test", "en")  # the global default: local files


# ---------------------------------------------------------------------- the hub_parquet reader and the reader table


def test_hub_parquet_reads_by_the_entry_the_registry_hands_it(tmp_path):
    from xlrepro.data.hub import read_hub_parquet
    from xlrepro.tasks.registry import prepared_layout

    spec = get_task("xnli")
    assert spec.layout("hub") == prepared_layout(spec.hub)  # no options: the entry comes with the call
    with pytest.raises(ValueError, match="hub_parquet: expected spec=<the task's TaskSpec>"):
        read_hub_parquet({"file": tmp_path}, src_lang="de", split="dev")
    with pytest.raises(FileNotFoundError, match="run `xlrepro data prepare xnli`"):
        read_hub_parquet({"file": tmp_path}, src_lang="de", split="dev", spec=spec)


@pytest.mark.parametrize(
    "first", ["xlrepro.data.reader_registry", "xlrepro.data.hub", "xlrepro.data.readers_xtreme", "xlrepro.tasks"]
)
def test_every_reader_is_registered_whichever_module_comes_first(first):
    """The table is complete at the first lookup, whatever was imported before (a fresh process)."""
    import subprocess
    import sys

    from xlrepro.data.all_readers import READERS

    code = (
        f"import {first}\n"
        "from xlrepro.data.all_readers import READERS\n"
        "from xlrepro.tasks import all_tasks\n"
        "used = {l.reader for t in all_tasks().values() for l in t.layouts}\n"
        "assert used <= set(READERS), used - set(READERS)\n"
        "print(len(READERS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == len(READERS)
