"""(0) Continued multilingual MLM pre-training (the smoke world's stand-in for XLM-R's pre-training)."""

from __future__ import annotations

from xlrepro import distributed as dist
from xlrepro.config import to_dict
from xlrepro.phases.base import Node, Outcome, Phase
from xlrepro.runs import file_sha256, files_digest, key_config


class Pretrain(Phase):
    kind, task = "pretrain", "mlm"

    def spec(self, ctx, upstream: Node | None) -> dict:
        cfg = ctx.cfg
        files = ctx.pretrain_files()
        return {
            "kind": "pretrain",
            "base": ctx.base_encoder_spec(),
            "pretrain": key_config(to_dict(cfg.pretrain)),
            "seed": ctx.base_seed,
            "smoke": to_dict(cfg.smoke) if cfg.smoke else None,
            "corpus": files_digest({str(f): file_sha256(f) for f in files}),
        }

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        import dataclasses

        from xlrepro.mlm import pretrain_mlm

        run = self.open_run(ctx, node)
        if not run.done:
            state = pretrain_mlm(
                dataclasses.replace(ctx.cfg, seed=ctx.base_seed), ctx.tokenizer, ctx.pretrain_files(), run, ctx.device
            )
            if dist.is_main():
                ctx.tokenizer.save_pretrained(str(run.dir / "encoder"))
            run.finish({"steps": state.step})
        return Outcome(run)

    def entry(self, run) -> dict:
        return {"kind": "pretrain", "dir": str(run.dir), **run.summary()}

    def tokens(self, cfg) -> float:
        from xlrepro.estimate import run_tokens

        return run_tokens(cfg, "pretrain", self.task)

    def precision(self, cfg) -> str:
        from xlrepro.estimate import run_precision

        return run_precision(cfg, "pretrain", self.task)
