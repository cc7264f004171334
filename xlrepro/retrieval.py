"""Retrieval evaluation straight from an encoder: embeddings, search and scoring.

The protocol is explicit and logged with every number: the hidden layer (``hidden_states[layer]``,
index 0 = embeddings), pooling (``mean`` over non-padding tokens, special tokens included, or
``cls``), similarity (``cosine`` or raw ``dot``), and for Tatoeba the direction (English
queries, index on the other side, as the official code does; the reverse is logged as a
diagnostic). Search goes through ``xlrepro.ops.knn`` when the fused op is available, else through
the PyTorch path below.
"""
from __future__ import annotations

import torch

from xlrepro.ops import masked_mean_pool


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
    """Top-k (scores, indices) of each query among the keys; ties go to the lowest index."""
    try:
        from xlrepro.ops import knn  # the fused op family (when present in this build)
    except ImportError:
        knn = None
    if knn is not None:
        return knn(queries, keys, k, similarity=similarity)
    q, kk = queries.float(), keys.float()
    if similarity == "cosine":
        q = torch.nn.functional.normalize(q, dim=-1)
        kk = torch.nn.functional.normalize(kk, dim=-1)
    scores = q @ kk.T
    # stable descending sort: among equal scores the lowest key index comes first
    vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
    return vals[:, :k], idx[:, :k]


def search_backend() -> str:
    try:
        from xlrepro.ops import knn  # noqa: F401
        return "xlrepro.ops.knn"
    except ImportError:
        return "torch matmul + stable sort (fused op not in this build)"
