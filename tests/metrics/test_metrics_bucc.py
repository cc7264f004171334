"""Golden tests for BUCC threshold optimisation, extraction and scoring (google-research/xtreme
``third_party/utils_retrieve.py`` and ``evaluate.py:bucc_f1``; docs/metrics.md).

With c correct among the first n candidates and g gold pairs, F1 = 2PR/(P+R) = 2c/(n+g).
"""

import math

import pytest

from xlrepro.metrics import bucc_dedup_sentences, bucc_evaluate, bucc_extract, bucc_f1, bucc_optimize


def _cands(*rows):
    """Insertion-ordered candidate2score from (src, trg, score) rows."""
    return {(s, t): score for s, t, score in rows}


def test_stable_sort_file_order_decides_ties():
    gold = {("s2", "t2"), ("s9", "t9")}  # g = 2
    # s1 (wrong) inserted before s2 (right), both 0.9:
    #   n=1 c=0 skip; n=2 c=1: P=1/2 R=1/2 F1=0.5 -> threshold (0.9+0.5)/2 = 0.7; n=3: 2/5 < 0.5
    first_wrong = _cands(("s1", "t1", 0.9), ("s2", "t2", 0.9), ("s3", "t3", 0.5))
    out = bucc_optimize(first_wrong, gold)
    assert out["threshold"] == pytest.approx(0.7)
    assert out["best_f1"] == pytest.approx(50.0)
    assert (out["precision"], out["recall"]) == (pytest.approx(50.0), pytest.approx(50.0))
    # s2 inserted first: n=1 c=1: P=1 R=1/2 F1=2/3 -> threshold (0.9+0.9)/2 = 0.9; n=2: 0.5 < 2/3
    first_right = _cands(("s2", "t2", 0.9), ("s1", "t1", 0.9), ("s3", "t3", 0.5))
    out = bucc_optimize(first_right, gold)
    assert out["threshold"] == pytest.approx(0.9)
    assert out["best_f1"] == pytest.approx(200 / 3)


def test_two_thirds_rounding_makes_the_later_cutoff_win():
    # Float facts of the official bucc_optimize arithmetic (plain Python, not our code):
    assert 2 * 0.75 * 0.6 / (0.75 + 0.6) == 0.6666666666666665  # 3 of 4, gold 5
    assert 2 * (4 / 7) * 0.8 / (4 / 7 + 0.8) == 0.6666666666666666  # 4 of 7, gold 5
    # ranking (scores 8..1): ok, x, ok, ok, x, x, ok, x; gold has a 5th unreachable pair.
    marks = [1, 0, 1, 1, 0, 0, 1, 0]
    cands = {(f"s{i}", f"t{i}"): float(8 - i) for i in range(8)}
    gold = {(f"s{i}", f"t{i}") for i, m in enumerate(marks) if m} | {("sx", "tx")}
    # F1 = 2c/(n+5): n1 1/3, n2 2/7, n3 1/2, n4 2/3, n5 3/5, n6 6/11, n7 2/3, n8 8/13.
    # official: n7's float 2/3 is larger by one ulp -> best at n7, threshold (2+1)/2 = 1.5,
    # P = 4/7, R = 4/5
    out = bucc_optimize(cands, gold)
    assert out["threshold"] == 1.5
    assert out["precision"] == pytest.approx(400 / 7)
    assert out["recall"] == pytest.approx(80.0)
    assert out["best_f1"] == pytest.approx(200 / 3)
    assert (out["n_extracted"], out["n_correct"]) == (7, 4)
    # corrected compares exact fractions: the first 2/3 (n4) is kept, threshold (5+4)/2 = 4.5
    out = bucc_optimize(cands, gold, "corrected")
    assert out["threshold"] == 4.5
    assert (out["precision"], out["recall"]) == (pytest.approx(75.0), pytest.approx(60.0))


def test_tie_at_threshold_reports_lower_than_optimised():
    gold = {("a", "A"), ("b", "B"), ("z", "Z")}  # g = 3, z never a candidate
    cands = _cands(("a", "A", 0.9), ("b", "B", 0.8), ("c", "C", 0.8))
    # official: n1 P=1 R=1/3 -> 0.5; n2 P=1 R=2/3 -> 0.8 -> threshold (0.8+0.8)/2 = 0.8; n3: 2/3.
    out = bucc_optimize(cands, gold)
    assert out["threshold"] == 0.8
    assert out["best_f1"] == pytest.approx(80.0)
    # extraction keeps score >= 0.8: a, b and the tied c -> P = 2/3, R = 2/3, F1 = 66.7
    assert bucc_extract(cands, 0.8) == [("a", "A"), ("b", "B"), ("c", "C")]
    ev = bucc_evaluate(cands, gold)
    assert ev["optimised_f1"] == pytest.approx(80.0)
    assert ev["f1"] == pytest.approx(200 / 3)
    assert ev["threshold_source"].startswith("oracle")
    # corrected: cut-offs only between distinct scores: after a -> 2/4 = 0.5 (threshold 0.85);
    # after c (end of list) -> 4/6 = 2/3 > 0.5 -> threshold = 0.8, reported = optimised = 66.7
    out = bucc_optimize(cands, gold, "corrected")
    assert out["threshold"] == 0.8 and out["best_f1"] == pytest.approx(200 / 3)
    ev = bucc_evaluate(cands, gold, mode="corrected")
    assert ev["f1"] == pytest.approx(ev["optimised_f1"])


def test_best_cutoff_at_last_candidate_is_the_official_indexerror_case():
    # every candidate correct: n1 P=1 R=1/2 -> 2/3; n2 P=1 R=1 -> 1 at the last candidate
    out = bucc_optimize(_cands(("a", "A", 0.9), ("b", "B", 0.5)), {("a", "A"), ("b", "B")})
    assert out["threshold"] == 0.5  # the last candidate's own score: everything is extracted
    assert out["best_f1"] == pytest.approx(100.0)
    assert any("IndexError" in n for n in out["note"])
    # last candidate correct and raising F1: n1 2/3; n2 P=1/2 R=1/2 -> 1/2; n3 P=2/3 R=1 -> 0.8
    out = bucc_optimize(_cands(("a", "A", 0.9), ("b", "B", 0.7), ("c", "C", 0.5)), {("a", "A"), ("c", "C")})
    assert out["threshold"] == 0.5 and out["best_f1"] == pytest.approx(80.0)
    assert any("IndexError" in n for n in out["note"])


def test_no_correct_candidate():
    cands = _cands(("a", "A", 0.9), ("b", "B", -0.1))
    out = bucc_optimize(cands, {("z", "Z")})
    # official: threshold stays 0 and everything with score >= 0 is still extracted
    assert out["threshold"] == 0
    assert (out["best_f1"], out["precision"], out["recall"]) == (0, 0, 0)
    assert bucc_extract(cands, out["threshold"]) == [("a", "A")]
    # corrected: threshold just above the top score -> nothing extracted
    out = bucc_optimize(cands, {("z", "Z")}, "corrected")
    assert out["threshold"] == math.nextafter(0.9, math.inf)
    assert bucc_extract(cands, out["threshold"]) == []


def test_gold_as_tab_joined_lines_and_bad_input():
    cands = _cands(("a", "A", 0.9), ("b", "B", 0.1))
    # gold file lines: n1 P=1 R=1 -> F1 1, threshold (0.9+0.1)/2 = 0.5
    assert bucc_optimize(cands, {"a\tA"})["threshold"] == pytest.approx(0.5)
    # official bucc_optimize with an empty gold set: no candidate is in gold, so ncorrect stays 0,
    # the F1 branch never runs and `threshold = 0` is returned; with no candidates the loop does
    # not run at all and the same 0 comes back.
    for c, g in ((cands, set()), ({}, {"a\tA"})):
        out = bucc_optimize(c, g)
        assert out["threshold"] == 0 and out["best_f1"] == 0.0 and out["note"]
    with pytest.raises(ValueError, match="empty gold"):
        bucc_optimize(cands, set(), "corrected")
    with pytest.raises(ValueError, match="no candidates"):
        bucc_optimize({}, {"a\tA"}, "corrected")
    # and the whole bucc_eval chain then extracts every candidate with score >= 0 against the
    # empty gold: bucc_f1 finds ncorrect = 0 -> P = R = F1 = 0
    assert bucc_evaluate(cands, [])["f1"] == 0.0


def test_bucc_f1_sets_and_lines():
    pred = ["a\tb", "a\tb", "c\td", "", "e\tf\tg"]
    gold = ["a\tb", "c\tx", "e\tf"]
    # pred set {(a,b), (c,d), ('',), (e,f,g)} = 4 (duplicate collapses, blank line is a pair ('',),
    # three fields never match); gold 3; correct {(a,b)} = 1
    # P = 1/4, R = 1/3, F1 = 2*(1/12)/(7/12) = 2/7
    out = bucc_f1(pred, gold)
    assert out["precision"] == pytest.approx(25.0)
    assert out["recall"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(200 / 7)
    # corrected drops the blank prediction: P = 1/3, R = 1/3, F1 = 1/3
    assert bucc_f1(pred, gold, "corrected")["f1"] == pytest.approx(100 / 3)
    # tuples work too; nothing correct -> zeros
    assert bucc_f1([("x", "y")], [("a", "b")])["f1"] == 0.0
    # empty gold, official evaluate.py:bucc_f1: labels = set() -> ncorrect = len(set() & preds) = 0
    # -> `prec = rec = f1_val = 0` -> {'f1': 0, 'precision': 0, 'recall': 0} (times 100 = 0)
    out = bucc_f1([("x", "y")], [])
    assert (out["f1"], out["precision"], out["recall"]) == (0, 0, 0) and out["n_gold"] == 0
    assert bucc_f1([], [])["f1"] == 0
    with pytest.raises(ValueError, match="empty gold"):
        bucc_f1([("x", "y")], [], "corrected")


def test_dedup_sentences_drops_repeats_officially():
    ids = ["1", "2", "3", "4 "]
    sents = ["Hello", " Hello ", "World", "Bye\n"]
    # 'Hello' occurs twice after strip() -> dropped entirely; ids are stripped too
    assert bucc_dedup_sentences(ids, sents) == {"World": "3", "Bye": "4"}
    # corrected keeps it with the first id
    assert bucc_dedup_sentences(ids, sents, "corrected") == {"Hello": "1", "World": "3", "Bye": "4"}
    with pytest.raises(ValueError, match="3 ids but 4 sentences"):
        bucc_dedup_sentences(ids[:3], sents, "corrected")
    # official read_sent2id pairs the two files with zip: the 4th sentence has no id and is left out
    # -> Hello (ids 1, 2) repeated and dropped, World -> 3
    assert bucc_dedup_sentences(ids[:3], sents) == {"World": "3"}


def test_optimize_official_accepts_nan_and_numpy_scores():
    import numpy as np

    # official: sorted(items, key=lambda x: -x[1]) with keys [-0.9, nan, -0.5]. Every comparison
    # with nan is False, so timsort sees one non-descending run and keeps the order a, b, c.
    # a is gold: n=1, c=1 -> P = R = 1, F1 = 1 > 0 -> threshold = (0.9 + nan) / 2 = nan.
    # b: F1 = 2*(1/2)*1/(3/2) = 2/3, c: 2*(1/3)*1/(4/3) = 1/2, neither > 1 -> threshold nan, F1 100
    out = bucc_optimize(_cands(("a", "A", 0.9), ("b", "B", float("nan")), ("c", "C", 0.5)), {"a\tA"})
    assert math.isnan(out["threshold"]) and out["best_f1"] == 100.0
    with pytest.raises(ValueError, match="not a number"):
        bucc_optimize(_cands(("a", "A", 0.9), ("b", "B", float("nan"))), {"a\tA"}, "corrected")
    # float32 scores (what a float32 margin gives): a first, F1 1 -> (0.75 + 0.25) / 2 = 0.5
    out = bucc_optimize(_cands(("a", "A", np.float32(0.75)), ("b", "B", np.float32(0.25))), {"a\tA"})
    assert out["threshold"] == 0.5
