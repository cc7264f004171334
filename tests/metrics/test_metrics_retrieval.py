"""Golden tests for LAReQA mAP@k and Mewsli-X MRR@k (google-research/xtreme ``third_party/utils_lareqa.py``
and ``third_party/utils_mewslix.py``; docs/metrics.md)."""

import numpy as np
import pytest

from xlrepro.metrics import average_precision_at_k, lareqa_map_at_k, mewslix_evaluate_all, mewslix_map_at_k

# ----------------------------------------------------------------- average_precision_at_k


def test_ap_basic():
    # hits at rank 1 (1/1) and rank 3 (2/3); divisor min(2, 3) = 2 -> (5/3)/2 = 5/6
    assert average_precision_at_k([1, 2, 3, 4, 5], {1, 3}, 3) == pytest.approx(5 / 6)


def test_ap_k_zero_means_no_cutoff():
    # relevant item at rank 4: k=0 -> (1/4)/1; k=3 -> cut before it -> 0
    assert average_precision_at_k([9, 8, 7, 1], {1}, 0) == pytest.approx(0.25)
    assert average_precision_at_k([9, 8, 7, 1], {1}, None) == pytest.approx(0.25)
    assert average_precision_at_k([9, 8, 7, 1], {1}, 3) == 0.0


def test_ap_duplicates_count_once_but_use_a_rank():
    # [1, 1, 2]: hit at rank 1 (1/1); the duplicate at rank 2 is skipped; 2 at rank 3 -> 2/3
    # -> (1 + 2/3) / min(2, 3) = 5/6
    assert average_precision_at_k([1, 1, 2], {1, 2}, 3) == pytest.approx(5 / 6)
    # five copies of one relevant id among five targets: (1/1) / 5
    assert average_precision_at_k([1, 1, 1, 1, 1], {1, 2, 3, 4, 5}, 5) == pytest.approx(0.2)


def test_ap_divisor_is_min_targets_k():
    # two hits at ranks 1, 2 -> 1 + 1 = 2; k=2 -> / min(5, 2) = 2 -> 1.0; no cutoff -> / 5 -> 0.4
    assert average_precision_at_k([1, 2], {1, 2, 3, 4, 5}, 2) == pytest.approx(1.0)
    assert average_precision_at_k([1, 2], {1, 2, 3, 4, 5}, 0) == pytest.approx(0.4)


def test_ap_official_counts_duplicate_targets_in_the_divisor():
    # official: hits counted on first occurrence of a relevant id; divisor = min(len(targets), k)
    # with targets = [7, 7, 8] -> len 3. ranking [7, 8]: rank 1 hit (1/1), rank 2 hit (2/2) -> 2 / 3
    assert average_precision_at_k([7, 8], [7, 7, 8], 20) == pytest.approx(2 / 3)
    # targets [5, 5], 5 ranked first: 1 / min(2, 20) = 0.5; no cutoff: 1 / len([5, 5]) = 0.5
    assert average_precision_at_k([5, 1], [5, 5], 20) == 0.5
    assert average_precision_at_k([5, 1], [5, 5], 0) == 0.5
    # corrected de-duplicates the targets: 2 / 2 = 1.0 and 1 / 1 = 1.0
    assert average_precision_at_k([7, 8], [7, 7, 8], 20, mode="corrected") == 1.0
    assert average_precision_at_k([5, 1], [5, 5], 20, mode="corrected") == 1.0


def test_ap_official_negative_k():
    # official with k = -1: `if k:` is true -> ranked[:-1] = [1, 2]; hits at ranks 1 and 2 -> 1 + 1 = 2;
    # divisor min(len(targets) = 2, -1) = -1 -> 2 / -1 = -2.0
    assert average_precision_at_k([1, 2, 3], {1, 2}, -1) == -2.0


def test_ap_bad_input():
    with pytest.raises(ValueError, match="empty targets"):
        average_precision_at_k([1], set(), 20)
    with pytest.raises(ValueError, match="k must be >= 0"):
        average_precision_at_k([1], {1}, -1, mode="corrected")


# ----------------------------------------------------------------- lareqa_map_at_k


def _lareqa_fixture():
    C = np.array(
        [
            [3.0, 0.0],  # c0 answers 'a'
            [0.0, 3.0],  # c1 answers 'b'
            [2.0, 2.0],  # c2 distractor
            [1.0, 0.0],
        ]
    )  # c3 answers 'b' (e.g. the same answer in another language)
    cand_ids = ["a", "b", None, "b"]
    Q = np.array(
        [
            [1.0, 0.0],  # q0 'a': scores 3, 0, 2, 1 -> c0 c2 c3 c1
            [1.0, 0.0],  # q1 'b': same ranking
            [0.1, 1.0],
        ]
    )  # q2 'b': scores 0.3, 3, 2.2, 0.1 -> c1 c2 c0 c3
    q_ids = ["a", "b", "b"]
    return Q, C, q_ids, cand_ids


def test_lareqa_pooled_map():
    Q, C, q_ids, cand_ids = _lareqa_fixture()
    # q0: c0 at rank 1 -> 1/1, divisor min(1, 20) = 1 -> 1
    # q1: c3 at rank 3 (1/3), c1 at rank 4 (2/4) -> (1/3 + 1/2) / 2 = 5/12
    # q2: c1 at rank 1 (1/1), c3 at rank 4 (2/4) -> 1.5 / 2 = 3/4
    # pooled mean over all questions: (1 + 5/12 + 3/4) / 3 = 13/18
    # (a per-language macro average with q0, q1 in one language and q2 in another would be
    #  ((1 + 5/12)/2 + 3/4)/2 = 35/48 instead)
    out = lareqa_map_at_k(Q, C, q_ids, cand_ids, k=20)
    assert out["map@20"] == pytest.approx(100 * 13 / 18)
    assert out["n_questions"] == 3 and out["n_candidates"] == 4
    # k=2: q0 -> 1; q1 top-2 = c0 c2 -> 0; q2 top-2 = c1 c2 -> 1/min(2,2) = 0.5 -> 1.5/3
    assert lareqa_map_at_k(Q, C, q_ids, cand_ids, k=2)["map@2"] == pytest.approx(50.0)
    # float32 input (as the official encodings) gives the same ranking here
    out32 = lareqa_map_at_k(Q.astype(np.float32), C.astype(np.float32), q_ids, cand_ids)
    assert out32["map@20"] == pytest.approx(100 * 13 / 18)


def test_lareqa_raw_dot_products_not_cosine():
    # q = (1, 1); c0 = (10, 0) dot 10, c1 = (1, 1) dot 2: raw ranking c0, c1 -> relevant c1 at rank 2
    # -> AP 1/2 (cosine would rank c1 first and give 1)
    out = lareqa_map_at_k([[1.0, 1.0]], [[10.0, 0.0], [1.0, 1.0]], ["a"], [None, "a"])
    assert out["map@20"] == pytest.approx(50.0)


def test_lareqa_candidate_answering_several_questions():
    # c0 answers both 'a' and 'b'; each question finds it at rank 1 -> 1 each
    out = lareqa_map_at_k([[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], ["a", "b"], [["a", "b"], None])
    assert out["map@20"] == pytest.approx(100.0)


def test_lareqa_tie_order():
    Q, C = np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    cand_ids = [None, None, "a"]
    # corrected: stable descending, lowest index first -> c2 at rank 3 -> AP 1/3
    assert lareqa_map_at_k(Q, C, ["a"], cand_ids, mode="corrected")["map@20"] == pytest.approx(100 / 3)
    # official: numpy's own argsort()[::-1] decides; derive the rank of c2 from numpy directly
    order = list(np.array([1.0, 1.0, 1.0]).argsort()[::-1])
    expected = 100.0 / (order.index(2) + 1)
    out = lareqa_map_at_k(Q, C, ["a"], cand_ids)
    assert out["map@20"] == pytest.approx(expected)
    assert "argsort" in out["tie_order"]


def test_lareqa_bad_input():
    with pytest.raises(ValueError, match="no relevant candidate"):
        lareqa_map_at_k([[1.0]], [[1.0]], ["a"], ["b"])
    with pytest.raises(ValueError, match="empty"):
        lareqa_map_at_k(np.zeros((0, 2)), np.zeros((1, 2)), [], [None])
    with pytest.raises(ValueError, match="question ids"):
        lareqa_map_at_k([[1.0]], [[1.0]], ["a", "b"], ["a"])


# ----------------------------------------------------------------- Mewsli-X

GOLD = {"e1": [" Q1 "], "e2": ["Q2", "Q9"], "e3": ["Q3"], "e4": ["Q4"]}
PREDS = {"e1": ["Q0", "Q1"], "e2": ["Q9", "Q8", "Q2"], "e3": [" Q3"], "e5": ["Q5"]}


def test_mewslix_mrr_first_gold_stripped_predictions_not():
    # e1: gold 'Q1' (stripped) at rank 2 -> 1/2
    # e2: only the first gold 'Q2' counts -> rank 3 -> 1/3 (Q9 at rank 1 is not used)
    # e3: ' Q3' is not stripped -> no match -> 0
    # e4: no prediction -> 0; e5: not in gold -> ignored
    # (1/2 + 1/3 + 0 + 0) / 4 = 5/24
    out = mewslix_map_at_k(PREDS, GOLD)
    assert out["map@20"] == pytest.approx(100 * 5 / 24)
    assert (out["n_missing"], out["n_unexpected"]) == (1, 1)
    # corrected strips predictions: e3 -> 1 -> (1/2 + 1/3 + 1) / 4 = 11/24
    assert mewslix_map_at_k(PREDS, GOLD, mode="corrected")["map@20"] == pytest.approx(100 * 11 / 24)


def test_mewslix_truncates_to_k():
    # k=2: e2's match at rank 3 is cut -> (1/2) / 4
    assert mewslix_map_at_k(PREDS, GOLD, k=2)["map@2"] == pytest.approx(12.5)


def test_mewslix_official_empty_gold_scores_zero():
    # official evaluate(): gold_single_labels = {} -> no reciprocal ranks ->
    # mean_reciprocal_rank returns 0.0 (its `if reciprocal_ranks:` is false); x 100 = 0.0
    out = mewslix_map_at_k({"e": ["Q1"]}, {})
    assert out["map@20"] == 0.0 and out["n_unexpected"] == 1 and out["note"]
    assert mewslix_evaluate_all({"de": {}}, {"de": {}}, ["de"])["map@20"] == 0.0
    with pytest.raises(ValueError, match="empty gold"):
        mewslix_map_at_k({}, {}, mode="corrected")


def test_mewslix_official_string_values():
    # official: gold 'Q1' (a string, not a list) -> labels[0].strip() = 'Q'; prediction ['Q'] hits at
    # rank 1 -> 1.0. A prediction string 'xQ1' -> 'xQ1'[:20] is compared character by character
    # with gold 'Q1' ('x', 'Q', '1'): never equal -> 0. A prediction 'aQ' with gold ['Q'] -> 'a'
    # misses, 'Q' hits at rank 2 -> 1/2. MRR = (1 + 0 + 1/2) / 3 = 1/2 -> 50.0
    gold = {"a": "Q1", "b": ["Q1"], "c": ["Q"]}
    preds = {"a": ["Q"], "b": "xQ1", "c": "aQ"}
    out = mewslix_map_at_k(preds, gold)
    assert out["map@20"] == 50.0 and len(out["note"]) == 3
    with pytest.raises(ValueError, match="non-empty list"):
        mewslix_map_at_k(preds, gold, mode="corrected")


def test_mewslix_bad_input():
    # the official code raises on these too: [][0] IndexError, 5[:20] TypeError, None.strip()
    with pytest.raises(ValueError, match="non-empty list"):
        mewslix_map_at_k({}, {"e": []})
    with pytest.raises(ValueError, match="list of ids"):
        mewslix_map_at_k({"e": 5}, {"e": ["Q1"]})
    with pytest.raises(ValueError, match="entity id string"):
        mewslix_map_at_k({}, {"e": [None]})
    with pytest.raises(ValueError, match="list of ids"):
        mewslix_map_at_k({"e": "Q1"}, {"e": ["Q1"]}, mode="corrected")


def test_mewslix_evaluate_all_macro_average_missing_language_zero():
    gold = {"de": {"x": ["Q1"]}, "ar": {"y": ["Q2"]}}
    preds = {"de": {"x": ["Q1"]}}  # no ar predictions at all
    # de: rank 1 -> 1; ar: 0 -> macro (1 + 0) / 2 = 0.5
    out = mewslix_evaluate_all(preds, gold, ["de", "ar"])
    assert out["map@20"] == pytest.approx(50.0)
    assert out["per_language"] == {"ar": 0.0, "de": pytest.approx(100.0)}
    assert out["missing_prediction_languages"] == ["ar"]
    with pytest.raises(ValueError, match="no gold for language"):
        mewslix_evaluate_all(preds, gold, ["de", "ar", "ja"])
