"""Retrieval embeddings (BUCC, Tatoeba): the packed encoder path gives the padded path's embeddings.

fp32, max relative error <= 1e-5 (the packed model's bound, tests/test_packed_model.py), for mean
and cls pooling, several hidden layers, odd sentence lengths including a single-token sentence,
several batches (the input order must come back).
"""

import pytest
import torch
from transformers import BatchEncoding

from xlrepro.config import ModelConfig
from xlrepro.model import build_encoder
from xlrepro.retrieval import embed, packed_pool

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 130,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}  # dropout on: embed must switch it off


class WordTokenizer:
    """One id per whitespace word, no special tokens (so a one-word sentence is one token); pads with 1."""

    pad_token_id = 1

    def __call__(self, texts, truncation=True, max_length=None, padding=False, return_tensors=None):
        ids = [[3 + sum(map(ord, w)) % 50 for w in t.split()][:max_length] for t in texts]
        if not padding:
            return {"input_ids": ids}
        L = max(len(x) for x in ids)
        return BatchEncoding(
            {
                "input_ids": torch.tensor([x + [1] * (L - len(x)) for x in ids]),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (L - len(x)) for x in ids]),
            }
        )


def _sentences():
    g = torch.Generator().manual_seed(0)
    # token lengths 1 .. 97 (odd ones among them); characters per word vary, so the length sort that
    # groups the batches differs from the input order
    lengths = [7, 1, 33, 2, 97, 13, 1, 20, 5, 64, 3]
    return [" ".join("x" * int(torch.randint(1, 6, (1,), generator=g)) + str(i) for i in range(n)) for n in lengths]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_packed_embeddings_equal_padded(pooling):
    enc = build_encoder(ModelConfig(init_config=TINY), vocab_size=60, seed=0)
    sents, tok = _sentences(), WordTokenizer()
    for layer in (0, 1, 3):
        args = dict(layer=layer, pooling=pooling, max_len=100, batch_size=4)
        padded = embed(enc, tok, sents, **args)
        packed = embed(enc, tok, sents, packed=True, **args)
        assert packed.shape == padded.shape == (len(sents), 32) and packed.dtype == torch.float32
        rel = ((packed - padded).abs().max() / padded.abs().max()).item()
        assert rel <= 1e-5, (layer, rel)
        # the order is restored: each row is that sentence embedded alone (batch of one, no padding)
        for i in (0, 4, 6):
            alone = embed(enc, tok, [sents[i]], **args)[0]
            assert torch.allclose(packed[i], alone, rtol=1e-5, atol=1e-6 * alone.abs().max().item())
    # embeddings of different sentences differ, so the order check above can fail
    assert (packed[0] - packed[2]).abs().max() > 1e-3


def test_packed_pool_matches_its_definition():
    h = torch.randn(11, 4, dtype=torch.float64)
    cu = torch.tensor([0, 1, 1, 6, 11], dtype=torch.int32)  # an empty sequence pools to zeros (mean)
    mean = packed_pool(h, cu, "mean")
    assert torch.allclose(mean, torch.stack([h[0], torch.zeros(4, dtype=h.dtype), h[1:6].mean(0), h[6:].mean(0)]))
    assert mean.dtype == torch.float64
    assert torch.equal(packed_pool(h[:6], torch.tensor([0, 1, 6], dtype=torch.int32), "cls"), h[[0, 1]])
    with pytest.raises(ValueError, match="empty sequence"):
        packed_pool(h, cu, "cls")
    with pytest.raises(ValueError, match="pooling must be one of"):
        packed_pool(h, cu, "max")
