"""Extractive QA metrics: the SQuAD v1.1 evaluator (XQuAD, TyDiQA-GoldP) and the MLQA
evaluator (language-aware normalisation), as used by ``evaluate.py`` (google-research/xtreme's
``third_party/evaluate_squad.py`` and ``third_party/evaluate_mlqa.py``).

Scores are on a 0-100 scale. Re-implemented from the documented behaviour; the normalisers are
public so that tests and diagnostics can call them directly.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from xlrepro.tasks.registry import get_task

from ._common import CORRECTED, OFFICIAL, add_note, check_mode

# --------------------------------------------------------------------------- SQuAD v1.1

_ASCII_PUNCT = frozenset(string.punctuation)
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize_answer(text: str) -> str:
    """The SQuAD v1.1 normaliser, applied in every language by XQuAD/TyDiQA scoring.

    Steps (``evaluate_squad.normalize_answer``): ``str.lower()``; delete ASCII ``string.punctuation`` only
    (so ``“ ” « » ¿ ¡ 。 ， 、 ’ —`` stay, and ``state-of-the-art`` becomes ``stateoftheart``);
    replace the regex ``\\b(a|an|the)\\b`` by a space (so ``“the”`` loses ``the``, and NFD
    words can lose letters next to combining marks); collapse whitespace with ``str.split()``.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    text = _EN_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _token_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """Bag-of-tokens F1 (0-1); 0 when there is no common token, including when both are empty."""
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def _iter_questions(dataset, func: str):
    """Yield (qid, gold answer texts) in dataset order; validate the SQuAD structure."""
    if isinstance(dataset, Mapping) and "data" in dataset:
        dataset = dataset["data"]
    if not isinstance(dataset, (list, tuple)):
        raise ValueError(f"{func}: dataset must be the SQuAD 'data' list of articles, got {type(dataset).__name__}")
    for a, article in enumerate(dataset):
        try:
            paragraphs = article["paragraphs"]
        except (KeyError, TypeError):
            raise ValueError(f"{func}: article {a} has no 'paragraphs' list") from None
        for p, paragraph in enumerate(paragraphs):
            try:
                qas = paragraph["qas"]
            except (KeyError, TypeError):
                raise ValueError(f"{func}: article {a} paragraph {p} has no 'qas' list") from None
            for qa in qas:
                try:
                    qid, answers = qa["id"], qa["answers"]
                    golds = [ans["text"] for ans in answers]
                except (KeyError, TypeError):
                    raise ValueError(
                        f"{func}: article {a} paragraph {p}: a question lacks 'id' or 'answers' with 'text'"
                    ) from None
                if not golds:
                    raise ValueError(
                        f"{func}: question {qid!r} has no gold answers (the official evaluator fails "
                        "with ValueError from max() of an empty sequence)"
                    )
                yield qid, golds


def _score_dataset(
    predictions: Mapping[str, str], dataset, normalize: Callable[[str], str], func: str, mode: str
) -> dict:
    if not isinstance(predictions, Mapping):
        raise ValueError(
            f"{func}: predictions must be a dict question id -> answer text, got {type(predictions).__name__}"
        )
    exact_match = 0
    f1 = 0.0
    total = 0
    unanswered = 0
    for qid, golds in _iter_questions(dataset, func):
        total += 1
        if qid not in predictions:
            unanswered += 1  # the official script prints a message and scores 0
            continue
        prediction = predictions[qid]
        if not isinstance(prediction, str):
            raise ValueError(f"{func}: prediction for {qid!r} is not a string: {prediction!r}")
        norm_pred = normalize(prediction)
        pred_tokens = norm_pred.split()
        norm_golds = [normalize(g) for g in golds]
        exact_match += max(norm_pred == g for g in norm_golds)
        f1 += max(_token_f1(pred_tokens, g.split()) for g in norm_golds)
    if total == 0:
        raise ValueError(f"{func}: the dataset has no questions (the official evaluator divides by zero)")
    return {
        "exact_match": 100.0 * exact_match / total,
        "f1": 100.0 * f1 / total,
        "mode": mode,
        "n_questions": total,
        "n_unanswered": unanswered,
    }


def squad_scores(predictions: Mapping[str, str], dataset: Sequence[dict], mode: str = OFFICIAL) -> dict:
    """The SQuAD v1.1 evaluator (XQuAD and TyDiQA-GoldP in every language).

    Args:
        predictions: question id -> predicted answer text.
        dataset: the SQuAD ``data`` list (articles -> ``paragraphs`` -> ``qas`` -> ``answers``
            with ``text``); a dict with a ``data`` key is accepted too.
        mode: ``"official"`` or ``"corrected"``; identical (the English normaliser for every
            language is the benchmark's definition: ``evaluate.py`` scores XQuAD and TyDiQA
            with ``evaluate_squad``).

    Returns:
        ``{"exact_match", "f1"}`` (0-100), ``"mode"``, ``"n_questions"``, ``"n_unanswered"``.

    Quirks reproduced: :func:`squad_normalize_answer`; EM and F1 are each maxed over the gold
    answers independently; F1 is 0 when either side normalises to empty (pred ``The`` vs gold
    ``a``: EM 1, F1 0); an unanswered question counts 0 in the denominator; prediction ids not
    in the dataset are ignored.

    Raises:
        ValueError: no questions (official: ``ZeroDivisionError``); a question with no answers
            (official: ``ValueError`` from ``max``); malformed structure; non-string prediction.
    """
    check_mode(mode, "squad_scores")
    return _score_dataset(predictions, dataset, squad_normalize_answer, "squad_scores", mode)


# --------------------------------------------------------------------------- MLQA

MLQA_LANGUAGES = ("en", "es", "hi", "vi", "de", "ar", "zh")

_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
}
# Corrected Arabic rule: drop the article "ال" only at the start of a whitespace-delimited word.
_AR_WORD_INITIAL_ARTICLE = re.compile(r"(^|\s)ال")


def is_mlqa_punctuation(ch: str) -> bool:
    """True for the characters the MLQA evaluator deletes: every code point whose Unicode
    category starts with ``P`` (per this Python's ``unicodedata``) plus ASCII
    ``string.punctuation`` (which adds the symbols ``$ + < = > ^ ` | ~``). Symbols such as
    ``€ ° © ＄ ×`` are kept (``evaluate_mlqa.PUNCT``)."""
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _is_mixed_segmentation_char(ch: str) -> bool:
    # Only U+4E00..U+9FA5 (not U+9FA6..U+9FFF, not extension A, not U+3007): evaluate_mlqa's regex.
    return "\u4e00" <= ch <= "\u9fa5"


def mlqa_mixed_segmentation(text: str) -> list[str]:
    """MLQA's Chinese tokeniser: each character in U+4E00-U+9FA5 (or punctuation, which is
    already gone when this runs) is its own token; everything else is whitespace-split in runs.
    ``二〇〇八年`` -> ``二 | 〇〇 | 八 | 年``; ``東京のの`` -> ``東 | 京 | のの``."""
    tokens: list[str] = []
    run = ""
    for ch in text:
        if _is_mixed_segmentation_char(ch) or is_mlqa_punctuation(ch):
            if run:
                tokens.extend(run.split())
                run = ""
            tokens.append(ch)
        else:
            run += ch
    if run:
        tokens.extend(run.split())
    return tokens


def _check_mlqa_lang(lang: str, func: str) -> None:
    if lang not in MLQA_LANGUAGES:
        raise ValueError(
            f"{func}: unknown MLQA language {lang!r}; the MLQA evaluator accepts only "
            f"{', '.join(MLQA_LANGUAGES)} (officially it raises Exception('Unknown Language ...'))"
        )


def mlqa_normalize_answer(text: str, lang: str, mode: str = OFFICIAL) -> str:
    """The MLQA normaliser (``evaluate_mlqa.normalize_answer``).

    Steps: ``lower()``; delete :func:`is_mlqa_punctuation` characters; remove articles per
    language (en ``a an the``; es ``un una unos unas el la los las``; de ``ein eine einen einem
    eines einer der die das den dem des``; vi ``của là cái chiếc những`` - composed forms only,
    so NFD ``của`` survives; hi, zh none); Arabic: officially every ``ال`` anywhere, inside
    words too, becomes a space (``مالك`` -> ``م ك``), in ``"corrected"`` mode only a
    word-initial ``ال`` is removed (``العالمية`` -> ``عالمية``, ``مالك`` unchanged); then zh
    is tokenised by :func:`mlqa_mixed_segmentation` and the others by ``str.split()``, and the
    tokens are joined with single spaces.

    Raises:
        ValueError: a language outside en es hi vi de ar zh.
    """
    check_mode(mode, "mlqa_normalize_answer")
    _check_mlqa_lang(lang, "mlqa_normalize_answer")
    text = text.lower()
    text = "".join(ch for ch in text if not is_mlqa_punctuation(ch))
    if lang in _MLQA_ARTICLES:
        text = _MLQA_ARTICLES[lang].sub(" ", text)
    elif lang == "ar":
        if mode == CORRECTED:
            text = _AR_WORD_INITIAL_ARTICLE.sub(r"\1", text)
        else:
            # Official regex '\sال^|ال': the first alternative can never match, so this is
            # "replace every ال by a space".
            text = text.replace("ال", " ")
    tokens = mlqa_mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip() != "")


def mlqa_scores(predictions: Mapping[str, str], dataset: Sequence[dict], lang: str, mode: str = OFFICIAL) -> dict:
    """The MLQA evaluator with language-specific normalisation (used by ``evaluate.py`` for the
    ``mlqa`` task with the test file's language).

    Args:
        predictions: question id -> predicted answer text.
        dataset: the SQuAD-format ``data`` list (a dict with ``data`` is accepted too).
        lang: one of en es hi vi de ar zh (the context language).
        mode: ``"official"`` reproduces the evaluator; ``"corrected"`` removes the Arabic
            article only at the start of a word.

    Returns:
        ``{"exact_match", "f1"}`` (0-100), ``"mode"``, ``"lang"``, ``"n_questions"``,
        ``"n_unanswered"``, ``"unicode_version"`` (the punctuation set depends on it) and, for
        Arabic in corrected mode, a ``"note"``.

    Quirks reproduced: see :func:`mlqa_normalize_answer`; dataset-level rules as in
    :func:`squad_scores` (max over golds, unanswered = 0, extra ids ignored, F1 0 on empty).
    ``北京市`` vs ``北京`` scores F1 0.8 here (0 under SQuAD rules).

    Raises:
        ValueError: unknown language (official mode: when the first answer is normalised, as in
            the official code, so a dataset without a single predicted question still scores 0;
            corrected mode: up front), no questions, a question without answers.
    """
    check_mode(mode, "mlqa_scores")
    if mode == CORRECTED:
        _check_mlqa_lang(lang, "mlqa_scores")
    result = _score_dataset(predictions, dataset, lambda s: mlqa_normalize_answer(s, lang, mode), "mlqa_scores", mode)
    result["lang"] = lang
    result["unicode_version"] = unicodedata.unidata_version
    if mode == CORRECTED and lang == "ar":
        add_note(result, "corrected: only word-initial 'ال' is removed (official removes it inside words too)")
    return result


def _v2_tokens(text: str) -> list[str]:
    return squad_normalize_answer(text).split() if text else []


def _v2_f1(gold: str, pred: str) -> float:
    g, p = _v2_tokens(gold), _v2_tokens(pred)
    if not g or not p:  # unanswerable gold or empty prediction: 1 only if both are empty
        return float(g == p)
    return _token_f1(p, g)


def squad_v2_scores(predictions: Mapping[str, str], dataset: Sequence[dict], mode: str = OFFICIAL) -> dict:
    """The official SQuAD v2.0 evaluation (``evaluate-v2.0.py`` without a no-answer-probability file).

    Gold answers are the answers whose text normalises to something non-empty; a question with
    none is unanswerable and its only gold is ``""``. EM compares normalised strings; F1 is the
    bag-of-tokens F1, and 1 or 0 when either side is empty (1 only if both are). The empty string
    is the "no answer" prediction.

    ``official``: a question without a prediction is left out of the averages (the official
    script prints "Missing prediction" and averages over the predicted questions).
    ``corrected``: it counts as 0. Returns ``exact_match``, ``f1`` (0-100), ``total``,
    ``HasAns_*`` / ``NoAns_*`` breakdowns where present, ``n_missing``, ``mode``.
    """
    check_mode(mode, "squad_v2_scores")
    rows = []  # (has_answer, exact, f1)
    missing = 0
    for article in dataset:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                golds = [a["text"] for a in qa.get("answers", []) if squad_normalize_answer(a["text"])] or [""]
                if qa["id"] not in predictions:
                    missing += 1
                    if mode == OFFICIAL:
                        continue
                    rows.append((golds != [""], 0.0, 0.0))
                    continue
                pred = predictions[qa["id"]]
                em = max(float(squad_normalize_answer(g) == squad_normalize_answer(pred)) for g in golds)
                f1 = max(_v2_f1(g, pred) for g in golds)
                rows.append((golds != [""], em, f1))
    if not rows:
        raise ValueError("squad_v2_scores: no question was scored (empty dataset or no predictions)")
    out = {
        "exact_match": 100.0 * sum(r[1] for r in rows) / len(rows),
        "f1": 100.0 * sum(r[2] for r in rows) / len(rows),
        "total": len(rows),
        "n_missing": missing,
        "mode": mode,
    }
    for name, flag in (("HasAns", True), ("NoAns", False)):
        part = [r for r in rows if r[0] == flag]
        if part:
            out[f"{name}_exact_match"] = 100.0 * sum(r[1] for r in part) / len(part)
            out[f"{name}_f1"] = 100.0 * sum(r[2] for r in part) / len(part)
            out[f"{name}_total"] = len(part)
    return out


def qa_score(
    predictions: Mapping[str, str], dataset: Sequence[dict], task: str, lang: str, mode: str = OFFICIAL
) -> dict:
    """Dispatch like ``evaluate.py``, on the task's ``evaluator`` in the registry: ``qa_mlqa`` (MLQA)
    -> :func:`mlqa_scores` with ``lang``; ``qa_squad_v2`` -> :func:`squad_v2_scores`; ``qa_squad``
    (xquad, tydiqa, squad, ...) -> :func:`squad_scores` (``lang`` unused, English normalisation). Returns
    that function's dict. ValueError for a task whose evaluator is not a QA scorer."""
    evaluator = get_task(task).evaluator
    if evaluator == "qa_mlqa":
        return mlqa_scores(predictions, dataset, lang, mode)
    if evaluator == "qa_squad_v2":
        return squad_v2_scores(predictions, dataset, mode)
    if evaluator == "qa_squad":
        return squad_scores(predictions, dataset, mode)
    raise ValueError(f"qa_score: task {task!r} is scored by {evaluator!r}, not a QA scorer")
