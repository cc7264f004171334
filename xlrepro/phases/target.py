"""(2) Target: a fresh head (or the last chain stage's) fine-tuned on the target task's English
training data with early stopping on an English dev subset, then (3) zero-shot evaluation on every
language and split of the benchmark. Every evaluated split's predictions are written in the XTREME
submission layout; a split without labels is exported, never scored. A ``control`` run trains on
shuffled English labels."""

from __future__ import annotations

import logging

from xlrepro import distributed as dist
from xlrepro.config import to_dict, train_config_for
from xlrepro.phases.base import Node, Outcome, Phase
from xlrepro.phases.chain import carried_head
from xlrepro.phases.context import METRIC_MODE
from xlrepro.runs import Run, files_digest, key_config
from xlrepro.tasks import get_task

log = logging.getLogger("xlrepro")


def labelled(run: Run, tspec, split: str, lang: str, data, withheld: list) -> bool:
    """Score the split (True), or export it only where the registry allows withheld labels: then a
    loud warning, a log event and an entry for the report. Unlabelled data the registry says is
    labelled, and empty splits, are errors (``xlrepro.check.label_status``)."""
    from xlrepro.check import label_status, withheld_warning

    if label_status(tspec, split, lang, data):
        return True
    note = withheld_warning(tspec.name, split, lang, data)
    log.warning(note)
    run.log({"event": "unlabelled", "split": split, "language": lang, "note": note})
    withheld.append({"task": tspec.name, "split": split, "language": lang, "note": note})
    return False


class Target(Phase):
    records = True

    def __init__(self, task: str, control: bool = False, baseline: bool = False):
        # baseline: the no-intermediate comparison run, fine-tuned from the pre-trained encoder (the
        # same spec as a target run without intermediate training; its own folder kind)
        self.task, self.control = task, control
        self.kind = "control" if control else "baseline" if baseline else "target"

    def spec(self, ctx, upstream: Node | None) -> dict:
        cfg = ctx.cfg
        return {
            "kind": "target",
            "task": self.task,
            "task_version": get_task(self.task).version,
            "train": key_config(to_dict(train_config_for(cfg, self.task))),
            "upstream": self.upstream_encoder(ctx, upstream)[1],
            "seed": cfg.seed,
            "control_shuffled_labels": self.control,
            "eval_splits": cfg.target.eval_splits,
            "data": ctx.data_spec(self.task),
            "metric_mode": METRIC_MODE,
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        from xlrepro.submission import write_predictions

        cfg = ctx.cfg
        task = self.task
        tspec = get_task(task)
        run = self.open_run(ctx, node)
        if not run.done:
            head_init = carried_head(ctx, upstream, tspec.format.value)
            model = ctx.new_model(self.upstream_encoder(ctx, upstream)[0], cfg.seed)
            info, adapters = ctx.train_tasks(
                model,
                [task],
                train_config_for(cfg, task),
                run,
                cfg.seed,
                shuffle_labels=self.control,
                head_init={task: head_init} if head_init is not None else None,
            )
            adapter = adapters[task]
            records: list[dict] = []
            withheld: list[dict] = []
            for split in cfg.target.eval_splits:
                for lang in ctx.eval_languages(task, split):
                    data = ctx.read(task, split, lang)
                    feats = adapter.featurize(data.examples, train=False)
                    preds = ctx.predict(model, task, adapter, feats, data.examples, cfg.target.eval_batch_size)
                    scored = labelled(run, tspec, split, lang, data, withheld)
                    if dist.is_main():  # predictions/<task>/<split>-<lang>.<ext> (the XTREME submission layout)
                        write_predictions(
                            run.dir / "predictions", task, split, lang, adapter.fmt, preds, data.examples, data.raw
                        )
                    if not scored:
                        continue
                    scores = adapter.score(preds, data.examples, data, lang, METRIC_MODE)
                    for metric, value in scores.items():
                        if metric in ("mode", "note") or not isinstance(value, (int, float)):
                            continue
                        records.append(
                            {
                                "task": task,
                                "language": lang,
                                "split": split,
                                "metric": metric,
                                "value": float(value),
                                "mode": scores.get("mode", METRIC_MODE),
                                "n": len(data.examples),
                                "data_sha256": files_digest(data.files),
                                "train_chain": tspec.training_chain(),
                            }
                        )
            self.write_results(ctx, run, {"records": records, "withheld": withheld})
            run.finish({k: v for k, v in info.items()})
        return Outcome(run, records=True)

    def tokens(self, cfg) -> float:
        from xlrepro.estimate import run_tokens

        return run_tokens(cfg, self.kind, self.task)

    def precision(self, cfg) -> str:
        from xlrepro.estimate import run_precision

        return run_precision(cfg, self.kind, self.task)
