"""Packed (padding-free) encoders: a forward of a Hugging Face post-LN encoder (XLM-R, BERT: the
families of ``xlrepro.models``) on unpadded tokens, and the batch planner of a packing collator
(measured by benchmarks/model_packing.py).

Why not Hugging Face's own padding-free path: concatenating sequences into one row and passing
restarting ``position_ids`` only isolates the sequences under ``flash_attention_2``; with
``sdpa`` or ``eager`` (the CPU paths) no block mask is built, every token attends to every other
sequence of the row and the result is silently wrong (``tests/test_packing.py`` shows it).

``packed_encoder_forward`` runs a loaded ``XLMRobertaModel`` or ``BertModel`` (the two share the
embedding and layer modules) on a (total_tokens,) id vector with the caller's position ids (model
code calls it through the encoder family's ``packed_forward``, which supplies them):
embeddings, every token-wise module (q/k/v projections, output dense, FFN, LayerNorms, dropout)
on the (T, H) tensor by calling the model's own submodules, and self-attention through
``xlrepro.ops.varlen_attention`` with ``cu_seqlens``, so no FLOP is spent on padding and each
sequence attends only to itself. Nothing in transformers is patched; the parameters are the
model's, so gradients land on them as with the padded forward.

``pack_batch`` / ``unpack`` convert a padded (B, L) batch to that layout and back.

``plan_packed_batches`` chooses which examples share a batch under a token budget: shuffle by
(seed, epoch), first-fit-decreasing inside windows of consecutive examples, shuffle the batches.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from xlrepro.ops.attention import pad_input, unpad_input, varlen_attention

__all__ = [
    "packed_encoder_forward",
    "packed_position_ids",
    "restarting_positions",
    "pack_batch",
    "unpack",
    "plan_packed_batches",
]


# ---------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------


def restarting_positions(cu_seqlens: torch.Tensor, first: int) -> torch.Tensor:
    """Position ids of packed tokens: ``first, first + 1, ...`` restarting at each sequence start.
    Returns (total_tokens,) int64 on cu_seqlens' device."""
    cu = cu_seqlens.to(torch.int64)
    seqlens = cu[1:] - cu[:-1]
    total = int(cu[-1]) if cu.numel() else 0
    starts = torch.repeat_interleave(cu[:-1], seqlens, output_size=total)
    return torch.arange(total, device=cu.device, dtype=torch.int64) - starts + first


def packed_position_ids(cu_seqlens: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """XLM-R position ids of packed tokens: ``padding_idx + 1, padding_idx + 2, ...`` restarting at
    each sequence start (what ``create_position_ids_from_input_ids`` gives the real tokens of a
    padded row). Returns (total_tokens,) int64 on cu_seqlens' device."""
    return restarting_positions(cu_seqlens, padding_idx + 1)


def pack_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Padded (B, L) ids + mask -> ``(input_ids_packed (T,), cu_seqlens (B+1,) int32, max_seqlen,
    indices (T,) int64)``; any padding side (a sequence is its row's unmasked tokens in order)."""
    packed, indices, cu_seqlens, max_seqlen = unpad_input(input_ids, attention_mask)
    return packed, cu_seqlens, max_seqlen, indices


def unpack(hidden_packed: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """(T, ...) -> (B, L, ...), zeros at padding (inverse of ``pack_batch``'s gather)."""
    return pad_input(hidden_packed, indices, batch, seqlen)


# ---------------------------------------------------------------------------------------------
# Packed forward of a post-LN encoder (XLMRobertaModel, BertModel)
# ---------------------------------------------------------------------------------------------


def _check_encoder(encoder) -> None:
    cfg = encoder.config
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        raise ValueError(
            "packed_encoder_forward: only the bidirectional encoder is supported "
            "(config.is_decoder and config.add_cross_attention must be False)"
        )
    pet = getattr(cfg, "position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        raise ValueError(f"packed_encoder_forward: position_embedding_type {pet!r} is not supported (absolute only)")


def _embed(emb, input_ids, position_ids, token_type_ids):
    """XLMRobertaEmbeddings.forward (= BertEmbeddings.forward) on (T,) ids, same operations in the same order."""
    x = emb.word_embeddings(input_ids) + emb.token_type_embeddings(token_type_ids)
    x = x + emb.position_embeddings(position_ids)
    return emb.dropout(emb.LayerNorm(x))


def _layer(layer, h, cu_seqlens, max_seqlen, backend):
    """XLMRobertaLayer.forward (= BertLayer.forward) on (T, H): self-attention by varlen_attention, the rest token-wise
    through the layer's own modules."""
    sa = layer.attention.self
    T = h.shape[0]
    shape = (T, sa.num_attention_heads, sa.attention_head_size)
    q = sa.query(h).view(shape)
    k = sa.key(h).view(shape)
    v = sa.value(h).view(shape)
    dropout_p = sa.dropout.p if sa.training else 0.0
    ctx = varlen_attention(
        q, k, v, cu_seqlens, max_seqlen, scale=sa.scaling, dropout_p=dropout_p, backend=backend, validate=False
    )
    a = layer.attention.output(ctx.reshape(T, sa.all_head_size), h)  # dense, dropout, LN(+h)
    return layer.output(layer.intermediate(a), a)  # FFN, dropout, LN(+a)


def packed_encoder_forward(
    encoder,
    input_ids_packed: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    position_ids: torch.Tensor,
    output_hidden_states: bool = False,
    attention_backend: str = "auto",
    token_type_ids: torch.Tensor | None = None,
):
    """Run a Hugging Face ``XLMRobertaModel`` or ``BertModel`` on packed sequences.

    input_ids_packed: (T,) int64, the sequences concatenated; cu_seqlens: (B+1,) int32 offsets
        (``pack_batch``); max_seqlen: the longest sequence.
    position_ids: (T,) int64, required: they differ between families (XLM-R numbers each sequence from
        ``padding_idx + 1``, BERT from 0), so the caller passes them; ``Family.packed_forward`` (the
        entry the model code uses) passes its family's ``packed_position_ids``.
    token_type_ids: (T,) int64; default zeros (as the model's buffer).
    attention_backend: passed to ``varlen_attention`` ("auto", "cpp", "reference", "cuda").
    Dropout follows the modules' ``training`` flags (attention dropout = the layer's
    ``attention_probs_dropout_prob`` in training, 0 in eval). Gradient checkpointing follows
    ``encoder.gradient_checkpointing_enable()`` / ``activation_checkpointing_enable()`` (per layer,
    non-reentrant, RNG preserved).
    The pooler, if any, is not applied (it needs one vector per sequence: ``h[cu_seqlens[:-1]]``).

    Returns the packed last hidden state (T, H); with ``output_hidden_states`` a pair
    ``(last, hidden_states)`` where ``hidden_states`` is a tuple of num_layers + 1 (T, H) tensors,
    index 0 the embeddings, as ``BaseModelOutput.hidden_states``.
    """
    _check_encoder(encoder)
    if input_ids_packed.dim() != 1:
        raise ValueError(
            f"packed_encoder_forward: input_ids_packed must be (total_tokens,), "
            f"got shape {tuple(input_ids_packed.shape)}"
        )
    if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
        raise ValueError("packed_encoder_forward: cu_seqlens must be a 1-D int32 tensor")
    emb = encoder.embeddings
    T = input_ids_packed.shape[0]
    # one value check of cu_seqlens here instead of one per layer
    if cu_seqlens.numel() == 0 or int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != T:
        raise ValueError(f"packed_encoder_forward: cu_seqlens must start at 0 and end at total_tokens = {T}")
    if cu_seqlens.numel() > 1 and int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) > max_seqlen:
        raise ValueError("packed_encoder_forward: max_seqlen is smaller than the longest sequence")
    if bool(((cu_seqlens[1:] - cu_seqlens[:-1]) < 0).any()):
        raise ValueError("packed_encoder_forward: cu_seqlens must be non-decreasing")
    if position_ids is None:
        raise ValueError(
            "packed_encoder_forward: position_ids are required (Family.packed_forward passes the family's)"
        )
    if token_type_ids is None:
        token_type_ids = torch.zeros(T, dtype=torch.long, device=input_ids_packed.device)
    for name, t in (("position_ids", position_ids), ("token_type_ids", token_type_ids)):
        if tuple(t.shape) != (T,):
            raise ValueError(f"packed_encoder_forward: {name} must be ({T},), got {tuple(t.shape)}")

    h = _embed(emb, input_ids_packed, position_ids, token_type_ids)
    states = [h] if output_hidden_states else None
    for layer in encoder.encoder.layer:
        if getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled():
            h = checkpoint(_layer, layer, h, cu_seqlens, max_seqlen, attention_backend, use_reentrant=False)
        else:
            h = _layer(layer, h, cu_seqlens, max_seqlen, attention_backend)
        if states is not None:
            states.append(h)
    if states is not None:  # output_hidden_states
        return h, tuple(states)
    return h


# ---------------------------------------------------------------------------------------------
# Batch planning for a packing collator
# ---------------------------------------------------------------------------------------------


def plan_packed_batches(lengths: list[int], token_budget: int, window: int, seed: int, epoch: int) -> list[list[int]]:
    """Group example indices into batches of at most ``token_budget`` packed tokens.

    1. Shuffle the example order with a generator seeded by ``(seed, epoch)`` (numpy, as
       ``train._epoch_order``).
    2. Cut the shuffled order into consecutive windows of ``window`` examples; inside each window,
       first-fit-decreasing bin packing (longest first, ties in shuffled order) into bins of
       ``token_budget`` tokens. An example longer than the budget gets a batch of its own.
       Within a batch, examples keep their shuffled order.
    3. Shuffle the batches with the same generator (so long and short batches interleave).

    Every index of ``lengths`` appears exactly once; the result depends only on
    (lengths, token_budget, window, seed, epoch). The budget counts real tokens (the packed
    total), not B * max_len.
    """
    import numpy as np

    if token_budget < 1:
        raise ValueError(f"plan_packed_batches: token_budget must be >= 1, got {token_budget}")
    if window < 1:
        raise ValueError(f"plan_packed_batches: window must be >= 1, got {window}")
    lens = [int(n) for n in lengths]
    if any(n < 0 for n in lens):
        raise ValueError("plan_packed_batches: lengths must be >= 0")
    rng = np.random.default_rng([int(seed) % 2**63, int(epoch)])
    order = rng.permutation(len(lens)).tolist()
    rank = {ex: r for r, ex in enumerate(order)}
    batches: list[list[int]] = []
    for s in range(0, len(order), window):
        win = sorted(order[s : s + window], key=lambda i: (-lens[i], rank[i]))
        bins: list[list[int]] = []
        room: list[int] = []
        for i in win:
            n = lens[i]
            if n > token_budget:
                bins.append([i])
                room.append(-1)  # closed: nothing joins an over-long example
                continue
            for b in range(len(bins)):
                if room[b] >= n:
                    bins[b].append(i)
                    room[b] -= n
                    break
            else:
                bins.append([i])
                room.append(token_budget - n)
        batches.extend(sorted(b, key=rank.__getitem__) for b in bins)
    perm = rng.permutation(len(batches)).tolist()
    return [batches[j] for j in perm]
