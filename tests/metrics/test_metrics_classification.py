"""Golden tests for accuracy() and tatoeba_accuracy() (google-research/xtreme ``evaluate.py:accuracy``;
the Tatoeba prediction format of ``third_party/evaluate_retrieval.py``).

Expected values are worked out by hand in the comments.
"""

import numpy as np
import pytest

from xlrepro.metrics import accuracy, tatoeba_accuracy


def test_accuracy_is_exact_string_equality():
    preds = ["entailment", "Entailment", "neutral ", " neutral", "00", "1"]
    labels = ["entailment", "entailment", "neutral", "neutral", "0", "1"]
    # 1: equal; 2: case differs; 3, 4: spaces are not stripped at function level;
    # 5: '00' != '0'; 6: equal -> 2 correct of 6 = 33.33...
    out = accuracy(preds, labels)
    assert out["accuracy"] == pytest.approx(100 * 2 / 6)
    assert out["mode"] == "official"
    assert accuracy(preds, labels, mode="corrected") == {"accuracy": pytest.approx(100 * 2 / 6), "mode": "corrected"}


def test_accuracy_official_int_never_equals_str():
    # official: correct = sum(int(p == l) ...) with Python equality; 1 == '1' is False, 0 == 0 is
    # True, 1 == 1.0 is True -> 2 correct of 4 -> float(2) / 4 * 100 = 50.0 exactly
    preds, labels = [1, 0, 1, "1"], ["1", 0, 1.0, 1]
    assert accuracy(preds, labels)["accuracy"] == 50.0
    # corrected compares str(p) == str(l): '1' == '1', '0' == '0', '1' != '1.0', '1' == '1' -> 3 of 4
    assert accuracy(preds, labels, mode="corrected")["accuracy"] == 75.0


def test_accuracy_official_length_mismatch_truncates_like_zip():
    # official: zip pairs (a, a), (b, x) -> 1 correct; divided by len(predictions) = 2 -> 50.0
    out = accuracy(["a", "b"], ["a", "x", "c"])
    assert out["accuracy"] == 50.0 and "2 predictions but 3 labels" in out["note"][0]
    # 3 predictions, 1 label: zip gives (a, a) only -> 1 correct / 3
    assert accuracy(["a", "b", "c"], ["a"])["accuracy"] == pytest.approx(100 / 3)


def test_accuracy_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        accuracy(["a", "b"], ["a", "b", "c"], mode="corrected")
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="unknown mode"):
        accuracy(["a"], ["a"], mode="strict")


def test_tatoeba_official_compares_strings_so_bracketed_rows_never_match():
    # rows 0..3; gold of row i is i.
    # row 0: 0 ok; row 1: '1' ok; row 2: '[2]' != '2' (str(numpy_row) format, E2); row 3: 5 != 3
    preds = [0, "1", "[2]", 5]
    assert tatoeba_accuracy(preds)["accuracy"] == pytest.approx(50.0)
    # corrected parses '[2]' -> 2: 3 of 4 correct
    assert tatoeba_accuracy(preds, mode="corrected")["accuracy"] == pytest.approx(75.0)


def test_tatoeba_corrected_accepts_numpy_rows():
    preds = [np.array([0]), np.int64(1), np.array([[5]])]
    # official: str(np.array([0])) == '[0]' != '0'; '1' ok; '[[5]]' != '2' -> 1 of 3
    assert tatoeba_accuracy(preds)["accuracy"] == pytest.approx(100 / 3)
    # corrected: 0 ok, 1 ok, 5 != 2 -> 2 of 3
    assert tatoeba_accuracy(preds, mode="corrected")["accuracy"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="row 0"):
        tatoeba_accuracy(["zero"], mode="corrected")
    with pytest.raises(ValueError, match="empty"):
        tatoeba_accuracy([])
