"""Dual-encoder retrieval of XTREME-R as two phases: the dual encoder's training (``dual_encoder``
runs, on the task's English training source) and its evaluation (a ``retrieval`` run ranking
LAReQA answer sentences or Mewsli-X entities). The model, features and @20 metrics are
``xlrepro.dual_encoder``'s; its module docstring states the protocol.
"""

from __future__ import annotations

import numpy as np

from xlrepro import distributed as dist
from xlrepro.config import to_dict
from xlrepro.dual_encoder import (
    DualEncoder,
    dual_encoder_train_config,
    encode,
    lareqa_map_knn,
    load_dual_encoder,
    make_collate,
    pair_features,
    ranked_ids,
    save_dual_encoder,
)
from xlrepro.phases.base import Node, Outcome, Phase, train_tokens
from xlrepro.phases.context import METRIC_MODE
from xlrepro.runs import key_config
from xlrepro.tasks import get_task


class DualEncoderTraining(Phase):
    """Fine-tune the dual encoder of ``task`` from the encoder handed to the retrieval phase."""

    kind = "dual_encoder"
    handoff = "model"

    def __init__(self, task: str):
        self.task = task

    def ref(self, key: str) -> dict:
        return {"kind": "dual_encoder", "task": self.task, "run": key}

    def spec(self, ctx, upstream: Node | None) -> dict:
        cfg = ctx.cfg
        tspec = get_task(self.task)
        tcfg = dual_encoder_train_config(cfg, self.task)
        return {
            "kind": "dual_encoder",
            "task": self.task,
            "task_version": tspec.version,
            "train_source": tspec.train_source,
            "dev_source": tspec.dev_source,
            "train": key_config(to_dict(tcfg)),
            "upstream": self.upstream_encoder(ctx, upstream)[1],
            "seed": cfg.seed,
            "query_max_length": int(tspec.retrieval["query_max_length"]),
            "candidate_max_length": int(tspec.retrieval["candidate_max_length"]),
            "logit_scale_init": cfg.retrieval.dual_encoder.logit_scale,
            "data": {t: ctx.data_spec(t) for t in (tspec.train_source, tspec.dev_source)},
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        from xlrepro.runs import files_digest
        from xlrepro.sampling import nested_subset, subset_digest
        from xlrepro.train import Stream, train

        cfg, task, spec = ctx.cfg, self.task, node.spec
        tspec = get_task(task)
        tcfg = dual_encoder_train_config(cfg, task)
        q_len, c_len = spec["query_max_length"], spec["candidate_max_length"]
        run = self.open_run(ctx, node)
        if not run.done:
            encoder = ctx.new_model(self.upstream_encoder(ctx, upstream)[0], cfg.seed).encoder
            model = DualEncoder(
                encoder,
                packed=cfg.model.attention == "packed",
                seed=cfg.seed + 1,
                logit_scale=cfg.retrieval.dual_encoder.logit_scale,
            ).to(ctx.device)
            qs, cands, files, skipped = _training_data(ctx, task, "train")
            keep = nested_subset(len(qs), tcfg.volume, cfg.seed)
            qs, cands = [qs[i] for i in keep], [cands[i] for i in keep]
            feats = pair_features(ctx.tokenizer, qs, cands, q_len, c_len)
            evaluate = _dev_evaluator(ctx, task, model, tcfg, q_len, c_len, tcfg.eval_batch_size or 2 * tcfg.batch_size)
            device = ctx.device

            def loss_fn(m, batch):
                return m(**{k: v.to(device) for k, v in batch.items()})

            info = {
                "n_pairs": len(feats),
                "volume": tcfg.volume,
                "subset_sha256": subset_digest([str(i) for i in keep]),
                "train_source": tspec.train_source,
                "dev_source": tspec.dev_source,
                "train_data_sha256": files_digest(files),
                "skipped": skipped,
                "domain": {"train": tspec.retrieval.get("train_domain"), "eval": tspec.retrieval.get("eval_domain")},
            }
            run.log({"event": "data", "task": task, **info})
            state = train(
                model,
                Stream(task, feats, make_collate(ctx.tokenizer.pad_token_id), loss_fn),
                tcfg,
                cfg.seed,
                run.dir,
                evaluate,
                run.log,
                desc=f"dual_encoder:{task}",
                keep_checkpoint=True,
            )
            if dist.is_main():
                save_dual_encoder(model, run.dir / "model", {"task": task, "run": run.hash})
                ctx.tokenizer.save_pretrained(str(run.dir / "model"))
            run.finish(
                {
                    **info,
                    "steps": state.step,
                    "best_step": state.best_step,
                    "best_dev": state.best_score,
                    "stopped_early": state.stopped_early,
                    "logit_scale": float(model.logit_scale.detach()),
                }
            )
        return Outcome(run)

    def tokens(self, cfg) -> float:
        r = get_task(self.task).retrieval
        return train_tokens(
            cfg,
            dual_encoder_train_config(cfg, self.task),
            [get_task(self.task).train_source or self.task],
            length=int(r["query_max_length"]) + int(r["candidate_max_length"]),
        )

    def precision(self, cfg) -> str:
        from xlrepro.estimate import train_precision

        return train_precision(dual_encoder_train_config(cfg, self.task))


class DualRetrieval(Phase):
    """Evaluate the dual encoder of ``task`` (LAReQA or Mewsli-X); records carry the protocol."""

    kind = "retrieval"
    records = True

    def __init__(self, task: str):
        self.task = task

    def protocol(self, ctx, de_ref: dict) -> dict:
        """The evaluation protocol that is part of the run's spec (hashed). What only says how it was
        computed (the knn backend, which depends on the build, and the attention mode, whose results
        agree within fp32 tolerance) is recorded with the results instead (``recorded_protocol``)."""
        task = self.task
        r = get_task(task).retrieval
        tcfg = dual_encoder_train_config(ctx.cfg, task)
        return {
            "encoder_source": f"dual encoder fine-tuned on {get_task(task).train_source} (run {de_ref['run'][:12]})",
            "encoder_upstream": de_ref,
            "towers": "one shared encoder",
            "layer": "last",
            "pooling": r.get("pooling"),
            "similarity": r.get("similarity"),
            "k": int(r.get("k", 20)),
            "query_max_length": int(r["query_max_length"]),
            "candidate_max_length": int(r["candidate_max_length"]),
            "train": {
                "lr": tcfg.lr,
                "batch_size": tcfg.batch_size,
                "grad_accum": tcfg.grad_accum,
                "epochs": tcfg.epochs,
                "max_steps": tcfg.max_steps,
                "negatives": "in-batch",
            },
            "train_domain": r.get("train_domain"),
            "eval_domain": r.get("eval_domain"),
        }

    @staticmethod
    def recorded_protocol(ctx, protocol: dict) -> dict:
        """The spec's protocol + how this run computed it: the knn backend used (embeddings are float32 on
        the CPU when ranked) and the encoder's attention mode (``model.attention``)."""
        import torch

        from xlrepro.retrieval import search_backend

        return {**protocol, "search": search_backend(torch.zeros(1, 1)), "attention": ctx.cfg.model.attention}

    def spec(self, ctx, upstream: Node | None) -> dict:
        task = self.task
        if upstream is None:
            raise ValueError(f"retrieval of {task}: the graph gives it no dual-encoder run to evaluate")
        de_ref = upstream.ref()
        splits = [s for s in ctx.cfg.target.eval_splits if s in get_task(task).splits]
        return {
            "kind": "retrieval",
            "task": task,
            "task_version": get_task(task).version,
            "protocol": self.protocol(ctx, de_ref),
            "batch_size": ctx.cfg.retrieval.batch_size,
            "eval_splits": splits,
            "upstream": de_ref,
            "data": ctx.data_spec(task),
            "metric_mode": METRIC_MODE,
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        spec = node.spec
        if upstream is None:
            raise ValueError(f"retrieval of {self.task}: the graph gives it no dual-encoder run to evaluate")
        run = self.open_run(ctx, node)
        if not run.done:
            protocol = self.recorded_protocol(ctx, spec["protocol"])
            model = load_dual_encoder(upstream.encoder_dir(ctx.out), packed=ctx.cfg.model.attention == "packed").to(
                ctx.device
            )
            evaluate = _evaluate_lareqa if _is_lareqa(self.task) else _evaluate_mewslix
            records, extra = evaluate(ctx, model, spec["eval_splits"], protocol, run)
            self.write_results(ctx, run, {"records": records, "protocol": protocol, **extra})
            run.finish({"protocol": protocol, **extra})
        return Outcome(run, records=True)


def _is_lareqa(task: str) -> bool:
    """LAReQA-style evaluation (a pooled multilingual answer-sentence pool, mAP@k) vs Mewsli-X's
    (mentions against a candidate entity set): decided by the task's evaluator field."""
    from xlrepro.tasks import get_task

    return get_task(task).evaluator == "lareqa_map"


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
        cands.append((e.context[hit[0] : hit[1]], e.context))
        qids.append(e.guid)
        gold.append(hit)
    return qs, cands, qids, gold


def _training_data(ctx, task: str, split: str, limit: int | None = None) -> tuple[list, list, dict, dict]:
    """(queries, candidates, files, skipped) of the English training source of ``task``."""
    from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text
    from xlrepro.tasks import get_task

    source = get_task(task).train_source if split == "train" else get_task(task).dev_source
    data = ctx.read(source, split, "en")
    examples = data.examples[:limit] if limit else data.examples
    skipped = dict(data.skipped)
    if _is_lareqa(task):
        qs, cands, _, _ = _lareqa_pairs(examples, skipped)
    else:
        qs = [mewslix_mention_text(p.mention) for p in examples]
        cands = [mewslix_entity_text(p.entity) for p in examples]
    return qs, cands, dict(data.files), skipped


def _dev_evaluator(ctx, task: str, model: DualEncoder, tcfg, q_len: int, c_len: int, batch_size: int):
    """English dev score for early stopping (module docstring): LAReQA mAP@20 on SQuAD dev, Mewsli-X
    MRR@20 on Wikipedia dev pairs."""
    from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text
    from xlrepro.metrics import mewslix_map_at_k
    from xlrepro.tasks import get_task

    k = int(get_task(task).retrieval.get("k", 20))
    data = ctx.read(get_task(task).dev_source, "dev", "en")
    examples = data.examples[: tcfg.eval_subset]
    tok, device = ctx.tokenizer, ctx.device
    if _is_lareqa(task):
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


def _evaluate_lareqa(ctx, model, splits, protocol, run) -> tuple[list, dict]:
    """Every question of every language ranks the answer sentences of all evaluated languages pooled.
    Each language's per-question AP@k goes to ``per_question/lareqa/<split>-<lang>.json`` (rank 0)."""
    from xlrepro.items import item_source_folder
    from xlrepro.runs import atomic_write_json, files_digest

    task, k, bs = "lareqa", protocol["k"], ctx.cfg.retrieval.batch_size
    records, extra = [], {}
    for split in splits:
        langs = ctx.eval_languages(task, split)
        pools = {l: ctx.read(task, split, l) for l in langs}
        q_text, q_ids, q_lang, c_text, c_owner = [], [], [], [], []
        for l, res in pools.items():
            pool = res.examples[0]
            q_text += pool.questions
            q_ids += pool.question_ids
            q_lang += [l] * len(pool.questions)
            c_text += list(zip(pool.sentences, pool.contexts))
            c_owner += [set(q) for q in pool.sentence_qids]
        Q = encode(model, ctx.tokenizer, q_text, protocol["query_max_length"], bs, ctx.device)
        C = encode(model, ctx.tokenizer, c_text, protocol["candidate_max_length"], bs, ctx.device)
        res = lareqa_map_knn(Q, C, q_ids, c_owner, k=k, mode=METRIC_MODE)
        pooled = {
            "pool_languages": langs,
            "n_candidates": len(c_text),
            f"map@{k}_all_questions": res[f"map@{k}"],
            "n_reranked_for_ties": res["n_reranked"],
            "note": "utils_lareqa's single number: the mean over all questions of all languages pooled",
        }
        extra[split] = pooled
        for l in langs:
            aps = [a for a, ql in zip(res["per_question"], q_lang) if ql == l]
            if dist.is_main():  # per-question AP: the run's item-level scores (xlrepro.items; no submission file)
                atomic_write_json(
                    item_source_folder(run.dir, task) / f"{split}-{l}.json",
                    {
                        "metric": f"map@{k}",
                        "mode": METRIC_MODE,
                        "pool_languages": langs,
                        "n_candidates": len(c_text),
                        "question_ids": pools[l].examples[0].question_ids,
                        "average_precision": aps,
                    },
                )
            records.append(
                {
                    "task": task,
                    "language": l,
                    "split": split,
                    "metric": f"map@{k}",
                    "value": float(np.mean(aps)) * 100,
                    "mode": METRIC_MODE,
                    "n": len(aps),
                    "data_sha256": files_digest({p: h for r in pools.values() for p, h in r.files.items()}),
                    "protocol": {**protocol, "pool_languages": langs, "n_candidates": len(c_text)},
                }
            )
        run.log({"event": "lareqa", "split": split, **pooled})
    return records, extra


def _evaluate_mewslix(ctx, model, splits, protocol, run) -> tuple[list, dict]:
    """Mentions of each language rank the candidate entities; MRR@20 (the official "map@20")."""
    from xlrepro.data.all_readers import get_reader
    from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text
    from xlrepro.metrics import mewslix_map_at_k
    from xlrepro.runs import atomic_write_json, files_digest
    from xlrepro.tasks import get_task

    task, k, bs = "mewslix", protocol["k"], ctx.cfg.retrieval.batch_size
    cand_spec = get_task(task).retrieval["candidates"]
    if ctx.cfg.data.source != "local":
        raise ValueError("mewslix: the candidate set is read from local files only (data.source=local)")
    cand = get_reader(cand_spec["reader"])({"file": ctx.task_dir(task) / cand_spec["file"]})
    ent_ids = [e.entity_id for e in cand.examples]
    C = encode(
        model,
        ctx.tokenizer,
        [mewslix_entity_text(e) for e in cand.examples],
        protocol["candidate_max_length"],
        bs,
        ctx.device,
    )
    records = []
    for split in splits:
        for lang in ctx.eval_languages(task, split):
            data = ctx.read(task, split, lang)
            if not data.examples:
                run.log({"event": "no_mentions", "split": split, "language": lang})
                continue
            Q = encode(
                model,
                ctx.tokenizer,
                [mewslix_mention_text(m) for m in data.examples],
                protocol["query_max_length"],
                bs,
                ctx.device,
            )
            preds = dict(zip([m.guid for m in data.examples], ranked_ids(Q, C, ent_ids, k)))
            gold = {m.guid: [m.entity_id] for m in data.examples}
            if dist.is_main():
                atomic_write_json(run.dir / "predictions" / task / f"{split}-{lang}.json", preds)
            scores = mewslix_map_at_k(preds, gold, k=k, mode=METRIC_MODE)
            records.append(
                {
                    "task": task,
                    "language": lang,
                    "split": split,
                    "metric": f"map@{k}",
                    "value": float(scores[f"map@{k}"]),
                    "mode": scores["mode"],
                    "n": len(gold),
                    "data_sha256": files_digest({**data.files, **cand.files}),
                    "protocol": {
                        **protocol,
                        "n_candidates": len(ent_ids),
                        "metric_definition": "MRR@20 over the single gold entity (utils_mewslix)",
                    },
                }
            )
    return records, {"n_candidates": len(ent_ids)}
