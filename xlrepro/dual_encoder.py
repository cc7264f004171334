"""Dual-encoder retrieval of XTREME-R: LAReQA (XQuAD-R) and Mewsli-X, and the encoder choice of Tatoeba.

The model is the XTREME-R baseline's ``BertForRetrieval``: ONE encoder shared by both towers
(question/mention and answer/entity), each input pooled as the L2-normalised ``tanh(dense(<s>))``
(the encoder's pooler output), logits = cosine x a learnable scale (initialised to 100), and an
in-batch softmax cross-entropy from the queries to the candidates of the batch (other pairs of
the batch are the negatives; an in-batch duplicate answer counts as a negative, as officially).
The pooler is a fresh, seeded layer: the phase hand-off keeps the encoder only.

Training data (the task's registry ``train_source``):
- LAReQA: SQuAD v1.1 train; query = the question, candidate = the (answer sentence, paragraph)
  pair, where the answer sentence is the one holding the first answer's start
  (``readers_retrieval.sentence_breaks``; questions whose answer starts in no sentence are
  skipped and counted). Early stopping: mAP@20 of the first ``eval_subset`` SQuAD dev questions
  against every sentence of their paragraphs.
- Mewsli-X: the English Wikipedia (mention, entity) pairs; early stopping: MRR@20 of the first
  ``eval_subset`` Wikipedia dev mentions against the entities of those pairs. Evaluation is on
  WikiNews mentions: the train -> eval domain shift is recorded with every number.

Evaluation ranks with ``xlrepro.ops.knn`` on raw dot products (the official scorers' similarity;
the towers' outputs are unit vectors). Both @20 metrics need only the top 20 of each ranking: AP@k
counts hits within the top k and divides by min(#relevant, k), MRR@k looks at the top k. Ties and
near-ties (relative gap <= 1e-5) among the top k+1 scores of a LAReQA question make the ranking
depend on the sort's tie order: such a question is re-ranked exactly as the official scorer ranks
(numpy ``argsort()[::-1]`` over all candidates; in ``corrected`` mode a stable sort), so the
result equals ``metrics.lareqa_map_at_k`` on the same embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xlrepro.model import MultiTaskModel, load_encoder, save_encoder
from xlrepro.packing import pack_batch
from xlrepro.runs import tmp_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DUAL_ENCODER_TASKS = ("lareqa", "mewslix")
ENCODER_SOURCES = ("intermediate", "squad_mrc", "squad_dual_encoder")
NEAR_TIE_RTOL = 1e-5


class DualEncoder(nn.Module):
    """Shared-weight dual encoder (module docstring)."""

    def __init__(self, encoder: PreTrainedModel, packed: bool = False, seed: int = 0, logit_scale: float = 100.0):
        super().__init__()
        self.body = MultiTaskModel(encoder, packed=packed)
        hidden = encoder.config.hidden_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.pooler = nn.Linear(hidden, hidden)
            nn.init.normal_(self.pooler.weight, std=encoder.config.initializer_range)
            nn.init.zeros_(self.pooler.bias)
        self.logit_scale = nn.Parameter(torch.full((1,), float(logit_scale)))

    @property
    def encoder(self) -> PreTrainedModel:
        return self.body.encoder

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.body.packed:  # unpadded tokens; the <s> vectors are taken from the packed output directly
            ids, cu, mx, _ = pack_batch(input_ids, attention_mask)
            first = self.body.family.packed_forward(
                self.encoder, ids, cu, mx, attention_backend=self.body.attention_backend
            )[cu[:-1].long()]
        else:
            first = self.body.encode(input_ids, attention_mask).last_hidden_state[:, 0]
        return F.normalize(torch.tanh(self.pooler(first)), p=2, dim=1)

    def forward(self, q_input_ids, q_attention_mask, a_input_ids, a_attention_mask) -> torch.Tensor:
        q = self.embed(q_input_ids, q_attention_mask)
        a = self.embed(a_input_ids, a_attention_mask)
        logits = (q @ a.T) * self.logit_scale
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=logits.device))


def save_dual_encoder(model: DualEncoder, out_dir: Path, meta: dict) -> None:
    out_dir = Path(out_dir)
    save_encoder(model.body, out_dir, {"dual_encoder": True, **meta})
    dest = out_dir / "towers.pt"
    tmp = tmp_path(dest)
    try:
        torch.save({"pooler": model.pooler.state_dict(), "logit_scale": model.logit_scale.detach().cpu()}, tmp)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def load_dual_encoder(path: Path, packed: bool = False) -> DualEncoder:
    path = Path(path)
    model = DualEncoder(load_encoder(path), packed=packed)
    state = torch.load(path / "towers.pt", map_location="cpu", weights_only=True)
    model.pooler.load_state_dict(state["pooler"])
    with torch.no_grad():
        model.logit_scale.copy_(state["logit_scale"])
    return model


# ---------------------------------------------------------------------- features


def tokenize(tokenizer, texts: list, max_len: int) -> list[list[int]]:
    """Token ids of single texts or (text, text_pair) tuples, truncated longest-first to ``max_len``."""
    if not texts:
        return []
    if isinstance(texts[0], tuple):
        enc = tokenizer([t[0] for t in texts], [t[1] for t in texts], truncation="longest_first", max_length=max_len)
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_len)
    return [list(x) for x in enc["input_ids"]]


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def pair_features(tokenizer, queries: list, candidates: list, q_len: int, c_len: int) -> list[dict]:
    q = tokenize(tokenizer, queries, q_len)
    a = tokenize(tokenizer, candidates, c_len)
    return [{"input_ids": qi, "a_input_ids": ai} for qi, ai in zip(q, a)]


def make_collate(pad_id: int):
    def collate(feats: list[dict]) -> dict:
        q_ids, q_mask = _pad([f["input_ids"] for f in feats], pad_id)
        a_ids, a_mask = _pad([f["a_input_ids"] for f in feats], pad_id)
        return {"q_input_ids": q_ids, "q_attention_mask": q_mask, "a_input_ids": a_ids, "a_attention_mask": a_mask}

    return collate


@torch.no_grad()
def encode(model: DualEncoder, tokenizer, texts: list, max_len: int, batch_size: int, device: str) -> torch.Tensor:
    """Unit-vector embeddings (float32, CPU) of texts or (text, pair) tuples, in input order."""
    was_training = model.training
    model.eval()
    ids = tokenize(tokenizer, texts, max_len)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.encoder.config.hidden_size)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x, m = _pad([ids[i] for i in idx], tokenizer.pad_token_id)
        out[torch.tensor(idx)] = model.embed(x.to(device), m.to(device)).float().cpu()
    model.train(was_training)
    return out


# ---------------------------------------------------------------------- ranking and the @20 metrics


def top_k(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``xlrepro.ops.knn`` on raw dot products, k capped at the number of keys."""
    from xlrepro.ops import knn

    return knn(queries.float().contiguous(), keys.float().contiguous(), min(k, keys.shape[0]), similarity="dot")


def lareqa_map_knn(
    questions: torch.Tensor,
    candidates: torch.Tensor,
    question_xling_ids: list,
    candidate_xling_ids: list,
    k: int = 20,
    mode: str = "official",
) -> dict:
    """LAReQA mAP@k from ``xlrepro.ops.knn`` top-(k+1) lists; equal to ``metrics.lareqa_map_at_k``
    on the same embeddings (module docstring: ties are re-ranked the official way).

    Returns ``{"map@k", "per_question" (AP on 0-1), "n_reranked", "mode", ...}``.
    """
    from xlrepro.metrics.retrieval import average_precision_at_k, xling_set

    if k < 1:
        raise ValueError(f"lareqa_map_knn: k must be >= 1 (full-ranking mAP is metrics.lareqa_map_at_k), got {k}")
    if len(question_xling_ids) != questions.shape[0] or len(candidate_xling_ids) != candidates.shape[0]:
        raise ValueError("lareqa_map_knn: id lists and embeddings differ in length")
    by_xling: dict = {}
    for c, value in enumerate(candidate_xling_ids):
        for x in xling_set(value):
            by_xling.setdefault(x, []).append(c)
    scores, idx = top_k(questions, candidates, k + 1)
    Q, C = questions.float().numpy(), candidates.float().numpy()
    aps, reranked = [], 0
    for qi, xling in enumerate(question_xling_ids):
        targets = by_xling.get(xling)
        if not targets:
            raise ValueError(f"lareqa_map_knn: question {qi} (xling id {xling!r}) has no relevant candidate")
        s = scores[qi].numpy()
        gaps = np.abs(np.diff(s))
        tol = NEAR_TIE_RTOL * max(1e-30, float(np.abs(s).max()))
        if len(s) > 1 and (gaps <= tol).any():
            row = np.squeeze(np.expand_dims(Q[qi], 0).dot(C.T), axis=0)
            ranking = row.argsort()[::-1] if mode == "official" else np.argsort(-row, kind="stable")
            reranked += 1
        else:
            ranking = idx[qi].numpy()
        aps.append(average_precision_at_k(ranking[:k].tolist(), targets, k, mode=mode))
    return {
        f"map@{k}": float(np.mean(aps)) * 100,
        "per_question": aps,
        "n_reranked": reranked,
        "mode": mode,
        "n_questions": len(aps),
        "n_candidates": int(candidates.shape[0]),
    }


def ranked_ids(queries: torch.Tensor, keys: torch.Tensor, key_ids: list[str], k: int) -> list[list[str]]:
    _, idx = top_k(queries, keys, k)
    return [[key_ids[j] for j in row] for row in idx.tolist()]


# --------------------------------------------------------------------- config (the phases: xlrepro.phases.dual_encoder)


def dual_encoder_train_config(cfg, task: str):
    """``retrieval.dual_encoder.train`` + ``retrieval.dual_encoder.per_task[task]``."""
    from xlrepro.config import TrainConfig, from_dict, to_dict

    de = cfg.retrieval.dual_encoder
    return from_dict(TrainConfig, {**to_dict(de.train), **(de.per_task.get(task) or {})})


def retrieval_encoder_source(exp, task: str) -> str:
    """``retrieval.encoder[task]``, else the task's registry choice for ``retrieval.benchmark``,
    else "intermediate"."""
    from xlrepro.tasks import get_task

    r = exp.cfg.retrieval
    by_bench = get_task(task).retrieval.get("encoder") or {}
    return r.encoder.get(task) or (by_bench.get(r.benchmark) if isinstance(by_bench, dict) else None) or "intermediate"
