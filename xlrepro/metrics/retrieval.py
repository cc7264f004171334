"""Language-agnostic retrieval metrics of XTREME-R: LAReQA mAP@20 (``third_party/utils_lareqa.py``)
and Mewsli-X "map@20" = MRR@20 (``third_party/utils_mewslix.py``), scorers.md F1-F3, G1-G2.

Dict results are on a 0-100 scale; :func:`average_precision_at_k` returns one question's AP
on the 0-1 scale like its official counterpart.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from ._common import CORRECTED, OFFICIAL, add_note, check_mode


def _map_key(k: Optional[int]) -> str:
    return f"map@{k}" if k else "map"


def average_precision_at_k(ranked: Sequence[Union[int, str]], targets: Iterable, k: Optional[int] = 20,
                           mode: str = OFFICIAL) -> float:
    """Average precision at k of one ranking (``utils_lareqa.average_precision_at_k``, F1).

    Args:
        ranked: candidate ids, best first.
        targets: the relevant ids.
        k: cutoff; ``0`` or ``None`` means **no cutoff** (the official ``if k:`` test).
        mode: ``"official"`` or ``"corrected"``; identical.

    Returns:
        AP on a 0-1 scale: the sum of precision@rank at each *first* occurrence of a relevant id
        within the top k (a duplicate still uses up a rank), divided by ``min(|targets|, k)``
        (``|targets|`` when there is no cutoff).

    Raises:
        ValueError: empty targets (official ``ZeroDivisionError``); negative k (the official
            code would silently drop items from the end and divide by a negative number).
    """
    check_mode(mode, "average_precision_at_k")
    targets = set(targets)
    if not targets:
        raise ValueError("average_precision_at_k: empty targets (the official code divides by zero)")
    if k is not None and k < 0:
        raise ValueError(f"average_precision_at_k: k must be >= 0 (0 = no cutoff), got {k}")
    ranked = list(ranked)
    if k:
        ranked = ranked[:k]
    score = 0.0
    hits = 0.0
    seen = set()
    for i, pred in enumerate(ranked):
        if pred in targets and pred not in seen:
            hits += 1.0
            score += hits / (i + 1.0)
        seen.add(pred)
    divisor = min(len(targets), k) if k else len(targets)
    return score / divisor


def _xling_set(value) -> frozenset:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset([value])
    return frozenset(value)


def lareqa_map_at_k(question_embeddings, candidate_embeddings, question_xling_ids: Sequence[str],
                    candidate_xling_ids: Sequence[Union[str, Iterable[str], None]], k: Optional[int] = 20,
                    mode: str = OFFICIAL) -> dict:
    """LAReQA mean average precision at k (``utils_lareqa.mean_avg_prec_at_k``, scorers.md F2).

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
    by_xling: Dict[str, List[int]] = {}
    for c, value in enumerate(candidate_xling_ids):
        for x in _xling_set(value):
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
    tie_order = ("numpy default argsort()[::-1] (unstable; tie order is numpy's)" if mode == OFFICIAL
                 else "stable descending: lowest candidate index first")
    return {_map_key(k): float(np.mean(ap_scores)) * 100, "mode": mode, "n_questions": int(Q.shape[0]),
            "n_candidates": int(C.shape[0]), "tie_order": tie_order}


def mewslix_map_at_k(predictions: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[str]],
                     k: int = 20, mode: str = OFFICIAL) -> dict:
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

    Raises:
        ValueError: empty gold (officially 0.0 is returned), a gold example with an empty list
            (officially ``IndexError``), a prediction that is not a list of ids.
    """
    check_mode(mode, "mewslix_map_at_k")
    mrr, missing, unexpected = _mewslix_mrr(predictions, gold, k, mode)
    return {_map_key(k): mrr * 100, "mode": mode, "n_gold": len(gold),
            "n_missing": missing, "n_unexpected": unexpected}


def mewslix_reciprocal_ranks(predictions: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[str]],
                             k: int = 20, mode: str = OFFICIAL) -> list[float]:
    """Per-mention terms of :func:`mewslix_map_at_k`, in ``gold``'s order: 1/rank of the first exact
    match of the gold entity in the top k, 0 if none or if the prediction is missing (0-1 scale; the
    official value is their mean x 100). Same rules and errors as :func:`mewslix_map_at_k`."""
    check_mode(mode, "mewslix_reciprocal_ranks")
    return _mewslix_rr(predictions, gold, k, mode)[0]


def _mewslix_mrr(predictions, gold, k, mode):
    """(MRR on 0-1, n_missing, n_unexpected) - the unscaled official value."""
    rrs, missing, unexpected = _mewslix_rr(predictions, gold, k, mode)
    total = 0.0
    for rr in rrs:  # the official running sum, in gold order
        total += rr
    return total / len(gold), missing, unexpected


def _mewslix_rr(predictions, gold, k, mode):
    """(per-mention reciprocal ranks in gold order, n_missing, n_unexpected)."""
    if not isinstance(gold, Mapping) or not isinstance(predictions, Mapping):
        raise ValueError("mewslix_map_at_k: predictions and gold must be dicts example_id -> list of entity ids")
    if len(gold) == 0:
        raise ValueError("mewslix_map_at_k: empty gold (the official code would report 0.0)")
    rrs = []
    missing = 0
    for example_id, labels in gold.items():
        if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) == 0:
            raise ValueError(f"mewslix_map_at_k: gold for {example_id!r} must be a non-empty list, got {labels!r}")
        gold_id = labels[0].strip()
        if example_id not in predictions:
            missing += 1
        preds = predictions.get(example_id, [])
        if isinstance(preds, str) or not isinstance(preds, Sequence):
            raise ValueError(f"mewslix_map_at_k: prediction for {example_id!r} must be a list of ids, got {preds!r}")
        rr = 0.0
        for rank, p in enumerate(list(preds)[:k], start=1):
            if (p.strip() if mode == CORRECTED and isinstance(p, str) else p) == gold_id:
                rr = 1.0 / rank
                break
        rrs.append(rr)
    unexpected = len(set(predictions) - set(gold))
    return rrs, missing, unexpected


def mewslix_evaluate_all(per_lang_predictions: Mapping[str, Optional[Mapping[str, Sequence[str]]]],
                         per_lang_gold: Mapping[str, Mapping[str, Sequence[str]]],
                         languages: Sequence[str], k: int = 20, mode: str = OFFICIAL) -> dict:
    """Macro-average of :func:`mewslix_map_at_k` over ``languages`` (``utils_mewslix.evaluate_all``, G2).

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
    per_language: Dict[str, float] = {}
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
    result = {key: total / len(languages) * 100, "per_language": per_language, "mode": mode,
              "missing_prediction_languages": missing_langs}
    if missing_langs:
        add_note(result, f"no predictions for {', '.join(missing_langs)}: scored 0")
    return result
