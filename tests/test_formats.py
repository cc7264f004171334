import pytest
import torch

from xlrepro.config import TrainConfig
from xlrepro.data.types import Answer, SpanQAExample, TaggingExample
from xlrepro.formats import IGNORE, adapter_for
from xlrepro.smoke.tokenizer import build_tokenizer
from xlrepro.smoke.world import generate
from xlrepro.tasks import get_task


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate(root / "w", ["en", "tr"], seed=3, n_train=20, n_dev=5, n_test=5, n_corpus=500)
    return build_tokenizer(sorted((root / "w" / "corpus").glob("*.txt")), 300, root / "tok")


def test_qa_windows_locate_answers_and_decode_them_back(tok):
    cfg = TrainConfig(doc_stride=8, max_query_length=6)
    ad = adapter_for(get_task("squad"), tok, 24, cfg)
    ctx = "the tall doctor eats the fresh apple . the old king holds the sharp knife . the dog sees the cat ."
    ans = "the sharp knife"
    ex = SpanQAExample("q", "the old king holds what ?", ctx, [Answer(ans, ctx.index(ans))])
    feats = ad.featurize([ex], train=True)
    assert len(feats) > 1, "a long context is split into overlapping windows"
    hits = [f for f in feats if f["start"] > 0]
    assert hits, "some window contains the answer"
    # logits that point exactly at the gold positions decode back to the answer text
    logits = []
    for f in feats:
        l = torch.full((len(f["input_ids"]), 2), -10.0)
        if f["start"] > 0:
            l[f["start"], 0] = l[f["end"], 1] = 10.0
        logits.append(l)
    assert ad.predict(logits, feats, [ex]) == [ans]
    # windows without the answer point at <s>
    assert all(f["start"] == f["end"] == 0 for f in feats if f not in hits)


def test_tagging_labels_first_subword_and_splits_long_sentences(tok):
    ad = adapter_for(get_task("udpos"), tok, 8, TrainConfig())
    words = ["the", "tall", "doctor", "eats", "the", "fresh", "apple", ".", "the", "dog", "sees", "cat"]
    tags = ["DET", "ADJ", "NOUN", "VERB", "DET", "ADJ", "NOUN", "PUNCT", "DET", "NOUN", "VERB", "NOUN"]
    feats = ad.featurize([TaggingExample("s", words, tags)], train=True)
    assert len(feats) > 1 and all(len(f["input_ids"]) <= 8 for f in feats)
    assert sum(len(f["firsts"]) for f in feats) == len(words)
    for f in feats:
        labelled = [p for p, l in enumerate(f["labels"]) if l != IGNORE]
        assert labelled == f["firsts"]
    # perfect logits give back the gold tags, stitched across the pieces
    logits = []
    for f in feats:
        l = torch.zeros(len(f["input_ids"]), len(ad.labels))
        for k, p in enumerate(f["firsts"]):
            l[p, ad.labels.index(tags[f["word_start"] + k])] = 1.0
        logits.append(l)
    assert ad.predict(logits, feats, [TaggingExample("s", words, None)]) == [tags]


def test_multiple_choice_masks_missing_choices(tok):
    from xlrepro.data.types import MultipleChoiceExample

    ad = adapter_for(get_task("hellaswag"), tok, 32, TrainConfig())
    feats = ad.featurize(
        [
            MultipleChoiceExample("a", "the dog eats", ["the cake .", "the box ."], 0),
            MultipleChoiceExample("b", "the man uses", ["the pen .", "the egg .", "the cup ."], 2),
        ],
        train=True,
    )
    batch = ad.collate(feats)
    assert batch.inputs["input_ids"].shape[:2] == (2, 3)
    logits = torch.tensor([[0.0, 0.0, 50.0], [0.0, 0.0, 1.0]])
    assert ad.predict(logits, feats, None) == [0, 2], "a padded-out choice can never be predicted"
    assert torch.isfinite(ad.loss(logits, batch.targets))


def test_squad_v2_predicts_no_answer_when_the_null_score_wins(tok):
    cfg = TrainConfig(doc_stride=8, max_query_length=16)
    ctx = "the old king holds the sharp knife ."
    ex = SpanQAExample("q", "the old king holds what ?", ctx, [], is_impossible=True)
    for task, expect_empty in (("squad_v2", True), ("squad", False)):
        ad = adapter_for(get_task(task), tok, 48, cfg)
        feats = ad.featurize([ex], train=True)
        assert feats[0]["start"] == feats[0]["end"] == 0, "unanswerable questions point at <s>"
        l = torch.zeros(len(feats[0]["input_ids"]), 2)
        l[0] = 5.0  # null score 10
        first_ctx = next(p for p, o in enumerate(feats[0]["offsets"]) if o is not None)
        l[first_ctx] = 4.0  # best span scores 8
        pred = ad.predict([l], feats, [ex])[0]
        assert (pred == "") == expect_empty, (task, pred)


def test_shuffled_tags_keep_lengths_and_distribution_and_lose_the_word_relation(tok):
    import random

    ad = adapter_for(get_task("udpos"), tok, 32, TrainConfig())
    words = [["the", "dog", "eats", "the", "apple", "."], ["the", "cat", "sees", "a", "dog", "."]] * 20
    tags = [["DET", "NOUN", "VERB", "DET", "NOUN", "PUNCT"], ["DET", "NOUN", "VERB", "DET", "NOUN", "PUNCT"]] * 20
    exs = [TaggingExample(f"s{i}", w, t) for i, (w, t) in enumerate(zip(words, tags))]
    out = ad.shuffled(exs, random.Random(0))
    assert [len(e.tags) for e in out] == [len(e.tags) for e in exs] and [e.words for e in out] == words
    flat = lambda es: sorted(t for e in es for t in e.tags)
    assert flat(out) == flat(exs)  # the tag distribution is kept
    # ... and "the" no longer always carries DET
    assert {t for e in out for w, t in zip(e.words, e.tags) if w == "the"} != {"DET"}
    assert ad.shuffled(exs, random.Random(0)) == out  # seeded
    # span QA has no labels to shuffle
    assert adapter_for(get_task("squad"), tok, 32, TrainConfig()).shuffled([], random.Random(0)) is None
