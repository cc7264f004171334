"""Language-agnostic retrieval metrics of XTREME-R: LAReQA mAP@20 (``third_party/utils_lareqa.py``)
and Mewsli-X "map@20" = MRR@20 (``third_party/utils_mewslix.py``) of google-research/xtreme.

Dict results are on a 0-100 scale; :func:`average_precision_at_k` returns one question's AP
on the 0-1 scale like its official counterpart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ._common import CORRECTED, OFFICIAL, add_note, check_mode


def _map_key(k: int | None) -> str:
    return f"map@{k}" if k else "map"


def average_precision_at_k(
    ranked: Sequence[int | str], targets: Iterable, k: int | None = 20, mode: str = OFFICIAL
) -> float:
    """Average precision at k of one ranking (``utils_lareqa.average_precision_at_k``).

    Args:
        ranked: candidate ids, best first.
        targets: the relevant ids.
        k: cutoff; ``0`` or ``None`` means **no cutoff** (the official ``if k:`` test).
        mode: ``"official"``: the divisor counts ``targets`` as given, duplicates included, as
            the official ``len(targets)`` does (``targets = [a, a]`` with ``a`` ranked first
            gives 1/2); a negative k cuts ``ranked[:k]`` and divides by ``min(len, k)`` as the
            official code does. ``"corrected"``: duplicate targets count once; a negative k is
            an error.

    Returns:
        AP on a 0-1 scale: the sum of precision@rank at each *first* occurrence of a relevant id
        within the top k (a duplicate still uses up a rank), divided by ``min(len(targets), k)``
        (``len(targets)`` when there is no cutoff).

    Raises:
        ValueError: empty targets (official ``ZeroDivisionError``); in corrected mode a
            negative k.
    """
    check_mode(mode, "average_precision_at_k")
    targets = list(targets)
    target_set = set(targets)
    if mode == CORRECTED:
        targets = list(dict.fromkeys(targets))
        if k is not None and k < 0:
            raise ValueError(f"average_precision_at_k: k must be >= 0 (0 = no cutoff), got {k}")
    if not targets:
        raise ValueError("average_precision_at_k: empty targets (the official code divides by zero)")
    ranked = list(ranked)
    if k:
        ranked = ranked[:k]
    score = 0.0
    hits = 0.0
    seen = set()
    for i, pred in enumerate(ranked):
        if pred in target_set and pred not in seen:
            hits += 1.0
            score += hits / (i + 1.0)
        seen.add(pred)
    divisor = min(len(targets), k) if k else len(targets)
    return score / divisor


def xling_set(value) -> frozenset:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset([value])
    return frozenset(value)


def lareqa_map_at_k(
    question_embeddings,
    candidate_embeddings,
    question_xling_ids: Sequence[str],
    candidate_xling_ids: Sequence[str | Iterable[str] | None],
    k: int | None = 20,
    mode: str = OFFICIAL,
) -> dict:
    """LAReQA mean average precision at k (``utils_lareqa.mean_avg_prec_at_k``).

    Args:
        question_embeddings: array ``(n_questions, dim)``; all questions of all languages.
        candidate_embeddings: array ``(n_candidates, dim)``; the pooled candidate sentences of
            all languages.
        question_xling_ids: the cross-lingual id of each question.
        candidate_xling_ids: for each candidate, the xling id(s) whose answer it is: a string,
            an iterable of strings (one sentence can answer several questions), or ``None``.
        k: cutoff (20 in XTREME-R); 0/None = no cutoff.
        mode: ordering of the scores, see below.

    Returns:
        ``{"map@<k>": 0-100, "mode", "n_questions", "n_candidates", "tie_order"}``.

    Official behaviour reproduced: scores are raw dot products (no normalisation), computed as
    ``np.expand_dims(q, 0).dot(C.T)`` in the arrays' own dtype (pass float32 encodings, as the
    official code has, for bit-identical scores); relevant candidates are all answers with the
    question's xling id in every language; the result is ``np.mean`` over all questions of all
    languages pooled (not a per-language macro average), times 100. The ranking in
    ``"official"`` mode is ``np.squeeze(scores).argsort()[::-1]`` - numpy's default (unstable)
    sort, reversed, so the order of tied scores is whatever this numpy does.
    ``"corrected"`` ranks with a stable sort on the negated scores: ties keep the lowest
    candidate index first.

    Raises:
        ValueError: empty input; shape/length mismatches; a question with no relevant candidate
            (the official code divides by zero).
    """
    check_mode(mode, "lareqa_map_at_k")
    Q = np.asarray(question_embeddings)
    C = np.asarray(candidate_embeddings)
    if Q.ndim != 2 or C.ndim != 2:
        raise ValueError(f"lareqa_map_at_k: embeddings must be 2-D, got shapes {Q.shape} and {C.shape}")
    if Q.shape[0] == 0 or C.shape[0] == 0:
        raise ValueError("lareqa_map_at_k: empty input (no questions or no candidates)")
    if Q.shape[1] != C.shape[1]:
        raise ValueError(f"lareqa_map_at_k: question dim {Q.shape[1]} != candidate dim {C.shape[1]}")
    if len(question_xling_ids) != Q.shape[0]:
        raise ValueError(f"lareqa_map_at_k: {len(question_xling_ids)} question ids for {Q.shape[0]} questions")
    if len(candidate_xling_ids) != C.shape[0]:
        raise ValueError(f"lareqa_map_at_k: {len(candidate_xling_ids)} candidate ids for {C.shape[0]} candidates")
    by_xling: dict[str, list[int]] = {}
    for c, value in enumerate(candidate_xling_ids):
        for x in xling_set(value):
            by_xling.setdefault(x, []).append(c)
    ap_scores = []
    for qi, xling_id in enumerate(question_xling_ids):
        targets = by_xling.get(xling_id)
        if not targets:
            raise ValueError(f"lareqa_map_at_k: question {qi} (xling id {xling_id!r}) has no relevant candidate")
        scores = np.squeeze(np.expand_dims(Q[qi], 0).dot(C.T), axis=0)
        if mode == OFFICIAL:
            ranking = scores.argsort()[::-1]
        else:
            ranking = np.argsort(-scores, kind="stable")
        ap_scores.append(average_precision_at_k(ranking.tolist(), targets, k))
    tie_order = (
        "numpy default argsort()[::-1] (unstable; tie order is numpy's)"
        if mode == OFFICIAL
        else "stable descending: lowest candidate index first"
    )
    return {
        _map_key(k): float(np.mean(ap_scores)) * 100,
        "mode": mode,
        "n_questions": int(Q.shape[0]),
        "n_candidates": int(C.shape[0]),
        "tie_order": tie_order,
    }


def mewslix_map_at_k(
    predictions: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[str]], k: int = 20, mode: str = OFFICIAL
) -> dict:
    """Mewsli-X "map@20", which is MRR@k over a single gold entity (``utils_mewslix.evaluate``).

    Args:
        predictions: example id -> ranked list of predicted entity ids.
        gold: example id -> list of gold entity ids (only the first is used).
        k: number of predictions considered (20 in XTREME-R).
        mode: ``"official"``: the gold is the *first* element, ``strip()``ped; predictions are
            **not** stripped (``" Q1"`` never matches ``Q1``). ``"corrected"``: predictions are
            stripped too.

    Returns:
        ``{"map@<k>": 0-100, "mode", "n_gold", "n_missing", "n_unexpected"}``: the mean over
        gold examples of 1/rank of the first exact match in the top k (0 if none); a missing
        prediction scores 0; prediction ids not in gold are ignored (counted in
        ``n_unexpected``).

        An empty gold scores 0.0 in official mode, as the official code does. Official mode also
        scores what the official code scores from odd input, with a ``"note"``: a gold value that
        is a string counts by its first character (``labels[0]``), a prediction that is a string
        by its characters.

    Raises:
        ValueError: a gold example with an empty list or a non-string first element (officially
            ``IndexError`` / ``AttributeError``), a prediction that is not a list (officially a
            ``TypeError``; a string is allowed in official mode, see above); in corrected mode
            also an empty gold and string gold values or predictions.
    """
    check_mode(mode, "mewslix_map_at_k")
    notes: list = []
    rrs, missing, unexpected = _mewslix_rr(predictions, gold, k, mode, notes)
    mrr = sum(rrs) / len(rrs) if rrs else 0.0
    out = {_map_key(k): mrr * 100, "mode": mode, "n_gold": len(gold), "n_missing": missing, "n_unexpected": unexpected}
    if not rrs:
        notes.append("empty gold: the official code scores 0.0")
    if notes:
        out["note"] = notes
    return out


def mewslix_reciprocal_ranks(
    predictions: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[str]], k: int = 20, mode: str = OFFICIAL
) -> list[float]:
    """Per-mention terms of :func:`mewslix_map_at_k`, in ``gold``'s order: 1/rank of the first exact
    match of the gold entity in the top k, 0 if none or if the prediction is missing (0-1 scale; the
    official value is their mean x 100). Same rules and errors as :func:`mewslix_map_at_k`."""
    check_mode(mode, "mewslix_reciprocal_ranks")
    return _mewslix_rr(predictions, gold, k, mode)[0]


def _mewslix_mrr(predictions, gold, k, mode):
    """(MRR on 0-1, n_missing, n_unexpected) - the unscaled official value: ``sum()`` of the
    reciprocal ranks over their count, 0.0 for an empty gold (``mean_reciprocal_rank``)."""
    rrs, missing, unexpected = _mewslix_rr(predictions, gold, k, mode)
    mrr = sum(rrs) / len(rrs) if rrs else 0.0
    return mrr, missing, unexpected


def _mewslix_gold_id(example_id, labels, mode: str, notes: list):
    """``labels[0].strip()`` as the official code takes it, or a ValueError where that fails."""
    if mode == OFFICIAL and isinstance(labels, str) and labels:
        notes.append(
            f"gold for {example_id!r} is the string {labels!r}, not a list: the official code "
            f"takes its first character {labels[0]!r} as the gold entity"
        )
        return labels[0].strip()
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) == 0:
        raise ValueError(
            f"mewslix_map_at_k: gold for {example_id!r} must be a non-empty list, got {labels!r} "
            "(the official code fails on it too)"
        )
    if not isinstance(labels[0], str):
        raise ValueError(
            f"mewslix_map_at_k: gold for {example_id!r} must start with an entity id string, got "
            f"{labels[0]!r} (the official code fails on it too)"
        )
    return labels[0].strip()


def _mewslix_rr(predictions, gold, k, mode, notes=None):
    """(per-mention reciprocal ranks in gold order, n_missing, n_unexpected).

    Official mode follows ``utils_mewslix.evaluate`` for every input it scores: an empty gold
    gives no terms (MRR 0.0); a prediction given as a string is cut to its first k characters,
    each compared with the gold id. Corrected mode refuses both and strips predictions."""
    notes = [] if notes is None else notes
    if not isinstance(gold, Mapping) or not isinstance(predictions, Mapping):
        raise ValueError("mewslix_map_at_k: predictions and gold must be dicts example_id -> list of entity ids")
    if len(gold) == 0 and mode == CORRECTED:
        raise ValueError(
            "mewslix_map_at_k: empty gold (nothing to score; mode 'official' returns 0.0 as the official code does)"
        )
    gold_ids = {example_id: _mewslix_gold_id(example_id, labels, mode, notes) for example_id, labels in gold.items()}
    rrs = []
    missing = 0
    for example_id, gold_id in gold_ids.items():
        if example_id not in predictions:
            missing += 1
        preds = predictions.get(example_id, [])
        if isinstance(preds, str) and mode == OFFICIAL:
            notes.append(
                f"prediction for {example_id!r} is a string, not a list: the official code compares "
                "its first k characters one by one with the gold id"
            )
        elif isinstance(preds, str) or not isinstance(preds, Sequence):
            raise ValueError(f"mewslix_map_at_k: prediction for {example_id!r} must be a list of ids, got {preds!r}")
        rr = 0.0
        for rank, p in enumerate(preds[:k], start=1):
            if (p.strip() if mode == CORRECTED and isinstance(p, str) else p) == gold_id:
                rr = 1.0 / rank
                break
        rrs.append(rr)
    unexpected = len(set(predictions) - set(gold))
    return rrs, missing, unexpected


def mewslix_evaluate_all(
    per_lang_predictions: Mapping[str, Mapping[str, Sequence[str]] | None],
    per_lang_gold: Mapping[str, Mapping[str, Sequence[str]]],
    languages: Sequence[str],
    k: int = 20,
    mode: str = OFFICIAL,
) -> dict:
    """Macro-average of :func:`mewslix_map_at_k` over ``languages`` (``utils_mewslix.evaluate_all``).

    Args:
        per_lang_predictions: language -> predictions dict; a language that is absent (or
            ``None``) is scored with no predictions, i.e. 0 (a missing prediction file).
        per_lang_gold: language -> gold dict; every listed language must be present.
        languages: the mention languages (the registry's list; 11 in XTREME-R).
        k, mode: as in :func:`mewslix_map_at_k`.

    Returns:
        ``{"map@<k>": macro average 0-100, "per_language": {lang: value}, "mode",
        "missing_prediction_languages": [...]}``. Languages are summed in sorted order as the
        official loop does, then divided by their count.

    Raises:
        ValueError: no languages; a listed language without gold (official: ``FileNotFoundError``).
    """
    check_mode(mode, "mewslix_evaluate_all")
    if len(languages) == 0:
        raise ValueError("mewslix_evaluate_all: no languages")
    absent = [lang for lang in languages if lang not in per_lang_gold]
    if absent:
        raise ValueError(f"mewslix_evaluate_all: no gold for language(s) {', '.join(absent)}")
    key = _map_key(k)
    per_language: dict[str, float] = {}
    missing_langs = []
    total = 0.0
    for lang in sorted(languages):
        preds = per_lang_predictions.get(lang)
        if preds is None:
            preds = {}
            missing_langs.append(lang)
        mrr = _mewslix_mrr(preds, per_lang_gold[lang], k, mode)[0]
        per_language[lang] = mrr * 100
        total += mrr
    result = {
        key: total / len(languages) * 100,
        "per_language": per_language,
        "mode": mode,
        "missing_prediction_languages": missing_langs,
    }
    if missing_langs:
        add_note(result, f"no predictions for {', '.join(missing_langs)}: scored 0")
    return result
