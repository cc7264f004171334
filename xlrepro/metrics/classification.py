"""Accuracy metrics: XNLI, PAWS-X, XCOPA (``evaluate.py:accuracy``) and Tatoeba.

Both functions return values on a 0-100 scale, like ``evaluate.py``.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

from ._common import OFFICIAL, add_note, check_mode

Label = str | int


def accuracy(predictions: Sequence[Label], labels: Sequence[Label], mode: str = OFFICIAL) -> dict:
    """Exact-match accuracy, as ``evaluate.py:accuracy``.

    Args:
        predictions: one predicted label per example (strings as read from a label file, JSON
            values as read from an XCOPA file, or ints).
        labels: the gold labels, same length.
        mode: ``"official"`` compares ``p == l`` as the official code does; ``"corrected"``
            compares ``str(p) == str(l)`` and refuses a length mismatch.

    Returns:
        ``{"accuracy": 100 * correct / len(predictions), "mode": mode}`` (plus ``"note"`` in
        official mode when the lengths differ).

    Official behaviour reproduced:
        * comparison is Python equality, exact and case/whitespace sensitive:
          ``'Entailment' != 'entailment'``, ``'00' != '0'``, ``' neutral' != 'neutral'``, and an
          int never equals a string (``1 != '1'``). (``evaluate.py`` strips every line when it
          reads a file - see :func:`xlrepro.metrics.evaluate.read_label` - but this function
          does not strip.)
        * different lengths: the official function pairs with ``zip`` (the shorter list wins)
          and divides by ``len(predictions)``; so does official mode, with a note.
          (``evaluate_one_task`` asserts equal counts before calling it, and so does
          :func:`xlrepro.metrics.evaluate.score_language`.)
        * corrected mode compares ``str(p) == str(l)``, so a choice index ``1`` matches the
          label line ``1``.

    Raises:
        ValueError: empty predictions (the official code raises ``ZeroDivisionError``); in
            corrected mode, different lengths.
    """
    check_mode(mode, "accuracy")
    result: dict = {}
    if len(predictions) != len(labels):
        if mode != OFFICIAL:
            raise ValueError(
                f"accuracy: {len(predictions)} predictions but {len(labels)} labels; the official "
                "evaluate.py asserts that the counts match"
            )
        add_note(
            result,
            f"{len(predictions)} predictions but {len(labels)} labels: compared pairwise up to the "
            "shorter list and divided by the number of predictions, as the official function does",
        )
    if len(predictions) == 0:
        raise ValueError("accuracy: empty input (the official code divides by zero)")
    if mode == OFFICIAL:
        correct = sum(int(p == l) for p, l in zip(predictions, labels))
    else:
        correct = sum(int(str(p) == str(l)) for p, l in zip(predictions, labels))
    out = {"accuracy": float(correct) / len(predictions) * 100, "mode": mode}
    out.update(result)
    return out


_BRACKETED_INT = re.compile(r"\[?\s*(-?\d+)\s*\]?")


def _parse_index(value, row: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"tatoeba_accuracy: row {row}: a bool is not a row index")
    if isinstance(value, numbers.Integral):
        return int(value)
    if hasattr(value, "shape") and hasattr(value, "reshape"):  # numpy array / scalar
        flat = value.reshape(-1)
        if flat.shape[0] != 1:
            raise ValueError(f"tatoeba_accuracy: row {row}: expected one index, got array of shape {value.shape}")
        return _parse_index(flat[0].item(), row)
    if isinstance(value, str):
        m = _BRACKETED_INT.fullmatch(value.strip())
        if m:
            return int(m.group(1))
    raise ValueError(f"tatoeba_accuracy: row {row}: cannot read a row index from {value!r}")


def tatoeba_accuracy(predicted_indices: Sequence[int | str], mode: str = OFFICIAL) -> dict:
    """Tatoeba retrieval accuracy: row ``i`` is correct when its prediction is ``i``.

    The prediction of (English) row ``i`` is the index of the retrieved non-English sentence
    (the official retrieval script queries with the English side and indexes the other).

    Args:
        predicted_indices: the predicted row index for each row, in row order.
        mode: ``"official"`` compares ``str(prediction) == str(i)`` exactly as ``evaluate.py``
            compares a prediction line with the label line ``i``; so the ``[12]`` strings written
            by ``third_party/evaluate_retrieval.py`` (``str(numpy_row)``) never match.
            ``"corrected"`` parses ints, numpy scalars/1-element arrays and the strings ``"12"``
            and ``"[12]"`` before comparing (the conversion step the official scripts leave out).

    Returns:
        ``{"accuracy": 0-100, "mode": mode}``.

    Raises:
        ValueError: empty input, or (corrected mode) a value that is not a single index.
    """
    check_mode(mode, "tatoeba_accuracy")
    n = len(predicted_indices)
    if n == 0:
        raise ValueError("tatoeba_accuracy: empty input (the official code divides by zero)")
    if mode == OFFICIAL:
        correct = sum(int(str(p) == str(i)) for i, p in enumerate(predicted_indices))
    else:
        correct = sum(int(_parse_index(p, i) == i) for i, p in enumerate(predicted_indices))
    return {"accuracy": float(correct) / n * 100, "mode": mode}
