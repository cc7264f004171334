"""(3') BUCC / Tatoeba retrieval straight from an encoder layer (``xlrepro.retrieval``: embeddings and search).

Which encoder is read: ``retrieval.encoder[task]``, else the task's registry choice for
``retrieval.benchmark``, else the encoder handed to the retrieval phase (XTREME: the intermediate
one; XTREME-R Tatoeba: a SQuAD-fine-tuned one, ``xlrepro.phases.squad_mrc``). The graph builder
makes that training the retrieval node's upstream.
"""

from __future__ import annotations

import torch

from xlrepro import distributed as dist
from xlrepro.config import to_dict
from xlrepro.data.types import Format
from xlrepro.phases.base import Node, Outcome, Phase
from xlrepro.phases.context import METRIC_MODE
from xlrepro.runs import Run, files_digest
from xlrepro.tasks import get_task


def export_retrieval(run: Run, task: str, split: str, lang: str, predictions) -> None:
    """Retrieval predictions in the submission layout: BUCC's extracted pairs at the threshold
    tuned on dev, Tatoeba's retrieved line index per English sentence."""
    from xlrepro.submission import write_predictions

    if dist.is_main():
        write_predictions(run.dir / "predictions", task, split, lang, Format.RETRIEVAL, predictions)


def embed_args(ctx, model) -> dict:
    """``xlrepro.retrieval.embed``'s settings for ``model``: the config's retrieval layer, pooling,
    length and batch size, the context's device, the model's attention."""
    r = ctx.cfg.retrieval
    return dict(
        layer=r.layer,
        pooling=r.pooling,
        max_len=r.max_seq_length,
        batch_size=r.batch_size,
        device=ctx.device,
        packed=model.packed,
        attention_backend=model.attention_backend,
    )


class Retrieval(Phase):
    kind = "retrieval"
    records = True

    def __init__(self, task: str, source: str):
        self.task, self.source = task, source  # source: intermediate | squad_mrc | squad_dual_encoder

    def spec(self, ctx, upstream: Node | None) -> dict:
        return {
            "kind": "retrieval",
            "task": self.task,
            "task_version": get_task(self.task).version,
            "retrieval": {k: v for k, v in to_dict(ctx.cfg.retrieval).items() if k != "dual_encoder"},
            "encoder_source": self.source,
            "upstream": self.upstream_encoder(ctx, upstream)[1],
            "data": ctx.data_spec(self.task),
            "metric_mode": METRIC_MODE,
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        from xlrepro.metrics import tatoeba_accuracy
        from xlrepro.retrieval import embed, nearest, search_backend

        task, cfg = self.task, ctx.cfg
        r = cfg.retrieval
        encoder_dir, encoder_spec = self.upstream_encoder(ctx, upstream)
        run = self.open_run(ctx, node)
        encoder_info = {
            "encoder_source": self.source,
            "encoder_upstream": encoder_spec,
            "benchmark_protocol": r.benchmark,
        }
        if not run.done and get_task(task).retrieval.get("threshold") == "tune_on_dev":
            model = ctx.new_model(encoder_dir, cfg.seed)
            records, protocol = self.bucc(ctx, model, run)
            protocol = {**encoder_info, **protocol, "search": "xlrepro.ops.margin_mine"}
            records = [{**rec, "protocol": protocol} for rec in records]
            self.write_results(ctx, run, {"records": records, "protocol": protocol})
            run.finish({"protocol": protocol})
        if not run.done:
            model = ctx.new_model(encoder_dir, cfg.seed)
            records = []
            protocol = {
                **encoder_info,
                "layer": r.layer,
                "pooling": r.pooling,
                "similarity": r.similarity,
                "k": 1,
                "direction": "en queries -> other side indexed",
                "search": search_backend(torch.zeros(1, 1)),
                "attention": "packed" if model.packed else "padded",
            }
            args = embed_args(ctx, model)
            for lang in ctx.eval_languages(task, "test"):
                data = ctx.read(task, "test", lang)
                ex = data.examples[0]
                src = embed(model.encoder, ctx.tokenizer, ex.src_sentences, **args)
                eng = embed(model.encoder, ctx.tokenizer, ex.tgt_sentences, **args)
                # official direction: English queries, the other side is the index (xtreme
                # evaluate_retrieval.py: similarity_search(x=src, y=eng))
                _, idx = nearest(eng, src, r.similarity, k=1)
                export_retrieval(run, task, "test", lang, idx[:, 0].tolist())
                acc = tatoeba_accuracy(idx[:, 0].tolist(), mode=METRIC_MODE)
                _, ridx = nearest(src, eng, r.similarity, k=1)
                rev = tatoeba_accuracy(ridx[:, 0].tolist(), mode=METRIC_MODE)
                common = {
                    "task": task,
                    "language": lang,
                    "split": "test",
                    "n": len(ex.src_sentences),
                    "data_sha256": files_digest(data.files),
                    "protocol": protocol,
                }
                records.append({**common, "metric": "accuracy", "value": float(acc["accuracy"]), "mode": acc["mode"]})
                records.append(
                    {
                        **common,
                        "metric": "accuracy_reverse_diagnostic",
                        "value": float(rev["accuracy"]),
                        "mode": rev["mode"],
                    }
                )
            self.write_results(ctx, run, {"records": records, "protocol": protocol})
            run.finish({"protocol": protocol})
        return Outcome(run, records=True)

    def bucc(self, ctx, model, run: Run | None = None) -> tuple[list, dict]:
        """BUCC mining: ratio margin (k=4 each way, 'max' retrieval) over de-duplicated sentences;
        the threshold is tuned on the dev ("sample") gold and applied unchanged to test. The
        dev score with its own threshold is reported separately as ``f1_dev_oracle``."""
        from xlrepro.metrics import bucc_dedup_sentences, bucc_evaluate, bucc_extract, bucc_optimize
        from xlrepro.ops import margin_mine
        from xlrepro.retrieval import embed

        task = self.task
        r = ctx.cfg.retrieval
        tr = get_task(task).retrieval
        k, margin = int(tr.get("k", 4)), tr.get("margin", "ratio")
        args = embed_args(ctx, model)
        records = []
        for lang in ctx.eval_languages(task, "test"):
            cands, golds, files = {}, {}, {}
            for split in ("dev", "test"):
                data = ctx.read(task, split, lang)
                ex = data.examples[0]
                # LASER's text_load_unify: mine over unique lines (first-occurrence order)
                src_u = list(dict.fromkeys(ex.src_sentences))
                tgt_u = list(dict.fromkeys(ex.tgt_sentences))
                x = embed(model.encoder, ctx.tokenizer, src_u, **args)
                y = embed(model.encoder, ctx.tokenizer, tgt_u, **args)
                si, ti, sc = margin_mine(x, y, k=k, margin=margin, mode="max", similarity=r.similarity)
                # read_candidate2score: texts back to ids; repeated sentences dropped (official, D5)
                s2id = bucc_dedup_sentences(ex.src_ids, ex.src_sentences, METRIC_MODE)
                t2id = bucc_dedup_sentences(ex.tgt_ids, ex.tgt_sentences, METRIC_MODE)
                c2s: dict[tuple[str, ...], float] = {}
                for a, b, v in zip(si.tolist(), ti.tolist(), sc.tolist()):
                    sa, tb = src_u[a].strip(), tgt_u[b].strip()
                    if sa in s2id and tb in t2id:
                        key = (s2id[sa], t2id[tb])
                        c2s[key] = max(v, c2s.get(key, float("-inf")))
                cands[split], golds[split], files[split] = c2s, ex.gold, files_digest(data.files)
            tuned = bucc_optimize(cands["dev"], golds["dev"], METRIC_MODE)
            test = bucc_evaluate(cands["test"], golds["test"], threshold=tuned["threshold"], mode=METRIC_MODE)
            if run is not None:
                export_retrieval(run, task, "test", lang, bucc_extract(cands["test"], tuned["threshold"]))
            common = {"task": task, "language": lang, "mode": METRIC_MODE}
            records.append(
                {
                    **common,
                    "split": "dev",
                    "metric": "f1_dev_oracle",
                    "value": float(tuned["best_f1"]),
                    "n": len(golds["dev"]),
                    "data_sha256": files["dev"],
                }
            )
            for m in ("f1", "precision", "recall"):
                records.append(
                    {
                        **common,
                        "split": "test",
                        "metric": m,
                        "value": float(test[m]),
                        "n": len(golds["test"]),
                        "data_sha256": files["test"],
                        "threshold": tuned["threshold"],
                        "threshold_source": "tuned on dev gold",
                    }
                )
        protocol = {
            "layer": r.layer,
            "pooling": r.pooling,
            "similarity": r.similarity,
            "margin": margin,
            "k": k,
            "retrieval": "max",
            "threshold": "tuned on dev (BUCC sample), applied to test",
            "attention": "packed" if model.packed else "padded",
        }
        return records, protocol
