"""Retrieval evaluation straight from an encoder: embeddings, search and scoring.

The protocol is explicit and logged with every number: the hidden layer (``hidden_states[layer]``,
index 0 = embeddings), pooling (``mean`` over non-padding tokens, special tokens included, or
``cls``), similarity (``cosine`` or raw ``dot``), and for Tatoeba the direction (English
queries, index on the other side, as the official code does; the reverse is logged as a
diagnostic). Search goes through ``xlrepro.ops.knn``, which runs the fused op where it is built and its
PyTorch reference elsewhere; the backend used is recorded.

Embeddings run the encoder padded (a (B, L) batch through the Hugging Face forward) or packed
(``packed=True``, the experiment's ``model.attention: packed``): the batch's sentences are
concatenated into one (total_tokens,) vector and run by the family's ``packed_forward`` (attention
per sentence through ``xlrepro.ops.varlen_attention``), and the chosen layer is pooled straight from the
packed (T, H) tokens: a segment mean per sentence, or its first token for ``cls``. No (B, L, H)
tensor is built. Both give the same embeddings (fp32: relative error <= 1e-5, tested); the mode is
recorded with the protocol.
"""

from __future__ import annotations

import torch

from xlrepro.models import family_of
from xlrepro.ops import knn, knn_backend, masked_mean_pool

POOLINGS = ("mean", "cls")


def packed_pool(hidden: torch.Tensor, cu_seqlens: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool packed token vectors (T, H) per sequence (``cu_seqlens``: (B+1,) offsets) -> (B, H) in
    hidden's dtype: ``mean`` over each sequence's tokens (accumulated in float32, float64 for float64,
    as ``masked_mean_pool``; an empty sequence pools to zeros), ``cls`` = its first token."""
    if pooling not in POOLINGS:
        raise ValueError(f"retrieval pooling must be one of {POOLINGS}, got {pooling!r}")
    cu = cu_seqlens.to(device=hidden.device, dtype=torch.long)
    lens = cu[1:] - cu[:-1]
    if pooling == "cls":
        if bool((lens == 0).any()):
            raise ValueError("packed_pool: cls pooling of an empty sequence")
        return hidden[cu[:-1]]
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    seg = torch.repeat_interleave(torch.arange(lens.numel(), device=hidden.device), lens, output_size=hidden.shape[0])
    total = torch.zeros(lens.numel(), hidden.shape[1], dtype=acc, device=hidden.device).index_add_(
        0, seg, hidden.to(acc)
    )
    return (total / lens.clamp(min=1).unsqueeze(1).to(acc)).to(hidden.dtype)


@torch.no_grad()
def embed(
    encoder,
    tokenizer,
    sentences: list[str],
    layer: int,
    pooling: str,
    max_len: int,
    batch_size: int,
    device: str = "cpu",
    packed: bool = False,
    attention_backend: str = "auto",
) -> torch.Tensor:
    """(N, H) float32 CPU embeddings of ``sentences`` in input order: ``hidden_states[layer]`` pooled
    (module docstring); ``packed`` runs the encoder on the unpadded tokens."""
    n_layers = encoder.config.num_hidden_layers
    if not 0 <= layer <= n_layers:
        raise ValueError(f"retrieval layer {layer} out of range: the encoder has hidden_states[0..{n_layers}]")
    if pooling not in POOLINGS:
        raise ValueError(f"retrieval pooling must be one of {POOLINGS}, got {pooling!r}")
    encoder.eval()
    out = []
    # sort by length so batches pad little (packed: so batches hold similar token counts); restore the order at the end
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        texts = [sentences[i] for i in idx]
        if packed:
            ids = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
            lens = torch.tensor([len(x) for x in ids], dtype=torch.int32)
            cu = torch.zeros(len(ids) + 1, dtype=torch.int32)
            torch.cumsum(lens, 0, out=cu[1:])
            flat = torch.tensor([t for x in ids for t in x], dtype=torch.long, device=device)
            _, hs = family_of(encoder).packed_forward(
                encoder,
                flat,
                cu.to(device),
                int(lens.max()),
                output_hidden_states=True,
                attention_backend=attention_backend,
            )
            pooled = packed_pool(hs[layer], cu, pooling)
        else:
            enc = tokenizer(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt").to(device)
            hs = encoder(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True
            ).hidden_states[layer]
            pooled = masked_mean_pool(hs, enc["attention_mask"]) if pooling == "mean" else hs[:, 0]
        out.append(pooled.float().cpu())
    emb = torch.cat(out) if out else torch.empty(0, encoder.config.hidden_size)
    result = torch.empty_like(emb)
    result[torch.tensor(order, dtype=torch.long)] = emb
    return result


def nearest(
    queries: torch.Tensor, keys: torch.Tensor, similarity: str, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, indices) of each query among the keys; ties go to the lowest index.

    Runs ``xlrepro.ops.knn`` (fused op where built, its PyTorch reference elsewhere).
    """
    return knn(queries.float().contiguous(), keys.float().contiguous(), k, similarity=similarity)


def search_backend(queries: torch.Tensor) -> str:
    """Which backend ``nearest`` runs for inputs like ``queries`` (recorded with every result)."""
    return "xlrepro.ops.knn/" + knn_backend(queries.float().contiguous(), k=1)
