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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xlrepro import distributed as dist
from xlrepro.model import MultiTaskModel, load_encoder, save_encoder
from xlrepro.runs import tmp_path

DUAL_ENCODER_TASKS = ("lareqa", "mewslix")
ENCODER_SOURCES = ("intermediate", "squad_mrc", "squad_dual_encoder")
NEAR_TIE_RTOL = 1e-5


class DualEncoder(nn.Module):
    """Shared-weight dual encoder (module docstring)."""

    def __init__(self, encoder: nn.Module, packed: bool = False, seed: int = 0, logit_scale: float = 100.0):
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
    def encoder(self) -> nn.Module:
        return self.body.encoder

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.body.packed:  # unpadded tokens; the <s> vectors are taken from the packed output directly
            from xlrepro.packing import pack_batch, packed_encoder_forward

            ids, cu, mx, _ = pack_batch(input_ids, attention_mask)
            first = packed_encoder_forward(self.encoder, ids, cu, mx,
                                           attention_backend=self.body.attention_backend)[cu[:-1].long()]
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
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
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
        idx = order[s:s + batch_size]
        x, m = _pad([ids[i] for i in idx], tokenizer.pad_token_id)
        out[torch.tensor(idx)] = model.embed(x.to(device), m.to(device)).float().cpu()
    model.train(was_training)
    return out


# ---------------------------------------------------------------------- ranking and the @20 metrics


def top_k(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``xlrepro.ops.knn`` on raw dot products, k capped at the number of keys."""
    from xlrepro.ops import knn

    return knn(queries.float().contiguous(), keys.float().contiguous(), min(k, keys.shape[0]), similarity="dot")


def lareqa_map_knn(questions: torch.Tensor, candidates: torch.Tensor, question_xling_ids: list,
                   candidate_xling_ids: list, k: int = 20, mode: str = "official") -> dict:
    """LAReQA mAP@k from ``xlrepro.ops.knn`` top-(k+1) lists; equal to ``metrics.lareqa_map_at_k``
    on the same embeddings (module docstring: ties are re-ranked the official way).

    Returns ``{"map@k", "per_question" (AP on 0-1), "n_reranked", "mode", ...}``.
    """
    from xlrepro.metrics.retrieval import _xling_set, average_precision_at_k

    if k < 1:
        raise ValueError(f"lareqa_map_knn: k must be >= 1 (full-ranking mAP is metrics.lareqa_map_at_k), got {k}")
    if len(question_xling_ids) != questions.shape[0] or len(candidate_xling_ids) != candidates.shape[0]:
        raise ValueError("lareqa_map_knn: id lists and embeddings differ in length")
    by_xling: dict = {}
    for c, value in enumerate(candidate_xling_ids):
        for x in _xling_set(value):
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
    return {f"map@{k}": float(np.mean(aps)) * 100, "per_question": aps, "n_reranked": reranked, "mode": mode,
            "n_questions": len(aps), "n_candidates": int(candidates.shape[0])}


def ranked_ids(queries: torch.Tensor, keys: torch.Tensor, key_ids: list[str], k: int) -> list[list[str]]:
    _, idx = top_k(queries, keys, k)
    return [[key_ids[j] for j in row] for row in idx.tolist()]


# ---------------------------------------------------------------------- pipeline phases (called by Experiment)


def dual_encoder_train_config(cfg, task: str):
    """``retrieval.dual_encoder.train`` + ``retrieval.dual_encoder.per_task[task]``."""
    from xlrepro.config import TrainConfig, from_dict, to_dict

    de = cfg.retrieval.dual_encoder
    return from_dict(TrainConfig, {**to_dict(de.train), **(de.per_task.get(task) or {})})


def _lareqa_pairs(examples, skipped: dict) -> tuple[list, list, list, list]:
    """(question texts, (sentence, paragraph) candidates, question ids, answer-sentence spans) of SQuAD examples."""
    from xlrepro.data.readers_retrieval import sentence_breaks

    breaks: dict[str, list] = {}
    qs, cands, qids, gold = [], [], [], []
    for e in examples:
        if e.context not in breaks:
            breaks[e.context] = sentence_breaks(e.context)
        start = e.answers[0].start
        hit = next(((a, b) for a, b in breaks[e.context] if a <= start < b), None)
        if hit is None:
            rule = "answer starts in no sentence (official: skipped)"
            skipped[rule] = skipped.get(rule, 0) + 1
            continue
        qs.append(e.question)
        cands.append((e.context[hit[0]:hit[1]], e.context))
        qids.append(e.guid)
        gold.append(hit)
    return qs, cands, qids, gold


def _training_data(exp, task: str, split: str, limit: int | None = None) -> tuple[list, list, dict, dict]:
    """(queries, candidates, files, skipped) of the English training source of ``task``."""
    from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text
    from xlrepro.tasks import get_task

    source = get_task(task).train_source if split == "train" else get_task(task).dev_source
    data = exp.read(source, split, "en")
    examples = data.examples[:limit] if limit else data.examples
    skipped = dict(data.skipped)
    if task == "lareqa":
        qs, cands, _, _ = _lareqa_pairs(examples, skipped)
    else:
        qs = [mewslix_mention_text(p.mention) for p in examples]
        cands = [mewslix_entity_text(p.entity) for p in examples]
    return qs, cands, dict(data.files), skipped


def _dev_evaluator(exp, task: str, model: DualEncoder, tcfg, q_len: int, c_len: int, batch_size: int):
    """English dev score for early stopping (module docstring): LAReQA mAP@20 on SQuAD dev, Mewsli-X
    MRR@20 on Wikipedia dev pairs."""
    from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text
    from xlrepro.metrics import mewslix_map_at_k
    from xlrepro.tasks import get_task

    k = int(get_task(task).retrieval.get("k", 20))
    data = exp.read(get_task(task).dev_source, "dev", "en")
    examples = data.examples[: tcfg.eval_subset]
    tok, device = exp.tokenizer, exp.device
    if task == "lareqa":
        from xlrepro.data.readers_retrieval import sentence_breaks

        qs, pairs, qids, spans = _lareqa_pairs(examples, {})
        answer_of: dict = {}
        for qid, (_, ctx), span in zip(qids, pairs, spans):
            answer_of.setdefault((ctx, span), set()).add(qid)
        cands, owners = [], []
        for ctx in dict.fromkeys(e.context for e in examples):
            for a, b in sentence_breaks(ctx):
                cands.append((ctx[a:b], ctx))
                owners.append(answer_of.get((ctx, (a, b)), set()))

        def evaluate() -> float:
            Q = encode(model, tok, qs, q_len, batch_size, device)
            C = encode(model, tok, cands, c_len, batch_size, device)
            return lareqa_map_knn(Q, C, qids, owners, k=k)[f"map@{k}"]
    else:
        mentions = [mewslix_mention_text(p.mention) for p in examples]
        entities = {p.entity.entity_id: mewslix_entity_text(p.entity) for p in examples}
        ent_ids = list(entities)
        gold = {p.mention.guid: [p.entity.entity_id] for p in examples}
        guids = [p.mention.guid for p in examples]

        def evaluate() -> float:
            Q = encode(model, tok, mentions, q_len, batch_size, device)
            C = encode(model, tok, [entities[i] for i in ent_ids], c_len, batch_size, device)
            preds = dict(zip(guids, ranked_ids(Q, C, ent_ids, k)))
            return mewslix_map_at_k(preds, gold, k=k)[f"map@{k}"]
    return evaluate


def dual_encoder_spec(exp, task: str, encoder_spec: dict) -> dict:
    """The spec of ``task``'s dual-encoder training run started from ``encoder_spec``."""
    from xlrepro.config import to_dict
    from xlrepro.runs import key_config
    from xlrepro.tasks import get_task

    cfg = exp.cfg
    tspec = get_task(task)
    tcfg = dual_encoder_train_config(cfg, task)
    return {"kind": "dual_encoder", "task": task, "task_version": tspec.version, "train_source": tspec.train_source,
            "dev_source": tspec.dev_source, "train": key_config(to_dict(tcfg)), "upstream": encoder_spec, "seed": cfg.seed,
            "query_max_length": int(tspec.retrieval["query_max_length"]),
            "candidate_max_length": int(tspec.retrieval["candidate_max_length"]),
            "logit_scale_init": cfg.retrieval.dual_encoder.logit_scale,
            "data": {t: exp._data_spec(t) for t in (tspec.train_source, tspec.dev_source)}}


def squad_mrc_spec(exp, encoder_spec: dict) -> dict:
    """The spec of the SQuAD fine-tuning run (XTREME-R's Tatoeba encoder) started from ``encoder_spec``."""
    from xlrepro.config import to_dict, train_config_for
    from xlrepro.runs import key_config
    from xlrepro.tasks import get_task

    cfg = exp.cfg
    return {"kind": "squad_mrc", "task": "squad", "task_version": get_task("squad").version,
            "train": key_config(to_dict(train_config_for(cfg, "squad"))), "upstream": encoder_spec, "seed": cfg.seed,
            "data": exp._data_spec("squad")}


def train_dual_encoder(exp, task: str, encoder_dir, encoder_spec) -> tuple[Path, dict]:
    """Fine-tune (or reuse) the dual encoder of ``task`` on its English training source, starting
    from the encoder handed to the retrieval phase. Returns (model folder, spec reference)."""
    from xlrepro.runs import Run, files_digest
    from xlrepro.sampling import nested_subset, subset_digest
    from xlrepro.tasks import get_task
    from xlrepro.train import Stream, train

    cfg = exp.cfg
    tspec = get_task(task)
    tcfg = dual_encoder_train_config(cfg, task)
    spec = dual_encoder_spec(exp, task, encoder_spec)
    q_len, c_len = spec["query_max_length"], spec["candidate_max_length"]
    run = Run(exp.out, "dual_encoder", task, spec, keep=exp.cfg.run_keep())
    if not run.done:
        encoder = exp._new_model(encoder_dir, cfg.seed).encoder
        model = DualEncoder(encoder, packed=cfg.model.attention == "packed", seed=cfg.seed + 1,
                            logit_scale=cfg.retrieval.dual_encoder.logit_scale).to(exp.device)
        qs, cands, files, skipped = _training_data(exp, task, "train")
        keep = nested_subset(len(qs), tcfg.volume, cfg.seed)
        qs, cands = [qs[i] for i in keep], [cands[i] for i in keep]
        feats = pair_features(exp.tokenizer, qs, cands, q_len, c_len)
        evaluate = _dev_evaluator(exp, task, model, tcfg, q_len, c_len, tcfg.eval_batch_size or 2 * tcfg.batch_size)
        device = exp.device

        def loss_fn(m, batch):
            return m(**{k: v.to(device) for k, v in batch.items()})

        info = {"n_pairs": len(feats), "volume": tcfg.volume, "subset_sha256": subset_digest([str(i) for i in keep]),
                "train_source": tspec.train_source, "dev_source": tspec.dev_source,
                "train_data_sha256": files_digest(files), "skipped": skipped,
                "domain": {"train": tspec.retrieval.get("train_domain"), "eval": tspec.retrieval.get("eval_domain")}}
        run.log({"event": "data", "task": task, **info})
        state = train(model, Stream(task, feats, make_collate(exp.tokenizer.pad_token_id), loss_fn), tcfg, cfg.seed,
                      run.dir, evaluate, run.log, desc=f"dual_encoder:{task}", keep_checkpoint=True)
        if dist.is_main():
            save_dual_encoder(model, run.dir / "model", {"task": task, "run": run.hash})
            exp.tokenizer.save_pretrained(str(run.dir / "model"))
        run.finish({**info, "steps": state.step, "best_step": state.best_step, "best_dev": state.best_score,
                    "stopped_early": state.stopped_early, "logit_scale": float(model.logit_scale.detach())})
    exp.runs[run.hash] = {"kind": "dual_encoder", "task": task, "dir": str(run.dir), **run.summary()}
    return run.dir / "model", {"kind": "dual_encoder", "task": task, "run": run.hash}


def train_squad_mrc(exp, encoder_dir, encoder_spec) -> tuple[Path, dict]:
    """SQuAD v1.1 span-QA fine-tuning of the retrieval phase's encoder (``target.train`` +
    ``target.per_task.squad``); the encoder alone is kept (XTREME-R's Tatoeba checkpoint)."""
    from xlrepro.config import train_config_for
    from xlrepro.runs import Run

    cfg = exp.cfg
    tcfg = train_config_for(cfg, "squad")
    spec = squad_mrc_spec(exp, encoder_spec)
    run = Run(exp.out, "squad_mrc", "squad", spec, keep=exp.cfg.run_keep())
    if not run.done:
        model = exp._new_model(encoder_dir, cfg.seed)
        info = exp._train_tasks(model, ["squad"], tcfg, run, cfg.seed)
        info.pop("_adapters")
        if dist.is_main():
            save_encoder(model, run.dir / "encoder", {"tasks": ["squad"], "run": run.hash})
            exp.tokenizer.save_pretrained(str(run.dir / "encoder"))
        run.finish(info)
    exp.runs[run.hash] = {"kind": "squad_mrc", "task": "squad", "dir": str(run.dir), **run.summary()}
    return run.dir / "encoder", {"kind": "squad_mrc", "run": run.hash}


def retrieval_encoder_source(exp, task: str) -> str:
    """``retrieval.encoder[task]``, else the task's registry choice for ``retrieval.benchmark``,
    else "intermediate"."""
    from xlrepro.tasks import get_task

    r = exp.cfg.retrieval
    by_bench = get_task(task).retrieval.get("encoder") or {}
    return r.encoder.get(task) or (by_bench.get(r.benchmark) if isinstance(by_bench, dict) else None) \
        or "intermediate"


def retrieval_encoder_ref(exp, task: str, encoder_spec: dict) -> tuple[dict, str]:
    """What ``retrieval_encoder`` returns as (spec reference, source), computed without training."""
    from xlrepro.config import config_hash

    source = retrieval_encoder_source(exp, task)
    if source == "intermediate":
        return encoder_spec, source
    if source == "squad_mrc":
        return {"kind": "squad_mrc", "run": config_hash(squad_mrc_spec(exp, encoder_spec))}, source
    if source == "squad_dual_encoder":
        return {"kind": "dual_encoder", "task": "lareqa",
                "run": config_hash(dual_encoder_spec(exp, "lareqa", encoder_spec))}, source
    raise ValueError(f"retrieval encoder for {task}: unknown source {source!r} (expected one of {ENCODER_SOURCES})")


def retrieval_encoder(exp, task: str, encoder_dir, encoder_spec) -> tuple[Path | None, dict, str]:
    """The encoder a BUCC/Tatoeba-style task reads: ``retrieval.encoder[task]``, else the task's
    registry choice for ``retrieval.benchmark``, else the encoder handed to the retrieval phase
    ("intermediate": the intermediate encoder, or the pre-trained one without an intermediate phase).
    Returns (encoder folder, spec reference, source name)."""
    source = retrieval_encoder_source(exp, task)
    if source == "intermediate":
        return encoder_dir, encoder_spec, source
    if source == "squad_mrc":
        return (*train_squad_mrc(exp, encoder_dir, encoder_spec), source)
    if source == "squad_dual_encoder":
        return (*train_dual_encoder(exp, "lareqa", encoder_dir, encoder_spec), source)
    raise ValueError(f"retrieval encoder for {task}: unknown source {source!r} (expected one of {ENCODER_SOURCES})")


def _protocol(exp, task: str, de_spec: dict) -> dict:
    """The evaluation protocol that is part of the run's spec (hashed). What only says how it was
    computed (the knn backend, which depends on the build, and the attention mode, whose results
    agree within fp32 tolerance) is recorded with the results instead (``_recorded_protocol``)."""
    from xlrepro.tasks import get_task

    r = get_task(task).retrieval
    tcfg = dual_encoder_train_config(exp.cfg, task)
    return {"encoder_source": f"dual encoder fine-tuned on {get_task(task).train_source} (run {de_spec['run'][:12]})",
            "encoder_upstream": de_spec, "towers": "one shared encoder", "layer": "last",
            "pooling": r.get("pooling"), "similarity": r.get("similarity"), "k": int(r.get("k", 20)),
            "query_max_length": int(r["query_max_length"]), "candidate_max_length": int(r["candidate_max_length"]),
            "train": {"lr": tcfg.lr, "batch_size": tcfg.batch_size, "grad_accum": tcfg.grad_accum, "epochs": tcfg.epochs,
                      "max_steps": tcfg.max_steps, "negatives": "in-batch"},
            "train_domain": r.get("train_domain"), "eval_domain": r.get("eval_domain")}


def _recorded_protocol(exp, protocol: dict) -> dict:
    """The spec's protocol + how this run computed it: the knn backend used (embeddings are float32 on
    the CPU when ranked) and the encoder's attention mode (``model.attention``)."""
    from xlrepro.retrieval import search_backend

    return {**protocol, "search": search_backend(torch.zeros(1, 1)), "attention": exp.cfg.model.attention}


def dual_retrieval_spec(exp, task: str, encoder_spec: dict) -> dict:
    """The spec of ``task``'s retrieval run behind a dual encoder trained from ``encoder_spec``."""
    from xlrepro.config import config_hash
    from xlrepro.pipeline import METRIC_MODE
    from xlrepro.tasks import get_task

    de_spec = {"kind": "dual_encoder", "task": task, "run": config_hash(dual_encoder_spec(exp, task, encoder_spec))}
    splits = [s for s in exp.cfg.target.eval_splits if s in get_task(task).splits]
    return {"kind": "retrieval", "task": task, "task_version": get_task(task).version,
            "protocol": _protocol(exp, task, de_spec), "batch_size": exp.cfg.retrieval.batch_size,
            "eval_splits": splits, "upstream": de_spec, "data": exp._data_spec(task), "metric_mode": METRIC_MODE}


def dual_encoder_retrieval(exp, task: str, encoder_dir, encoder_spec) -> None:
    """Train the dual encoder of ``task`` (LAReQA or Mewsli-X) and evaluate it; records carry the protocol."""
    from xlrepro.runs import Run, atomic_write_json

    model_dir, de_spec = train_dual_encoder(exp, task, encoder_dir, encoder_spec)
    spec = dual_retrieval_spec(exp, task, encoder_spec)
    if spec["upstream"] != de_spec:
        raise RuntimeError(f"{task}: dual encoder run {de_spec} differs from the predicted {spec['upstream']}")
    splits = spec["eval_splits"]
    run = Run(exp.out, "retrieval", task, spec, keep=exp.cfg.run_keep())
    if not run.done:
        protocol = _recorded_protocol(exp, spec["protocol"])
        model = load_dual_encoder(model_dir, packed=exp.cfg.model.attention == "packed").to(exp.device)
        if task == "lareqa":
            records, extra = _evaluate_lareqa(exp, model, splits, protocol, run)
        else:
            records, extra = _evaluate_mewslix(exp, model, splits, protocol, run)
        if dist.is_main():
            atomic_write_json(run.dir / "results.json", {"records": records, "protocol": protocol, **extra,
                                                         "model_identity": exp.base_encoder_spec()["identity"]})
        run.finish({"protocol": protocol, **extra})
    exp._collect(run, "retrieval", task, de_spec)


def _evaluate_lareqa(exp, model, splits, protocol, run) -> tuple[list, dict]:
    """Every question of every language ranks the answer sentences of all evaluated languages pooled.
    Each language's per-question AP@k goes to ``per_question/lareqa/<split>-<lang>.json`` (rank 0)."""
    from xlrepro.items import item_source_folder
    from xlrepro.pipeline import METRIC_MODE
    from xlrepro.runs import atomic_write_json, files_digest

    task, k, bs = "lareqa", protocol["k"], exp.cfg.retrieval.batch_size
    records, extra = [], {}
    for split in splits:
        langs = exp.eval_languages(task, split)
        pools = {l: exp.read(task, split, l) for l in langs}
        q_text, q_ids, q_lang, c_text, c_owner = [], [], [], [], []
        for l, res in pools.items():
            pool = res.examples[0]
            q_text += pool.questions
            q_ids += pool.question_ids
            q_lang += [l] * len(pool.questions)
            c_text += list(zip(pool.sentences, pool.contexts))
            c_owner += [set(q) for q in pool.sentence_qids]
        Q = encode(model, exp.tokenizer, q_text, protocol["query_max_length"], bs, exp.device)
        C = encode(model, exp.tokenizer, c_text, protocol["candidate_max_length"], bs, exp.device)
        res = lareqa_map_knn(Q, C, q_ids, c_owner, k=k, mode=METRIC_MODE)
        pooled = {"pool_languages": langs, "n_candidates": len(c_text), f"map@{k}_all_questions": res[f"map@{k}"],
                  "n_reranked_for_ties": res["n_reranked"],
                  "note": "utils_lareqa's single number: the mean over all questions of all languages pooled"}
        extra[split] = pooled
        for l in langs:
            aps = [a for a, ql in zip(res["per_question"], q_lang) if ql == l]
            if dist.is_main():  # per-question AP: the run's item-level scores (xlrepro.items; no submission file)
                atomic_write_json(item_source_folder(run.dir, task) / f"{split}-{l}.json",
                                  {"metric": f"map@{k}", "mode": METRIC_MODE, "pool_languages": langs,
                                   "n_candidates": len(c_text), "question_ids": pools[l].examples[0].question_ids,
                                   "average_precision": aps})
            records.append({"task": task, "language": l, "split": split, "metric": f"map@{k}",
                            "value": float(np.mean(aps)) * 100, "mode": METRIC_MODE, "n": len(aps),
                            "data_sha256": files_digest({p: h for r in pools.values() for p, h in r.files.items()}),
                            "protocol": {**protocol, "pool_languages": langs, "n_candidates": len(c_text)}})
        run.log({"event": "lareqa", "split": split, **pooled})
    return records, extra


def _evaluate_mewslix(exp, model, splits, protocol, run) -> tuple[list, dict]:
    """Mentions of each language rank the candidate entities; MRR@20 (the official "map@20")."""
    from xlrepro.data.readers import get_reader
    from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text
    from xlrepro.metrics import mewslix_map_at_k
    from xlrepro.pipeline import METRIC_MODE
    from xlrepro.runs import atomic_write_json, files_digest
    from xlrepro.tasks import get_task

    task, k, bs = "mewslix", protocol["k"], exp.cfg.retrieval.batch_size
    cand_spec = get_task(task).retrieval["candidates"]
    if exp.cfg.data.source != "local":
        raise ValueError("mewslix: the candidate set is read from local files only (data.source=local)")
    cand = get_reader(cand_spec["reader"])({"file": exp.task_dir(task) / cand_spec["file"]})
    ent_ids = [e.entity_id for e in cand.examples]
    C = encode(model, exp.tokenizer, [mewslix_entity_text(e) for e in cand.examples], protocol["candidate_max_length"],
               bs, exp.device)
    records = []
    for split in splits:
        for lang in exp.eval_languages(task, split):
            data = exp.read(task, split, lang)
            if not data.examples:
                run.log({"event": "no_mentions", "split": split, "language": lang})
                continue
            Q = encode(model, exp.tokenizer, [mewslix_mention_text(m) for m in data.examples],
                       protocol["query_max_length"], bs, exp.device)
            preds = dict(zip([m.guid for m in data.examples], ranked_ids(Q, C, ent_ids, k)))
            gold = {m.guid: [m.entity_id] for m in data.examples}
            if dist.is_main():
                atomic_write_json(run.dir / "predictions" / task / f"{split}-{lang}.json", preds)
            scores = mewslix_map_at_k(preds, gold, k=k, mode=METRIC_MODE)
            records.append({"task": task, "language": lang, "split": split, "metric": f"map@{k}",
                            "value": float(scores[f"map@{k}"]), "mode": scores["mode"], "n": len(gold),
                            "data_sha256": files_digest({**data.files, **cand.files}),
                            "protocol": {**protocol, "n_candidates": len(ent_ids),
                                         "metric_definition": "MRR@20 over the single gold entity (utils_mewslix)"}})
    return records, {"n_candidates": len(ent_ids)}
