"""(1) Fine-tune the encoder on the English intermediate task(s); the encoder is handed on."""

from __future__ import annotations

from xlrepro.config import to_dict
from xlrepro.phases.base import Node, Outcome, Phase
from xlrepro.runs import key_config
from xlrepro.tasks import get_task


class Intermediate(Phase):
    kind = "intermediate"

    def __init__(self, tasks: list[str]):
        self.tasks = list(tasks)
        self.task = "+".join(tasks)

    def spec(self, ctx, upstream: Node | None) -> dict:
        cfg = ctx.cfg
        tasks = self.tasks
        inter = key_config({k: v for k, v in to_dict(cfg.intermediate).items() if k != "tasks"})
        spec = {
            "kind": "intermediate",
            "tasks": tasks,
            "task_versions": {t: get_task(t).version for t in tasks},
            "intermediate": inter,
            "upstream": self.upstream_encoder(ctx, upstream)[1],
            "seed": cfg.seed,
            "data": {t: ctx.data_spec(t) for t in tasks},
        }
        from xlrepro.datakey import files_content, folder_content

        if cfg.intermediate.translated:  # the translated copies' content, not only their folders' names
            spec["translated_content"] = {
                t: {
                    lang: folder_content(
                        get_task(get_task(t).train_source or t),
                        folder,
                        "train",
                        "en",
                        cfg.data.layouts.get(get_task(t).train_source or t),
                    )
                    for lang, folder in sorted(by_lang.items())
                }
                for t, by_lang in sorted(cfg.intermediate.translated.items())
            }
        if cfg.intermediate.mlm_mix > 0:
            spec["mlm_corpus_content"] = files_content(ctx.mlm_corpus_files(cfg.intermediate))
        return spec

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        cfg = ctx.cfg
        run = self.open_run(ctx, node)
        if not run.done:
            model = ctx.new_model(self.upstream_encoder(ctx, upstream)[0], cfg.seed)
            info, _ = ctx.train_tasks(model, self.tasks, cfg.intermediate.train, run, cfg.seed, inter=cfg.intermediate)
            ctx.save_encoder(model, run.dir / "encoder", {"tasks": self.tasks, "run": run.hash})
            run.finish(info)
        return Outcome(run)

    def tokens(self, cfg) -> float:
        from xlrepro.estimate import run_tokens

        return run_tokens(cfg, "intermediate", self.task)

    def precision(self, cfg) -> str:
        from xlrepro.estimate import run_precision

        return run_precision(cfg, "intermediate", self.task)
