"""SQuAD v2.0 scoring, values worked out by hand."""

import pytest

from xlrepro.metrics import qa_score, squad_v2_scores

DATA = [
    {
        "title": "t",
        "paragraphs": [
            {
                "context": "x",
                "qas": [
                    {
                        "id": "a",
                        "question": "?",
                        "answers": [
                            {"text": "the Denver Broncos", "answer_start": 0},
                            {"text": "Broncos", "answer_start": 0},
                        ],
                    },
                    {"id": "b", "question": "?", "answers": []},  # unanswerable: gold ""
                    {
                        "id": "c",
                        "question": "?",
                        "answers": [{"text": "The", "answer_start": 0}],
                    },  # normalises to "": unanswerable
                    {"id": "d", "question": "?", "answers": [{"text": "in 1990", "answer_start": 0}]},
                ],
            }
        ],
    }
]


def test_v2_rules():
    preds = {"a": "Denver Broncos", "b": "", "c": "something", "d": "1990 and more"}
    r = squad_v2_scores(preds, DATA)
    # a: EM 1 ("denver broncos" = normalised gold 1), F1 1
    # b: pred "" vs gold "": EM 1, F1 1
    # c: gold normalises to "" -> unanswerable; pred "something": EM 0, F1 0
    # d: gold "in 1990", pred "1990 and more": EM 0; common {1990}: P 1/3, R 1/2 -> F1 0.4
    assert r["exact_match"] == pytest.approx(100 * 2 / 4)
    assert r["f1"] == pytest.approx(100 * (1 + 1 + 0 + 0.4) / 4)
    assert r["HasAns_total"] == 2 and r["NoAns_total"] == 2
    assert r["NoAns_exact_match"] == pytest.approx(50.0) and r["HasAns_f1"] == pytest.approx(70.0)


def test_missing_predictions_official_vs_corrected():
    preds = {"a": "Broncos"}
    off = squad_v2_scores(preds, DATA)
    assert off["total"] == 1 and off["n_missing"] == 3 and off["exact_match"] == 100.0
    cor = squad_v2_scores(preds, DATA, mode="corrected")
    assert cor["total"] == 4 and cor["exact_match"] == 25.0
    assert qa_score(preds, DATA, task="squad_v2", lang="en")["total"] == 1
    with pytest.raises(ValueError, match="no question was scored"):
        squad_v2_scores({}, DATA)
