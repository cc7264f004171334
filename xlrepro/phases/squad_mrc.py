"""SQuAD v1.1 span-QA fine-tuning inside XTREME-R's retrieval: the Tatoeba encoder.

The retrieval phase's encoder is fine-tuned on SQuAD (``target.train`` + ``target.per_task.squad``)
and the encoder alone is kept; a BUCC/Tatoeba run whose encoder source is ``squad_mrc`` reads it.
"""

from __future__ import annotations

from xlrepro.config import to_dict, train_config_for
from xlrepro.phases.base import Node, Outcome, Phase
from xlrepro.runs import key_config
from xlrepro.tasks import get_task


class SquadMrc(Phase):
    kind, task = "squad_mrc", "squad"

    def spec(self, ctx, upstream: Node | None) -> dict:
        cfg = ctx.cfg
        return {
            "kind": "squad_mrc",
            "task": "squad",
            "task_version": get_task("squad").version,
            "train": key_config(to_dict(train_config_for(cfg, "squad"))),
            "upstream": self.upstream_encoder(ctx, upstream)[1],
            "seed": cfg.seed,
            "data": ctx.data_spec("squad"),
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        cfg = ctx.cfg
        run = self.open_run(ctx, node)
        if not run.done:
            model = ctx.new_model(self.upstream_encoder(ctx, upstream)[0], cfg.seed)
            info, _ = ctx.train_tasks(model, ["squad"], train_config_for(cfg, "squad"), run, cfg.seed)
            ctx.save_encoder(model, run.dir / "encoder", {"tasks": ["squad"], "run": run.hash})
            run.finish(info)
        return Outcome(run)

    def tokens(self, cfg) -> float:
        from xlrepro.estimate import run_tokens

        return run_tokens(cfg, "target", "squad")

    def precision(self, cfg) -> str:
        from xlrepro.estimate import run_precision

        return run_precision(cfg, "target", "squad")
