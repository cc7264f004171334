"""Golden tests for the SQuAD v1.1 and MLQA evaluators (google-research/xtreme
``third_party/evaluate_squad.py`` and ``third_party/evaluate_mlqa.py``; docs/metrics.md).

The ``evaluate`` package's SQuAD metric cannot serve as a differential reference here: its wheel
ships no metric scripts and ``evaluate.load("squad")`` fetches one from the Hugging Face Hub, so
the expected values below are worked out by hand from the official scripts' steps."""

import json
import os
import unicodedata

import pytest
from conftest import SAMPLES  # noqa: E402

from xlrepro.metrics import (
    mlqa_mixed_segmentation,
    mlqa_normalize_answer,
    mlqa_scores,
    qa_score,
    squad_normalize_answer,
    squad_scores,
)


def _dataset(*questions):
    """SQuAD 'data' list with one paragraph holding (id, [gold texts]) questions."""
    qas = [
        {"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
        for qid, golds in questions
    ]
    return [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]


# ----------------------------------------------------------------- SQuAD normaliser


def test_hyphens_are_deleted_not_spaced():
    # '-' is ASCII punctuation and is deleted: 'stateoftheart' has no \bthe\b left
    assert squad_normalize_answer("state-of-the-art") == "stateoftheart"
    # with spaces, 'the' is an article: 'state of  art' -> collapsed
    assert squad_normalize_answer("state of the art") == "state of art"


def test_curly_quotes_kept_and_the_inside_them_removed():
    # “ and ” are not ASCII punctuation and not word characters, so \bthe\b matches inside
    assert squad_normalize_answer("“the”") == "“ ”"
    # other non-ASCII punctuation survives as well
    assert squad_normalize_answer("¿Qué? «sí» 。") == "¿qué «sí» 。"


def test_nfd_combining_marks_break_words():
    # NFD Théâtre = T h e U+0301 a U+0302 t r e; lower -> 'the' + U+0301 ...: the combining mark is
    # not a word character, so \bthe\b and then \ba\b fire -> ' U+0301 U+0302tre'
    nfd = unicodedata.normalize("NFD", "Théâtre")
    assert squad_normalize_answer(nfd) == "\u0301 \u0302tre"


def test_whitespace_and_case_rules():
    assert squad_normalize_answer("x\u00a0y") == "x y"  # NBSP splits
    assert squad_normalize_answer("x\u3000y") == "x y"  # ideographic space splits
    assert squad_normalize_answer("x\u200by") == "x\u200by"  # ZWSP does not
    assert squad_normalize_answer("İstanbul") != "istanbul"  # İ lowers to i + U+0307
    assert squad_normalize_answer("Straße") != squad_normalize_answer("STRASSE")  # ß stays


def test_squad_dataset_level_rules():
    data = _dataset(
        ("q1", ["a", "the dog"]),  # pred 'The': '' == '' -> EM 1; F1 0 vs both ('' and 'dog')
        ("q2", ["big cat", "cat"]),  # pred 'big cat sat': EM 0; F1 max(0.8, 0.5) = 0.8
        ("q3", ["x"]),  # unanswered -> 0 / 0
    )
    # q2 F1 vs 'big cat': common 2, P = 2/3, R = 1 -> 0.8; vs 'cat': P = 1/3, R = 1 -> 0.5
    preds = {"q1": "The", "q2": "big cat sat", "zzz": "ignored"}
    out = squad_scores(preds, data)
    assert out["exact_match"] == pytest.approx(100 / 3)  # 1 of 3
    assert out["f1"] == pytest.approx(100 * 0.8 / 3)  # (0 + 0.8 + 0) / 3
    assert out["n_questions"] == 3 and out["n_unanswered"] == 1
    assert out["mode"] == "official"
    # a dict with a 'data' key is accepted too
    assert squad_scores(preds, {"data": data})["exact_match"] == pytest.approx(100 / 3)


def test_squad_f1_zero_when_both_sides_empty():
    out = squad_scores({"q": "The"}, _dataset(("q", ["a"])))
    assert out["exact_match"] == pytest.approx(100.0)
    assert out["f1"] == 0.0


def test_squad_bad_input():
    with pytest.raises(ValueError, match="no questions"):
        squad_scores({}, [])
    with pytest.raises(ValueError, match="no gold answers"):
        squad_scores({"q": "x"}, _dataset(("q", [])))
    with pytest.raises(ValueError, match="not a string"):
        squad_scores({"q": ["x"]}, _dataset(("q", ["x"])))


# ----------------------------------------------------------------- MLQA normaliser


def test_zh_mixed_segmentation_gives_partial_credit():
    # MLQA: 北京市 -> 北 京 市, 北京 -> 北 京: common 2, P = 2/3, R = 1 -> F1 = (4/3)/(5/3) = 0.8
    data = _dataset(("q", ["北京"]))
    out = mlqa_scores({"q": "北京市"}, data, "zh")
    assert out["f1"] == pytest.approx(80.0)
    assert out["exact_match"] == 0.0
    # SQuAD rules: one token each, different -> F1 0
    assert squad_scores({"q": "北京市"}, data)["f1"] == 0.0


def test_zh_segmentation_range():
    # only U+4E00..U+9FA5 are split per character; 〇 (U+3007) and kana stay in whitespace runs
    assert mlqa_mixed_segmentation("二〇〇八年") == ["二", "〇〇", "八", "年"]
    assert mlqa_normalize_answer("東京のの", "zh") == "東 京 のの"
    # full-width digits are not ASCII digits
    assert mlqa_normalize_answer("２００８年", "zh") == "２００８ 年"
    assert mlqa_normalize_answer("２００８年", "zh") != mlqa_normalize_answer("2008年", "zh")


def test_arabic_al_removed_everywhere_officially():
    # every ال becomes a space, inside words too
    assert mlqa_normalize_answer("مالك", "ar") == "م ك"
    assert mlqa_normalize_answer("سؤال", "ar") == "سؤ"
    assert mlqa_normalize_answer("والد", "ar") == "و د"
    assert mlqa_normalize_answer("العالمية", "ar") == "ع مية"
    # so the prediction مالك exactly matches the gold 'م ك'
    data = _dataset(("q", ["م ك"]))
    assert mlqa_scores({"q": "مالك"}, data, "ar")["exact_match"] == pytest.approx(100.0)


def test_arabic_corrected_removes_only_word_initial_article():
    assert mlqa_normalize_answer("العالمية", "ar", "corrected") == "عالمية"
    assert mlqa_normalize_answer("مالك", "ar", "corrected") == "مالك"
    assert mlqa_normalize_answer("في البيت", "ar", "corrected") == "في بيت"
    out = mlqa_scores({"q": "مالك"}, _dataset(("q", ["م ك"])), "ar", "corrected")
    assert out["exact_match"] == 0.0 and out["mode"] == "corrected" and "note" in out


def test_articles_per_language():
    # es: el, la removed; del / al kept
    assert mlqa_normalize_answer("El perro de la casa", "es") == "perro de casa"
    assert mlqa_normalize_answer("del mar al sol", "es") == "del mar al sol"
    # de
    assert mlqa_normalize_answer("Der Hund und die Katze", "de") == "hund und katze"
    # vi: của and là are "articles"
    assert mlqa_normalize_answer("của tôi là", "vi") == "tôi"
    # NFD của does not match the composed pattern
    nfd = unicodedata.normalize("NFD", "của")
    assert mlqa_normalize_answer(nfd, "vi") == nfd
    # en
    assert mlqa_normalize_answer("The cat", "en") == "cat"
    # hi and zh: no article removal
    assert mlqa_normalize_answer("the cat", "hi") == "the cat"


def test_mlqa_punctuation_is_unicode_p_plus_ascii():
    # removed: ¿ ? « » (P*), $ + (ASCII string.punctuation); kept: € ° × (symbols)
    assert mlqa_normalize_answer("¿Qué? «x» €5 10° 2×3 $4 a+b", "es") == "qué x €5 10° 2×3 4 ab"
    # SQuAD removes only ? $ +
    assert squad_normalize_answer("¿Qué? «x» €5 10° 2×3 $4 a+b") == "¿qué «x» €5 10° 2×3 4 ab"


def test_mlqa_unknown_language():
    with pytest.raises(ValueError, match="unknown MLQA language 'fr'"):
        mlqa_scores({"q": "x"}, _dataset(("q", ["x"])), "fr")
    with pytest.raises(ValueError, match="unknown MLQA language 'fr'"):
        mlqa_scores({}, _dataset(("q", ["x"])), "fr", "corrected")
    # official evaluate_mlqa.evaluate normalises only answers of predicted questions, so the
    # 'Unknown Language' exception never fires when no question has a prediction: the unanswered
    # question counts 0 -> EM = F1 = 100 * 0 / 1 = 0.0
    out = mlqa_scores({"other": "x"}, _dataset(("q", ["x"])), "fr")
    assert (out["exact_match"], out["f1"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="unknown MLQA language"):
        mlqa_normalize_answer("x", "EN")


def test_qa_score_dispatch():
    data = _dataset(("q", ["北京"]))
    assert qa_score({"q": "北京市"}, data, "mlqa", "zh")["f1"] == pytest.approx(80.0)
    assert qa_score({"q": "北京市"}, data, "xquad", "zh")["f1"] == 0.0
    assert qa_score({"q": "北京市"}, data, "tydiqa", "zh")["f1"] == 0.0


# ----------------------------------------------------------------- real samples (smoke)

_SAMPLES = str(SAMPLES)  # ../shared/data-samples, else tests/fixtures/data-samples


def _gold_as_predictions(data):
    return {qa["id"]: qa["answers"][0]["text"] for art in data for par in art["paragraphs"] for qa in par["qas"]}


@pytest.mark.parametrize("lang", ["en", "es", "de", "ar", "hi", "vi", "zh"])
def test_real_mlqa_dev_gold_as_prediction_is_exact(lang):
    path = os.path.join(_SAMPLES, "mlqa", "MLQA_V1", "dev", f"dev-context-{lang}-question-{lang}.json")
    if not os.path.exists(path):
        pytest.skip("shared data samples not available")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"]
    preds = _gold_as_predictions(data)
    # each prediction equals one of its golds, so EM = 100 under both normalisers
    assert mlqa_scores(preds, data, lang)["exact_match"] == pytest.approx(100.0)
    assert squad_scores(preds, data)["exact_match"] == pytest.approx(100.0)
