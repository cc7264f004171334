"""Golden tests for seqeval-style chunking (seqeval 0.0.12 and 1.2.2, as called by
google-research/xtreme ``evaluate.py:f1``).

Chunk lists are traced by hand with the conlleval rules: a chunk ends when the previous prefix is
E/S, when B/I is followed by B/S/O, or when the type changes; it starts on B/S, on E/I after
E/S/O, or when the type changes. 0.0.12 type = text after the last '-'; 1.2.2 type =
tag[1:].split('-', 1)[-1] or '_'.
"""

import pytest

from xlrepro.metrics import get_entities, tagging_f1, token_accuracy

# ----------------------------------------------------------------- NER-style tags (both versions)


@pytest.mark.parametrize("mode", ["official", "seqeval_1x"])
def test_i_without_b_starts_an_entity(mode):
    # after O
    assert get_entities(["O", "I-PER", "I-PER", "O"], mode) == [("PER", 1, 2)]
    # at the start of a sentence
    assert get_entities(["I-LOC", "O"], mode) == [("LOC", 0, 0)]
    # after another type: B-PER closes when the type changes, I-LOC opens a new chunk
    assert get_entities(["B-PER", "I-LOC"], mode) == [("PER", 0, 0), ("LOC", 1, 1)]


@pytest.mark.parametrize("mode", ["official", "seqeval_1x"])
def test_e_and_s_tags_are_honoured_inside_iob2(mode):
    # B-PER E-PER is one chunk; E closes it, so the next I-PER starts a new one.
    assert get_entities(["B-PER", "E-PER", "I-PER"], mode) == [("PER", 0, 1), ("PER", 2, 2)]
    # S-LOC is a single-token chunk; the I-LOC after it starts another.
    assert get_entities(["S-LOC", "I-LOC"], mode) == [("LOC", 0, 0), ("LOC", 1, 1)]


@pytest.mark.parametrize("mode", ["official", "seqeval_1x"])
def test_lowercase_prefix_is_not_b(mode):
    # 'B-PER B-PER' = two chunks; 'b-per b-per': prefix 'b' is no B, same type -> one chunk.
    assert get_entities(["B-PER", "B-PER"], mode) == [("PER", 0, 0), ("PER", 1, 1)]
    assert get_entities(["b-per", "b-per"], mode) == [("per", 0, 1)]


@pytest.mark.parametrize("mode", ["official", "seqeval_1x"])
def test_o_is_inserted_between_sentences(mode):
    # flat: one chunk over both tokens
    assert get_entities(["B-PER", "I-PER"], mode) == [("PER", 0, 1)]
    # as two sentences: flattened to B-PER O I-PER O -> two chunks, offsets over the concatenation
    assert get_entities([["B-PER"], ["I-PER"]], mode) == [("PER", 0, 0), ("PER", 2, 2)]


@pytest.mark.parametrize("mode", ["official", "seqeval_1x"])
def test_no_entities_anywhere_gives_f1_zero_not_100(mode):
    out = tagging_f1([["O", "O"], ["O"]], [["O", "O"], ["O"]], mode)
    assert (out["f1"], out["precision"], out["recall"]) == (0.0, 0.0, 0.0)


def test_zero_denominators_give_zero():
    # gold has (PER,0,0); nothing predicted: P = 0 (no predictions), R = 0/1 = 0, F1 = 0
    out = tagging_f1([["O"]], [["B-PER"]])
    assert (out["f1"], out["precision"], out["recall"]) == (0.0, 0.0, 0.0)


def test_ner_micro_f1():
    gold = [["B-PER", "I-PER", "O"], ["B-LOC"]]
    pred = [["B-PER", "I-PER", "O"], ["O"]]
    # flat gold: B-PER I-PER O | O | B-LOC | O -> (PER,0,1), (LOC,4,4); pred -> (PER,0,1)
    # correct 1: P = 1/1, R = 1/2, F1 = 2*1*0.5/1.5 = 2/3
    out = tagging_f1(pred, gold)
    assert out["precision"] == pytest.approx(100.0)
    assert out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(200 / 3)


def test_dashed_types():
    # 0.0.12: type after the last '-' -> both 'X' -> match; 1.2.2: 'A-X' vs 'B-X' -> no match
    assert get_entities(["B-A-X"], "official") == [("X", 0, 0)]
    assert get_entities(["B-A-X"], "seqeval_1x") == [("A-X", 0, 0)]
    assert tagging_f1([["B-A-X"]], [["B-B-X"]])["f1"] == pytest.approx(100.0)
    assert tagging_f1([["B-A-X"]], [["B-B-X"]], "seqeval_1x")["f1"] == 0.0


# ----------------------------------------------------------------- UPOS quirks, seqeval 0.0.12


def test_upos_runs_merge_so_one_wrong_token_kills_the_run():
    gold = [["NOUN", "NOUN", "NOUN", "NOUN"]]
    pred = [["NOUN", "NOUN", "VERB", "NOUN"]]
    # gold: one chunk (NOUN,0,3); pred: (NOUN,0,1), (VERB,2,2), (NOUN,3,3) -> nothing in common
    assert get_entities(gold) == [("NOUN", 0, 3)]
    assert get_entities(pred) == [("NOUN", 0, 1), ("VERB", 2, 2), ("NOUN", 3, 3)]
    assert tagging_f1(pred, gold)["f1"] == 0.0


def test_upos_s_initial_tags_are_single_token_chunks():
    # SYM and SCONJ start with 'S': every token closes its own chunk
    assert get_entities(["SYM", "SYM"]) == [("SYM", 0, 0), ("SYM", 1, 1)]
    assert get_entities(["SCONJ", "SCONJ"]) == [("SCONJ", 0, 0), ("SCONJ", 1, 1)]
    # so a wrong second token costs one of two chunks: P = R = 1/2 -> F1 50 ...
    assert tagging_f1([["SCONJ", "NOUN"]], [["SCONJ", "SCONJ"]])["f1"] == pytest.approx(50.0)
    # ... while for a merging tag the same error costs everything: (NOUN,0,1) vs (NOUN,0,0),(VERB,1,1)
    assert tagging_f1([["NOUN", "VERB"]], [["NOUN", "NOUN"]])["f1"] == 0.0


def test_upos_intj_acts_as_i_tag():
    # INTJ has prefix 'I': after O it starts a chunk, a run of INTJ stays one chunk,
    # and it is closed by the O separator (I followed by O).
    assert get_entities(["INTJ", "INTJ"]) == [("INTJ", 0, 1)]
    assert get_entities(["PUNCT", "INTJ", "INTJ", "NOUN"]) == [("PUNCT", 0, 0), ("INTJ", 1, 2), ("NOUN", 3, 3)]


def test_cconj_vs_sconj_0012_vs_122():
    gold = [["NOUN", "CCONJ", "NOUN"]]
    pred = [["NOUN", "SCONJ", "NOUN"]]
    # 0.0.12: gold (NOUN,0,0) (CCONJ,1,1) (NOUN,2,2); pred (NOUN,0,0) (SCONJ,1,1) (NOUN,2,2)
    #         -> 2 of 3 both ways: P = R = F1 = 2/3 = 66.7
    assert tagging_f1(pred, gold)["f1"] == pytest.approx(200 / 3)
    # 1.2.2: CCONJ and SCONJ both have type CONJ, NOUN has type OUN:
    #        gold (OUN,0,0) (CONJ,1,1) (OUN,2,2) == pred -> 100
    assert tagging_f1(pred, gold, "seqeval_1x")["f1"] == pytest.approx(100.0)


def test_122_type_parsing_details():
    assert get_entities(["NOUN"], "seqeval_1x") == [("OUN", 0, 0)]
    # CCONJ SCONJ: SCONJ's S prefix restarts the chunk -> the CCONJ chunk is lost
    assert get_entities(["CCONJ", "SCONJ"], "seqeval_1x") == [("CONJ", 1, 1)]
    # SCONJ CCONJ: S closes (CONJ,0,0); CCONJ does not start (same type) -> (CONJ,0,1) overlaps
    assert get_entities(["SCONJ", "CCONJ"], "seqeval_1x") == [("CONJ", 0, 0), ("CONJ", 0, 1)]


def test_x_chunks_lost_in_122_kept_in_0012():
    tags = [["X"], ["X", "X"]]
    # 0.0.12: flat X O X X O -> (X,0,0), (X,2,3) on both sides -> 100
    assert get_entities(tags) == [("X", 0, 0), ("X", 2, 3)]
    assert tagging_f1(tags, tags)["f1"] == pytest.approx(100.0)
    # 1.2.2: X has type '_' = type of O, so no X chunk is ever closed -> no chunks -> F1 0
    assert get_entities(tags, "seqeval_1x") == []
    assert tagging_f1(tags, tags, "seqeval_1x")["f1"] == 0.0


def test_x_chunk_can_cross_sentences_in_122():
    # 1.2.2, flat X O X B-PER O: X opens a chunk (type '_'); the separator O has the same type '_'
    # so nothing closes or restarts it; B-PER finally closes it at index 2 -> ('_', 0, 2), which
    # spans the separator at index 1; then (PER,3,3). 0.0.12: (X,0,0), (X,2,2), (PER,3,3).
    assert get_entities([["X"], ["X", "B-PER"]], "seqeval_1x") == [("_", 0, 2), ("PER", 3, 3)]
    assert get_entities([["X"], ["X", "B-PER"]]) == [("X", 0, 0), ("X", 2, 2), ("PER", 3, 3)]


def test_corrected_mode_uses_0012_chunking():
    gold = [["NOUN", "CCONJ", "NOUN"]]
    pred = [["NOUN", "SCONJ", "NOUN"]]
    out = tagging_f1(pred, gold, "corrected")
    assert out["f1"] == pytest.approx(200 / 3)
    assert out["mode"] == "corrected"


# ----------------------------------------------------------------- input checks


def test_token_count_mismatch():
    gold = [["O", "B-PER"], ["B-LOC"]]
    pred = [["B-PER"], ["O", "B-LOC"]]
    # 0.0.12 scores misaligned offsets: gold flat O B-PER O | B-LOC O -> (PER,1,1), (LOC,3,3);
    # pred flat B-PER O | O B-LOC O -> (PER,0,0), (LOC,3,3): 1 of 2 both ways -> 50, with a note
    out = tagging_f1(pred, gold)
    assert out["f1"] == pytest.approx(50.0)
    assert "note" in out
    with pytest.raises(ValueError, match="sentence 0 has 1 predicted tags but 2 gold tags"):
        tagging_f1(pred, gold, "seqeval_1x")
    with pytest.raises(ValueError, match="sentence 0"):
        tagging_f1(pred, gold, "corrected")


def test_sentence_count_mismatch_and_empty_input():
    # seqeval 0.0.12 flattens each corpus with an 'O' after every sentence and scores whatever
    # chunks come out. pred [[B-PER]] -> [B-PER, O] -> {(PER, 0, 0)}; gold [[O], [B-PER]] ->
    # [O, O, B-PER, O] -> {(PER, 2, 2)}; nothing shared -> P = R = F1 = 0.
    out = tagging_f1([["B-PER"]], [["O"], ["B-PER"]])
    assert (out["f1"], out["precision"], out["recall"]) == (0.0, 0.0, 0.0)
    assert "1 predicted sentences but 2 gold sentences" in out["note"][0]
    # pred [[B-PER], [O]] -> [B-PER, O, O, O]; gold [[B-PER]] -> [B-PER, O]: (PER, 0, 0) both -> 100
    assert tagging_f1([["B-PER"], ["O"]], [["B-PER"]])["f1"] == 100.0
    # an empty corpus: no chunk on either side -> 0.0.12 returns 0 for P, R and F1
    out = tagging_f1([], [])
    assert (out["f1"], out["precision"], out["recall"]) == (0.0, 0.0, 0.0)
    # a flat list of tags: 0.0.12 does not flatten it (no element is a list) and chunks it as one
    # sequence: gold [B-PER, I-PER, O] -> {(PER, 0, 1)}; pred [B-PER, O, O] -> {(PER, 0, 0)} -> 0;
    # against a one-sentence corpus the offsets are the same -> (PER, 0, 1) both -> 100
    assert tagging_f1(["B-PER", "O", "O"], ["B-PER", "I-PER", "O"])["f1"] == 0.0
    assert tagging_f1(["B-PER", "I-PER", "O"], [["B-PER", "I-PER", "O"]])["f1"] == 100.0
    with pytest.raises(ValueError, match="must be a list of tags"):
        tagging_f1(["B-PER"], ["B-PER"], "corrected")
    for mode in ("corrected", "seqeval_1x"):
        with pytest.raises(ValueError, match="1 predicted sentences but 2 gold sentences"):
            tagging_f1([["O"]], [["O"], ["O"]], mode)
        with pytest.raises(ValueError, match="empty"):
            tagging_f1([], [], mode)
    with pytest.raises(ValueError, match="non-empty string"):
        tagging_f1([[""]], [["O"]])
    with pytest.raises(ValueError, match="unknown mode"):
        tagging_f1([["O"]], [["O"]], "strict")


def test_token_accuracy():
    # tokens: NOUN/NOUN ok, VERB/NOUN wrong, DET/DET ok -> 2 of 3
    out = token_accuracy([["NOUN", "VERB"], ["DET"]], [["NOUN", "NOUN"], ["DET"]])
    assert out["accuracy"] == pytest.approx(200 / 3)
    assert out["n_tokens"] == 3
    with pytest.raises(ValueError, match="sentence 0"):
        token_accuracy([["NOUN"]], [["NOUN", "NOUN"]])
    with pytest.raises(ValueError, match="no tokens"):
        token_accuracy([[]], [[]])


# ----------------------------------------------------------------- properties

from hypothesis import given, settings, strategies as st  # noqa: E402

_TAGS = st.sampled_from(
    ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "NOUN", "SCONJ", "CCONJ", "X", "INTJ", "SYM", "b-per"]
)
_CORPUS = st.lists(st.lists(_TAGS, min_size=0, max_size=6), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), mode=st.sampled_from(["official", "seqeval_1x"]))
def test_swapping_pred_and_gold_swaps_precision_and_recall(data, mode):
    gold = data.draw(_CORPUS)
    pred = [data.draw(st.lists(_TAGS, min_size=len(s), max_size=len(s))) for s in gold]
    a, b = tagging_f1(pred, gold, mode), tagging_f1(gold, pred, mode)
    assert a["precision"] == b["recall"] and a["recall"] == b["precision"]
    assert a["f1"] == pytest.approx(b["f1"])
    assert 0.0 <= a["f1"] <= 100.0


@settings(max_examples=60, deadline=None)
@given(corpus=_CORPUS, mode=st.just("official"))
def test_chunks_lie_inside_their_sentence(corpus, mode):
    # offsets run over the sentences joined with one 'O' each; with 0.0.12 no chunk covers a
    # separator (1.2.2 can: see test_x_chunk_can_cross_sentences_in_122)
    separators, pos = set(), 0
    for sentence in corpus:
        pos += len(sentence)
        separators.add(pos)
        pos += 1
    for _, start, end in get_entities(corpus, mode):
        assert 0 <= start <= end < pos
        assert not any(start <= s <= end for s in separators)
    # a corpus scored against itself: 100 if it has a chunk, else 0
    expected = 100.0 if get_entities(corpus, mode) else 0.0
    assert tagging_f1(corpus, corpus, mode)["f1"] == pytest.approx(expected)
