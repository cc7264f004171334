"""Tagging metrics for UD-POS and PAN-X (``evaluate.py:f1``, which calls seqeval).

The official numbers follow **seqeval 0.0.12** chunking (the official test
``evaluate_test.py`` passes with 0.0.12 and fails with 1.2.2; ``install_tools.sh`` does not pin a
version), which is what mode ``"official"`` implements; mode ``"seqeval_1x"`` implements seqeval
1.2.2's default (non-strict) chunking. Neither imports seqeval: both are re-implemented here from
seqeval's ``metrics/sequence_labeling.py`` (0.0.12) and ``metrics/v1.py`` (1.2.2), and the tests
compare them with the real packages. ``token_accuracy`` is the plain per-token accuracy the
XTREME paper names (github.com/google-research/xtreme/issues/56) but the code does not compute.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._common import CORRECTED, OFFICIAL, SEQEVAL_1X, add_note, check_mode

TAGGING_MODES = (OFFICIAL, CORRECTED, SEQEVAL_1X)

Chunk = tuple[str, int, int]


def _prefix_and_type(tag: str, mode: str) -> tuple[str, str]:
    """Split a tag into seqeval's (pseudo-)prefix letter and chunk type."""
    if mode == SEQEVAL_1X:
        # 1.2.2: everything after the first character, split once on '-'; empty -> '_'.
        return tag[0], tag[1:].split("-", 1)[-1] or "_"
    # 0.0.12: first character, and the text after the LAST '-' (the whole tag if none).
    return tag[0], tag.split("-")[-1]


def _ends_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # conlleval-style rules shared by seqeval 0.0.12 and 1.2.2 (non-strict).
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_tag != "." and prev_type != type_


def _starts_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and tag != "." and prev_type != type_


def _check_tag(tag, where: str) -> None:
    if not isinstance(tag, str) or tag == "":
        raise ValueError(f"{where}: every tag must be a non-empty string, got {tag!r}")


def get_entities(seq: Sequence, mode: str = OFFICIAL) -> list[Chunk]:
    """Chunks ``(type, start, end)`` (end inclusive) of a tag sequence, seqeval style.

    Args:
        seq: a flat list of tags, or a list of sentences (lists of tags). Sentences are
            concatenated with an ``"O"`` inserted after each one, so offsets run over the
            concatenation and no chunk crosses a sentence boundary (as in seqeval).
        mode: ``"official"`` / ``"corrected"`` = seqeval 0.0.12, ``"seqeval_1x"`` = 1.2.2.

    Returns:
        The chunks in the order seqeval emits them (duplicates possible in 1.2.2).

    Quirks reproduced:
        * the prefix is the first character and no tag validation is done, so UPOS tags are
          chunked: runs of the same tag merge, ``S``-initial tags (``SCONJ``, ``SYM``) are
          single-token chunks, ``INTJ`` acts as an ``I-`` tag;
        * an ``I-`` tag without ``B-`` starts a chunk; ``B-X I-Y`` gives two chunks; ``E-``/``S-``
          are honoured in IOB2 files; lowercase ``b-per`` is not a ``B``;
        * 0.0.12 type = text after the last ``-`` (``B-A-X`` has type ``X``);
        * 1.2.2 type = ``tag[1:].split('-', 1)[-1] or '_'``: ``NOUN`` -> ``OUN``, ``CCONJ`` and
          ``SCONJ`` -> ``CONJ``, ``X`` -> ``_`` (the type of ``O``, so an ``X`` run before ``O``
          or the end is never closed and is lost; closed later by another type, such a chunk can
          even span the ``O`` between two sentences).
    """
    check_mode(mode, "get_entities", TAGGING_MODES)
    seq = list(seq)
    nested = [isinstance(s, (list, tuple)) for s in seq]
    if any(nested):
        if not all(nested):
            raise ValueError("get_entities: mix of sentences (lists) and bare tags")
        flat: list[str] = []
        for sentence in seq:
            flat.extend(sentence)
            flat.append("O")
        seq = flat
    prev_tag, prev_type, begin = "O", "", 0
    chunks: list[Chunk] = []
    for i, tag_str in enumerate(seq + ["O"]):
        _check_tag(tag_str, "get_entities")
        tag, type_ = _prefix_and_type(tag_str, mode)
        if _ends_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _starts_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _as_corpus(corpus):
    if isinstance(corpus, (list, tuple)) and corpus and all(isinstance(t, str) for t in corpus):
        return [list(corpus)]
    return corpus


def _validate_corpus(pred_tags, gold_tags, func: str, official: bool = False) -> tuple[list, list, bool]:
    """Return (pred, gold, token_counts_match) as lists of lists; raise on bad shapes.

    ``official``: an empty corpus and different sentence counts pass (seqeval 0.0.12 scores
    them); ``token_counts_match`` is then also False for different sentence counts."""
    if official:
        # seqeval 0.0.12 flattens a corpus only when it holds lists; a flat list of tags is one
        # sequence, whose chunks are those of the same tags as one sentence
        pred_tags, gold_tags = (_as_corpus(c) for c in (pred_tags, gold_tags))
    if len(gold_tags) == 0 and len(pred_tags) == 0 and not official:
        raise ValueError(f"{func}: empty input (no sentences)")
    if len(pred_tags) != len(gold_tags) and not official:
        raise ValueError(
            f"{func}: {len(pred_tags)} predicted sentences but {len(gold_tags)} gold sentences; "
            "the official evaluate.py asserts that the sentence counts match"
        )
    pred: list[list[str]]
    gold: list[list[str]]
    pred, gold = [], []
    for name, corpus, out in (("pred_tags", pred_tags, pred), ("gold_tags", gold_tags, gold)):
        for i, sentence in enumerate(corpus):
            if isinstance(sentence, str) or not isinstance(sentence, (list, tuple)):
                raise ValueError(f"{func}: {name}[{i}] must be a list of tags, got {type(sentence).__name__}")
            for tag in sentence:
                _check_tag(tag, f"{func}: {name}[{i}]")
            out.append(list(sentence))
    aligned = len(pred) == len(gold) and all(len(p) == len(g) for p, g in zip(pred, gold))
    return pred, gold, aligned


def tagging_f1(pred_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]], mode: str = OFFICIAL) -> dict:
    """Micro chunk F1 / precision / recall over all sentences (``evaluate.py:f1``).

    Args:
        pred_tags: predicted tags, one list per sentence (official mode also takes a flat list
            of tags, as one sequence, like seqeval 0.0.12).
        gold_tags: gold tags, one list per sentence (the same).
        mode: ``"official"`` = seqeval 0.0.12 (what the published numbers used);
            ``"seqeval_1x"`` = seqeval 1.2.2 default mode; ``"corrected"`` = 0.0.12 chunking
            (it has no evident bug to fix; the 1.x type parsing is the defect) but refuses
            misaligned sentences instead of scoring them.

    Returns:
        ``{"f1", "precision", "recall"}`` on a 0-100 scale, plus ``"mode"``,
        ``"n_gold_chunks"``, ``"n_pred_chunks"``, ``"n_correct_chunks"`` and, when relevant,
        ``"note"`` (list of strings).

    Quirks reproduced: see :func:`get_entities`; chunks are compared as sets of
    ``(type, start, end)``; P (R) is 0 when nothing is predicted (gold); F1 is 0 when neither
    side has a chunk (not 100), an empty corpus included; with 0.0.12 sentences whose predicted
    and gold token counts differ, and even corpora with different sentence counts, are still
    scored on misaligned offsets (a note says so; ``evaluate.py`` itself asserts equal sentence
    counts before calling seqeval, and so does :func:`xlrepro.metrics.evaluate.score_language`).

    Raises:
        ValueError: a tag that is not a non-empty string (seqeval fails on it too); in modes
            ``seqeval_1x`` and ``corrected``: no sentences (1.2.2 raises ``TypeError``),
            different sentence counts or a token-count mismatch (1.2.2 raises ``ValueError``).
    """
    check_mode(mode, "tagging_f1", TAGGING_MODES)
    pred, gold, aligned = _validate_corpus(pred_tags, gold_tags, "tagging_f1", official=(mode == OFFICIAL))
    result: dict = {}
    if not aligned:
        if mode != OFFICIAL:
            bad = next(i for i, (p, g) in enumerate(zip(pred, gold)) if len(p) != len(g))
            raise ValueError(
                f"tagging_f1: sentence {bad} has {len(pred[bad])} predicted tags but {len(gold[bad])} "
                f"gold tags (mode {mode!r} refuses misaligned input)"
            )
        if len(pred) != len(gold):
            add_note(
                result,
                f"{len(pred)} predicted sentences but {len(gold)} gold sentences; seqeval 0.0.12 "
                "scores the misaligned chunk offsets silently, and so does this mode",
            )
        else:
            add_note(
                result,
                "token counts differ in some sentence; seqeval 0.0.12 scores the "
                "misaligned chunk offsets silently, and so does this mode",
            )
    true_chunks = set(get_entities(gold, mode))
    pred_chunks = set(get_entities(pred, mode))
    n_correct = len(true_chunks & pred_chunks)
    n_pred, n_true = len(pred_chunks), len(true_chunks)
    p = n_correct / n_pred if n_pred > 0 else 0.0
    r = n_correct / n_true if n_true > 0 else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    result.update(
        {
            "f1": f * 100,
            "precision": p * 100,
            "recall": r * 100,
            "mode": mode,
            "n_gold_chunks": n_true,
            "n_pred_chunks": n_pred,
            "n_correct_chunks": n_correct,
        }
    )
    if "note" in result:  # keep the note last for readability
        result["note"] = result.pop("note")
    return result


def token_accuracy(
    pred_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]], mode: str = OFFICIAL
) -> dict:
    """Per-token tag accuracy over all sentences (not computed by the official code).

    The XTREME paper calls the UD-POS metric "accuracy", but ``evaluate.py`` computes seqeval
    chunk F1 (github.com/google-research/xtreme/issues/56); this is the accuracy, reported as a diagnostic.

    Args:
        pred_tags, gold_tags: one list of tags per sentence; shapes must match exactly.
        mode: ``"official"`` or ``"corrected"``; identical results (there is no official
            implementation to mirror).

    Returns:
        ``{"accuracy": 0-100, "n_tokens": int, "mode": mode}``.

    Raises:
        ValueError: no sentences or no tokens, different sentence counts, or a sentence with
            different token counts.
    """
    check_mode(mode, "token_accuracy")
    pred, gold, aligned = _validate_corpus(pred_tags, gold_tags, "token_accuracy")
    if not aligned:
        bad = next(i for i, (p, g) in enumerate(zip(pred, gold)) if len(p) != len(g))
        raise ValueError(
            f"token_accuracy: sentence {bad} has {len(pred[bad])} predicted tags but {len(gold[bad])} gold tags"
        )
    n = sum(len(g) for g in gold)
    if n == 0:
        raise ValueError("token_accuracy: no tokens")
    correct = sum(int(p == g) for ps, gs in zip(pred, gold) for p, g in zip(ps, gs))
    return {"accuracy": correct / n * 100, "n_tokens": n, "mode": mode}
