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


def test_classification_rows_map_class_ids_to_label_names():
    feats = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})
    ds = datasets.Dataset.from_dict({"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"], "label": [2, 0, -1]},
                                    features=datasets.Features({**feats, "label": datasets.Value("int64")}))
    ds = ds.cast_column("label", datasets.Value("int64"))
    r = convert_rows(get_task("xnli"), _with_names(ds, ["entailment", "neutral", "contradiction"]), "de")
    assert [e.label for e in r.examples] == ["contradiction", "entailment"]
    assert r.skipped == {"label -1 (no gold label)": 1}


def _with_names(ds, names):
    class D(list):
        features = {"label": datasets.ClassLabel(names=names)}
    return D(ds)


def test_qa_rows_check_answer_offsets_and_build_the_scorer_dataset():
    rows = [{"id": "q1", "title": "t", "context": "Paris is in France.", "question": "Where?",
             "answers": {"text": ["France"], "answer_start": [12]}}]
    r = convert_rows(get_task("xquad"), datasets.Dataset.from_list(rows), "de")
    assert r.examples[0].answers[0].start == 12 and r.raw[0]["paragraphs"][0]["qas"][0]["id"] == "q1"
    rows[0]["answers"]["answer_start"] = [3]
    with pytest.raises(DataFormatError, match="line 1, field 'answers.answer_start'"):
        convert_rows(get_task("xquad"), datasets.Dataset.from_list(rows), "de")


def test_tagging_and_retrieval_rows():
    ds = datasets.Dataset.from_dict({"tokens": [["a", "b"]], "pos_tags": [[0, 1]]},
                                    features=datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                                                "pos_tags": datasets.Sequence(datasets.ClassLabel(names=["ADJ", "ADP"]))}))
    assert convert_rows(get_task("udpos"), ds, "de").examples[0].tags == ["ADJ", "ADP"]
    ds = datasets.Dataset.from_dict({"source_sentence": ["x1", "x2"], "target_sentence": ["e1", "e2"]})
    ex = convert_rows(get_task("tatoeba"), ds, "de").examples[0]
    assert ex.src_sentences == ["x1", "x2"] and ex.gold == [("0", "0"), ("1", "1")]
