"""A stage of a target task's English training chain (XTREME-R's XCOPA: Social IQa, then COPA).

Each stage before the target's own is a ``chain`` run: it starts from the previous model (encoder,
and the head where the previous stage has the same format), trains on the stage's English train
split with early stopping on its English dev, and hands on its encoder and head (``head.pt``). A
stage's train config is ``target.per_task[<stage>]`` when given, else the target task's.
"""

from __future__ import annotations

import torch

from xlrepro import distributed as dist
from xlrepro.config import to_dict, train_config_for
from xlrepro.phases.base import Node, Outcome, Phase, train_tokens
from xlrepro.runs import key_config, tmp_path
from xlrepro.tasks import get_task


def carried_head(ctx, upstream: Node | None, fmt: str) -> dict | None:
    """The head state a run continues with: the previous chain stage's, when its format is ``fmt``."""
    if upstream is None or upstream.kind != "chain":
        return None
    head = torch.load(ctx.out / upstream.run_dir / "head.pt", map_location="cpu", weights_only=True)
    return head["state"] if head["format"] == fmt else None


class Chain(Phase):
    kind = "chain"

    def __init__(self, target: str, stage: str, control: bool = False):
        self.target, self.task, self.control = target, stage, control

    def train_config(self, cfg):
        return train_config_for(cfg, self.task if self.task in cfg.target.per_task else self.target)

    def ref(self, key: str) -> dict:
        return {"kind": "chain", "task": self.task, "run": key}

    def spec(self, ctx, upstream: Node | None) -> dict:
        sspec = get_task(self.task)
        carry = (
            upstream is not None
            and upstream.kind == "chain"
            and get_task(upstream.task).format.value == sspec.format.value
        )
        return {
            "kind": "chain",
            "task": self.task,
            "task_version": sspec.version,
            "train": key_config(to_dict(self.train_config(ctx.cfg))),
            "upstream": self.upstream_encoder(ctx, upstream)[1],
            "head_from_upstream": carry,
            "seed": ctx.cfg.seed,
            "control_shuffled_labels": self.control,
            "data": ctx.data_spec(self.task),
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        cfg = ctx.cfg
        stage = self.task
        fmt = get_task(stage).format.value
        run = self.open_run(ctx, node)
        if not run.done:
            model = ctx.new_model(self.upstream_encoder(ctx, upstream)[0], cfg.seed)
            head = carried_head(ctx, upstream, fmt) if node.spec["head_from_upstream"] else None
            info, _ = ctx.train_tasks(
                model,
                [stage],
                self.train_config(cfg),
                run,
                cfg.seed,
                shuffle_labels=self.control,
                head_init={stage: head} if head is not None else None,
            )
            ctx.save_encoder(model, run.dir / "encoder", {"tasks": [stage], "run": run.hash, "chain_of": self.target})
            if dist.is_main():
                dest = run.dir / "head.pt"
                tmp = tmp_path(dest)
                try:
                    torch.save({"task": stage, "format": fmt, "state": model.heads[stage].state_dict()}, tmp)
                    tmp.replace(dest)
                finally:
                    tmp.unlink(missing_ok=True)
            run.finish(info)
        return Outcome(run)

    def entry(self, run) -> dict:
        return {"kind": "chain", "task": self.task, "chain_of": self.target, "dir": str(run.dir), **run.summary()}

    def tokens(self, cfg) -> float:
        return train_tokens(cfg, self.train_config(cfg), [self.task])

    def precision(self, cfg) -> str:
        from xlrepro.estimate import train_precision

        return train_precision(self.train_config(cfg))
