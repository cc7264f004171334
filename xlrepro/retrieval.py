"""Retrieval evaluation straight from an encoder: embeddings, search and scoring.

The protocol is explicit and logged with every number: the hidden layer (``hidden_states[layer]``,
index 0 = embeddings), pooling (``mean`` over non-padding tokens, special tokens included, or
``cls``), similarity (``cosine`` or raw ``dot``), and for Tatoeba the direction (English
queries, index on the other side, as the official code does; the reverse is logged as a
diagnostic). Search goes through ``xlrepro.ops.knn``, which runs the fused op where it is built and its
PyTorch reference elsewhere; the backend used is recorded.
"""
from __future__ import annotations

import torch

from xlrepro.ops import knn, masked_mean_pool


@torch.no_grad()
def embed(encoder, tokenizer, sentences: list[str], layer: int, pooling: str, max_len: int, batch_size: int,
          device: str = "cpu") -> torch.Tensor:
    n_layers = encoder.config.num_hidden_layers
    if not 0 <= layer <= n_layers:
        raise ValueError(f"retrieval layer {layer} out of range: the encoder has hidden_states[0..{n_layers}]")
    encoder.eval()
    out = []
    # sort by length so batches pad little; restore the order at the end
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = tokenizer([sentences[i] for i in idx], truncation=True, max_length=max_len, padding=True,
                        return_tensors="pt").to(device)
        hs = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     output_hidden_states=True).hidden_states[layer]
        pooled = masked_mean_pool(hs, enc["attention_mask"]) if pooling == "mean" else hs[:, 0]
        out.append(pooled.float().cpu())
    emb = torch.cat(out) if out else torch.empty(0, encoder.config.hidden_size)
    result = torch.empty_like(emb)
    result[torch.tensor(order, dtype=torch.long)] = emb
    return result


def nearest(queries: torch.Tensor, keys: torch.Tensor, similarity: str, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, indices) of each query among the keys; ties go to the lowest index.

    Runs ``xlrepro.ops.knn`` (fused op where built, its PyTorch reference elsewhere).
    """
    return knn(queries.float().contiguous(), keys.float().contiguous(), k, similarity=similarity)


def search_backend(queries: torch.Tensor) -> str:
    """Which backend ``nearest`` runs for inputs like ``queries`` (recorded with every result)."""
    from xlrepro.ops._dispatch import select
    from xlrepro.ops.similarity import KNN_BACKENDS

    return "xlrepro.ops.knn/" + select(KNN_BACKENDS, "auto", queries.float().contiguous(), k=1).name
