"""BUCC 2018 bitext-mining scoring: threshold optimisation, extraction and P/R/F1
(``third_party/utils_retrieve.py`` and ``evaluate.py:bucc_f1`` of google-research/xtreme).

Candidate pairs are ``(src_id, trg_id)`` tuples; gold pairs are tuples or the tab-joined lines
of a gold file. Percentages are on a 0-100 scale; thresholds are raw margin scores.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from ._common import CORRECTED, OFFICIAL, add_note, check_mode

Pair = tuple[str, ...]
PairLike = str | Sequence[str]


def _joined(pair: PairLike) -> str:
    return pair if isinstance(pair, str) else "\t".join(pair)


def _as_tuple(pair: PairLike) -> Pair:
    return tuple(pair.split("\t")) if isinstance(pair, str) else tuple(pair)


def _check_candidates(candidate2score: Mapping, func: str, strict: bool = True) -> list[tuple[Pair, float]]:
    """The (pair, score) items. ``strict`` (corrected mode): scores must be int/float and not NaN.
    Otherwise (official mode) any real number passes, NaN and numpy scalars included, as the
    official code sorts whatever it is given."""
    if not isinstance(candidate2score, Mapping):
        raise ValueError(f"{func}: candidate2score must be a dict (src_id, trg_id) -> score")
    if len(candidate2score) == 0:
        raise ValueError(f"{func}: no candidates")
    items = []
    for pair, score in candidate2score.items():
        if strict:
            bad = isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score)
        else:
            bad = not isinstance(score, numbers.Real)
        if bad:
            raise ValueError(f"{func}: score of {pair!r} is not a number: {score!r}")
        items.append((pair, score))
    return items


def bucc_optimize(candidate2score: Mapping[Pair, float], gold: Iterable[PairLike], mode: str = OFFICIAL) -> dict:
    """Choose the extraction threshold that maximises F1 on ``gold`` (``bucc_optimize``).

    Args:
        candidate2score: ``(src_id, trg_id) -> score``, in insertion order = first appearance
            in the candidate file (it decides ties).
        gold: gold pairs, as tuples or tab-joined strings.
        mode: see below.

    Returns:
        ``{"threshold", "best_f1", "precision", "recall"}`` (the last three 0-100, at the
        chosen cut-off), ``"n_extracted"``, ``"n_correct"``, ``"n_gold"``, ``"n_candidates"``,
        ``"mode"`` and, where the official code would crash or behaves oddly, ``"note"``.

    Official behaviour (``utils_retrieve.bucc_optimize``): candidates are sorted by score descending with a
    *stable* sort; after each candidate ``F1 = 2PR/(P+R)`` is computed in floats
    (``P = c/n``, ``R = c/|gold|``) and a strict ``>`` maximum is kept, so mathematically equal
    F1 values are separated by rounding (2/3 from 3-of-4 loses to 2/3 from 4-of-7 with
    |gold| = 5); the threshold is the midpoint of the best cut-off's score and the *next*
    candidate's score, so a next candidate tied with the cut-off is extracted too. If no
    candidate is correct (an empty gold set or no candidates included) the threshold stays 0.
    **Crash handled:** when the best cut-off is the last candidate the official code raises
    ``IndexError`` (``items[i + 1]``); this function
    then returns the last candidate's own score as threshold (every candidate is extracted,
    which is evidently intended) and says so in ``note``.

    Corrected mode: cut-offs are only placed between *distinct* scores (a tie group is kept or
    dropped as a whole, so the optimised F1 is what extraction with the threshold reproduces);
    F1 values are compared exactly as fractions ``2c / (n + |gold|)`` (the earliest best wins);
    the threshold is the midpoint with the next lower score (or the cut-off score itself if the
    midpoint rounds down onto the lower score, or at the end of the list); with no correct
    candidate the threshold is just above the highest score, so nothing is extracted.

    Raises:
        ValueError: a score that is not a real number; in corrected mode also a NaN or numpy
            score, no candidates or an empty gold set (official mode returns threshold 0 for
            the last two, as the official code does, and sorts NaN scores as it does).
    """
    check_mode(mode, "bucc_optimize")
    gold_set = {_joined(g) for g in gold}
    if mode == OFFICIAL and (not gold_set or (isinstance(candidate2score, Mapping) and not candidate2score)):
        what = "empty gold set" if not gold_set else "no candidates"
        return {
            "threshold": 0,
            "best_f1": 0.0,
            "precision": 0.0,
            "recall": 0.0,
            "n_extracted": 0,
            "n_correct": 0,
            "n_gold": len(gold_set),
            "n_candidates": len(candidate2score) if isinstance(candidate2score, Mapping) else 0,
            "mode": mode,
            "note": [f"{what}: no candidate can be correct, so the threshold stays 0 as in the official code"],
        }
    items = _check_candidates(candidate2score, "bucc_optimize", strict=(mode == CORRECTED))
    if not gold_set:
        raise ValueError("bucc_optimize: empty gold set (the official code returns threshold 0)")
    items = sorted(items, key=lambda x: -x[1])  # stable: ties keep insertion order
    ngold = len(gold_set)
    result: dict = {}
    if mode == OFFICIAL:
        threshold: float = 0
        best_f1: float = 0
        best = None  # (n_extracted, n_correct, precision, recall)
        ncorrect = 0
        for i, (pair, score) in enumerate(items):
            nextract = i + 1
            if _joined(pair) in gold_set:
                ncorrect += 1
            if ncorrect > 0:
                precision = ncorrect / nextract
                recall = ncorrect / ngold
                f1 = 2 * precision * recall / (precision + recall)
                if f1 > best_f1:
                    best_f1 = f1
                    best = (nextract, ncorrect, precision, recall)
                    if i + 1 < len(items):
                        threshold = (score + items[i + 1][1]) / 2
                    else:
                        threshold = score
                        add_note(
                            result,
                            "best cut-off is the last candidate: the official code raises "
                            "IndexError here; threshold = that candidate's score (all extracted)",
                        )
    else:
        best_frac = Fraction(0)
        best = None
        threshold = math.nextafter(items[0][1], math.inf)
        ncorrect = 0
        for i, (pair, score) in enumerate(items):
            if _joined(pair) in gold_set:
                ncorrect += 1
            last = i + 1 == len(items)
            if not last and items[i + 1][1] == score:
                continue  # inside a tie group: no threshold can cut here
            nextract = i + 1
            frac = Fraction(2 * ncorrect, nextract + ngold)
            if ncorrect > 0 and frac > best_frac:
                best_frac = frac
                best = (nextract, ncorrect, ncorrect / nextract, ncorrect / ngold)
                if last:
                    threshold = score
                else:
                    mid = (score + items[i + 1][1]) / 2
                    threshold = mid if mid > items[i + 1][1] else score
        best_f1 = float(best_frac)
        if best is None:
            add_note(
                result,
                "no candidate is correct: threshold set just above the highest score "
                "(the official code keeps 0 and extracts every candidate with score >= 0)",
            )
    if best is None:
        best = (0, 0, 0.0, 0.0)
        if mode == OFFICIAL:
            add_note(result, "no candidate is correct: threshold stays 0 as in the official code")
    n_extracted, n_correct, precision, recall = best
    out = {
        "threshold": threshold,
        "best_f1": best_f1 * 100,
        "precision": precision * 100,
        "recall": recall * 100,
        "n_extracted": n_extracted,
        "n_correct": n_correct,
        "n_gold": ngold,
        "n_candidates": len(items),
        "mode": mode,
    }
    out.update(result)
    return out


def bucc_extract(candidate2score: Mapping[Pair, float], threshold: float) -> list[Pair]:
    """Pairs with ``score >= threshold``, in ``candidate2score`` insertion order (``bucc_extract``;
    a candidate tied with the threshold is kept). Returns a list of tuples."""
    if not isinstance(candidate2score, Mapping):
        raise ValueError("bucc_extract: candidate2score must be a dict (src_id, trg_id) -> score")
    return [tuple(pair) for pair, score in candidate2score.items() if score >= threshold]


def bucc_f1(predicted_pairs: Iterable[PairLike], gold_pairs: Iterable[PairLike], mode: str = OFFICIAL) -> dict:
    """P/R/F1 of predicted pairs against gold pairs, as sets (``evaluate.py:bucc_f1``).

    Args:
        predicted_pairs, gold_pairs: tuples, or lines ``"src\\ttrg"`` which are split on
            ``\\t`` exactly as the official code does (a three-field line never matches).
        mode: ``"official"``: duplicates collapse; an empty line is the prediction ``('',)``
            and lowers precision. ``"corrected"``: empty predictions (``''`` / ``('',)``) are
            dropped before scoring.

    Returns:
        ``{"f1", "precision", "recall"}`` (0-100; all 0 when no pair is correct, an empty gold
        set included), ``"mode"``, ``"n_pred"``, ``"n_gold"``, ``"n_correct"`` (set sizes).

    Raises:
        ValueError: in corrected mode, an empty gold set (nothing to score; the official code
            returns zeros, and so does official mode).
    """
    check_mode(mode, "bucc_f1")
    gold = {_as_tuple(p) for p in gold_pairs}
    pred = {_as_tuple(p) for p in predicted_pairs}
    if mode == CORRECTED:
        gold.discard(("",))
        pred.discard(("",))
        pred.discard(())
    if not gold and mode == CORRECTED:
        raise ValueError(
            "bucc_f1: empty gold set (nothing to score; mode 'official' returns zeros as the official code does)"
        )
    ncorrect = len(gold & pred)
    if ncorrect > 0:
        precision = ncorrect / len(pred)
        recall = ncorrect / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
    else:
        precision = recall = f1 = 0.0
    return {
        "f1": f1 * 100,
        "precision": precision * 100,
        "recall": recall * 100,
        "mode": mode,
        "n_pred": len(pred),
        "n_gold": len(gold),
        "n_correct": ncorrect,
    }


def bucc_evaluate(
    candidate2score: Mapping[Pair, float],
    gold: Iterable[PairLike],
    threshold: float | None = None,
    mode: str = OFFICIAL,
) -> dict:
    """Optimise (or take) a threshold, extract, and score - what ``bucc_eval`` does.

    With ``threshold=None`` the threshold is optimised on ``gold`` itself (an oracle, the
    official behaviour whenever a gold file exists); pass a threshold tuned on dev to
    score test honestly.

    Returns:
        ``{"f1", "precision", "recall"}`` of the extracted pairs (0-100), ``"threshold"``,
        ``"threshold_source"`` (``"oracle: optimised on the scored gold"`` or ``"given"``),
        ``"optimised_f1"`` (only when optimised; may be higher than ``f1`` when a candidate ties
        with the cut-off), ``"mode"``.
    """
    check_mode(mode, "bucc_evaluate")
    gold = list(gold)
    out: dict = {}
    if threshold is None:
        opt = bucc_optimize(candidate2score, gold, mode)
        threshold = opt["threshold"]
        out["threshold_source"] = "oracle: optimised on the scored gold"
        out["optimised_f1"] = opt["best_f1"]
        if "note" in opt:
            out["note"] = list(opt["note"])
    else:
        out["threshold_source"] = "given"
    scores = bucc_f1(bucc_extract(candidate2score, threshold), gold, mode)
    out.update(
        {
            "f1": scores["f1"],
            "precision": scores["precision"],
            "recall": scores["recall"],
            "threshold": threshold,
            "mode": mode,
        }
    )
    return out


def bucc_dedup_sentences(ids: Sequence[str], sentences: Sequence[str], mode: str = OFFICIAL) -> dict[str, str]:
    """Map sentence text -> sentence id, as ``utils_retrieve.read_sent2id`` does.

    Args:
        ids: the lines of the id file, in order.
        sentences: the lines of the text file, in the same order.
        mode: ``"official"``: ids and sentences are ``strip()``ped, and a sentence that occurs
            more than once (after stripping) is **dropped from the map** entirely, so every
            candidate involving it is discarded and its gold pairs are unreachable.
            ``"corrected"``: repeated sentences are kept, mapped to the id of their first
            occurrence (a text can only map to one id).

    Returns:
        ``dict`` stripped text -> stripped id, in first-occurrence order.

    Raises:
        ValueError: in corrected mode, ``ids`` and ``sentences`` of different lengths (the two
            files do not belong together); official mode pairs them with ``zip`` up to the
            shorter one, as the official code does.
    """
    check_mode(mode, "bucc_dedup_sentences")
    if len(ids) != len(sentences) and mode == CORRECTED:
        raise ValueError(f"bucc_dedup_sentences: {len(ids)} ids but {len(sentences)} sentences")
    sent2id: dict[str, str] = {}
    repeated: set[str] = set()
    for id_, sent in zip(ids, sentences):
        id_, sent = id_.strip(), sent.strip()
        if sent in sent2id:
            repeated.add(sent)
        else:
            sent2id[sent] = id_
    if mode == OFFICIAL:
        for sent in repeated:
            del sent2id[sent]
    return sent2id
