"""The three phases as one readable recipe.

  (0) pre-training     smoke world only: multilingual MLM, the stand-in for XLM-R's pre-training
  (1) intermediate     fine-tune the encoder on an English intermediate task; keep the encoder
  (2) target           fresh head; fine-tune on the target task's English training data with
                       early stopping on an English dev subset (best checkpoint reloaded); then
                       (3) zero-shot evaluation on every language and split that has labels
  (3') retrieval       BUCC/Tatoeba-style evaluation straight from the intermediate encoder (XTREME-R
                       Tatoeba: from a SQuAD-fine-tuned one); LAReQA/Mewsli-X: a dual encoder fine-tuned
                       on the English training source, then ranked (xlrepro/dual_encoder.py)

A target task with a training chain (XCOPA in XTREME-R: Social IQa, then COPA) first trains its
earlier English stages as ``chain`` runs, each continuing from the previous model, encoder and (where
the format matches) head; the target run continues from the last of them. Predictions of every
evaluated split are written in the XTREME submission layout (``xlrepro.submission``); a split
without labels is exported, never scored; ``<out>/submission/`` gathers the test predictions.

Every phase is a ``Run`` keyed by the hash of its resolved spec, which includes the hashes of the
runs it starts from: finished runs are skipped, interrupted ones resume. Results are records
(task, language, split, metric, value, mode) with provenance; ``xlrepro.report`` renders them.

Under a launcher (``torchrun``/``deepspeed``, DeepSpeed engine) every rank runs this recipe in
lockstep; training steps are data-parallel, rank 0 alone writes files, and the other ranks read
them after ``Run.finish``'s barrier (``xlrepro.distributed``).
"""
from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import torch

from xlrepro import distributed as dist
from xlrepro import languages as langtab
from xlrepro.config import ExperimentConfig, TrainConfig, config_hash, to_dict, train_config_for
from xlrepro.data.types import Format, ReadResult
from xlrepro.formats import adapter_for
from xlrepro.model import MultiTaskModel, build_encoder, load_encoder, save_encoder
from xlrepro.sampling import nested_subset, subset_digest
from xlrepro.runs import FolderLock, Run, atomic_write_json, atomic_write_text, files_digest, key_config, provenance
from xlrepro.tasks import get_task
from xlrepro.train import Stream, set_seed, train

log = logging.getLogger("xlrepro")

METRIC_MODE = "official"


def main_metric(scores: dict) -> float:
    for k in ("f1", "accuracy", "map@20"):
        if k in scores:
            return float(scores[k])
    raise KeyError(f"no main metric in {sorted(scores)}")


class Experiment:
    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path, device: str | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = device or (f"cuda:{dist.local_rank()}" if torch.cuda.is_available() else "cpu")
        self.records: list[dict] = []
        self.withheld: list[dict] = []  # splits exported but not scored (labels withheld), for the report
        self.runs: dict[str, dict] = {}
        self.tokenizer = None
        self.data_root = Path(cfg.data.root)
        self.tokenizer_path = cfg.model.tokenizer or cfg.model.name_or_path

    # ------------------------------------------------------------------ data
    def task_dir(self, task: str) -> Path:
        return Path(self.cfg.data.task_dirs.get(task) or self.data_root / task)

    def read(self, task: str, split: str, lang: str) -> ReadResult:
        spec = get_task(task)
        if self.cfg.data.sources.get(task, self.cfg.data.source) == "hub":
            from xlrepro.data.hub import read_hub
            return read_hub(spec, split, lang, allow_unpinned=self.cfg.data.allow_unpinned_hub,
                            prepared=self.task_dir(task))
        return spec.read(self.task_dir(task), split, lang, self.cfg.data.layouts.get(task))

    def eval_languages(self, task: str, split: str) -> list[str]:
        """The languages of the recipe's benchmark (``retrieval.benchmark``; a task outside it: its own
        benchmark's), restricted to ``data.languages`` (and to the smoke world's languages)."""
        spec = get_task(task)
        langs = spec.split_languages(split, spec.benchmark_for(self.cfg.retrieval.benchmark))
        keep = self.cfg.data.languages
        if keep is None and self.cfg.smoke is not None:
            keep = self.cfg.smoke.languages  # the generated world has only these
        return [l for l in langs if keep is None or l in keep]

    # ------------------------------------------------------------------ setup
    @property
    def base_seed(self) -> int:
        """Seed of the smoke world and of MLM pre-training (``base_seed``, default ``seed``), so
        that fine-tuning seeds can vary over one shared world and pre-trained encoder."""
        return self.cfg.seed if self.cfg.base_seed is None else self.cfg.base_seed

    def prepare(self) -> None:
        """The smoke world (generated once per world key) and the tokenizer."""
        if dist.launched() and dist.world_size() > 1:
            dist.ensure_initialized()  # now: the barriers and agreements below need the group
        # ranks on one machine share its cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        cfg = self.cfg
        from xlrepro import tracking

        tracking.configure(self.out, cfg.logging.tensorboard)  # fails now if the package is missing
        if cfg.smoke is not None:
            from xlrepro.smoke.tokenizer import build_tokenizer
            from xlrepro.smoke.world import WORLD_VERSION, generate

            key = config_hash({"smoke": to_dict(cfg.smoke), "seed": self.base_seed, "world_version": WORLD_VERSION})[:12]
            world = self.out / f"world-{key}"
            tok_dir = world / "tokenizer"
            if dist.is_main() and not (tok_dir / "tokenizer.json").exists():
                from xlrepro.runs import FolderLock

                with FolderLock(self.out, "smoke world", name=f".world-{key}.lock"):  # one process builds it
                    if not (world / "WORLD.json").exists():
                        generate(world, cfg.smoke.languages, self.base_seed, cfg.smoke.n_train, cfg.smoke.n_dev,
                                 cfg.smoke.n_test, cfg.smoke.n_corpus, cfg.smoke.code_switch)
                    if not (tok_dir / "tokenizer.json").exists():
                        build_tokenizer(sorted((world / "corpus").glob("*.txt")), cfg.smoke.vocab_size, tok_dir)
            dist.barrier()  # the other ranks read the world rank 0 wrote
            self.data_root = world
            self.tokenizer_path = str(tok_dir)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path,
                                                       revision=None if cfg.smoke else cfg.model.revision)

    # ------------------------------------------------------------------ phases
    def base_encoder_spec(self) -> dict:
        """The configured encoder, keyed by its identity (``xlrepro.model.model_identity``: a local
        folder by the sha256 of its files, not its path; a Hub id by the resolved commit)."""
        from xlrepro.model import model_identity

        m = to_dict(self.cfg.model)
        ident = model_identity(self.cfg.model)
        tokenizer = self.tokenizer_path if self.cfg.smoke is None else "smoke"
        if ident["kind"] == "local":
            if self.cfg.model.tokenizer in (None, m["name_or_path"]):
                tokenizer = "model folder"
            m["name_or_path"] = "local folder (see identity)"
        if self.cfg.smoke is None and tokenizer != "model folder" and Path(tokenizer).is_dir():
            from xlrepro.datakey import files_content

            tokenizer = {"local tokenizer": files_content(sorted(f for f in Path(tokenizer).iterdir() if f.is_file()))}
        return {"model": m, "tokenizer": tokenizer, "identity": ident}

    def _pretrain_files(self) -> list[Path]:
        corpus = self.data_root / "corpus" if self.cfg.smoke else Path(self.cfg.pretrain.corpus)
        files = sorted(corpus.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"pretrain.corpus: no *.txt files in {corpus}")
        return files

    # Each phase's resolved spec (its run's identity) on its own, so a sweep can key its run
    # graph by the same hashes without running anything (xlrepro.sweep). Needs prepare().
    def pretrain_spec(self) -> dict | None:
        """Spec of the MLM pre-training run, or None when the encoder is the configured base model."""
        cfg = self.cfg
        if cfg.pretrain is None or cfg.pretrain.steps == 0:
            return None
        from xlrepro.runs import file_sha256

        files = self._pretrain_files()
        return {"kind": "pretrain", "base": self.base_encoder_spec(), "pretrain": key_config(to_dict(cfg.pretrain)),
                "seed": self.base_seed, "smoke": to_dict(cfg.smoke) if cfg.smoke else None,
                "corpus": files_digest({str(f): file_sha256(f) for f in files})}

    def pretrain(self) -> tuple[Path | None, dict]:
        """(encoder dir or None for the configured base model, spec of that encoder)."""
        cfg = self.cfg
        base = self.base_encoder_spec()
        spec = self.pretrain_spec()
        if spec is None:
            return None, base
        files = self._pretrain_files()
        run = Run(self.out, "pretrain", "mlm", spec, keep=self.cfg.run_keep())
        enc_dir = run.dir / "encoder"
        if not run.done:
            import dataclasses

            from xlrepro.mlm import pretrain_mlm

            state = pretrain_mlm(dataclasses.replace(cfg, seed=self.base_seed), self.tokenizer, files, run, self.device)
            if dist.is_main():
                self.tokenizer.save_pretrained(str(enc_dir))
            run.finish({"steps": state.step})
        self.runs[run.hash] = {"kind": "pretrain", "dir": str(run.dir), **run.summary()}
        return enc_dir, {"kind": "pretrain", "run": run.hash}

    def _new_model(self, encoder_dir: Path | None, seed: int) -> MultiTaskModel:
        if encoder_dir is None:
            from xlrepro.model import model_identity

            enc = build_encoder(self.cfg.model, vocab_size=len(self.tokenizer), seed=seed,
                                revision=model_identity(self.cfg.model).get("commit"))
        else:
            enc = load_encoder(encoder_dir)
        return MultiTaskModel(enc, packed=self.cfg.model.attention == "packed").to(self.device)

    def _task_stream(self, model: MultiTaskModel, task: str, train_cfg: TrainConfig, seed: int, volume,
                     shuffle_labels: bool = False, translated: dict | None = None, head_init: dict | None = None):
        """Stream, dev evaluator and data record of one task trained on its English training data.

        ``volume``: nested subset of the English examples; ``translated``: {language: folder} of
        user-supplied translated copies of the training set (same layout), added after subsetting.
        """
        spec = get_task(task)
        train_task = get_task(spec.train_source) if spec.train_source else spec
        dev_task = get_task(spec.dev_source or train_task.name)
        max_len = train_cfg.max_seq_length or spec.max_seq_length
        adapter = adapter_for(spec, self.tokenizer, max_len, train_cfg)
        model.add_head(task, spec.format, adapter.n_labels(), self.cfg.model.classifier_dropout, seed=seed + 1)
        if head_init is not None:  # continue a training chain with the previous stage's head
            model.heads[task].load_state_dict(head_init)
        train_data = self.read(train_task.name, "train", "en")
        if not train_data.examples:  # before training: an empty stream would have no batch to give
            from xlrepro.errors import DataFormatError

            raise DataFormatError(", ".join(sorted(train_data.files)) or f"task {train_task.name}",
                                  "the English training split has no examples (an empty file, or a header without "
                                  "rows?); expected at least one")
        # data volume: a prefix of one seeded permutation, so smaller volumes nest in larger ones
        keep = nested_subset(len(train_data.examples), volume, seed)
        examples = [train_data.examples[i] for i in keep]
        language_mix = {"en": len(examples)}
        files = dict(train_data.files)
        for lang, folder in (translated or {}).items():
            extra = train_task.read(folder, "train", "en", self.cfg.data.layouts.get(train_task.name))
            examples += extra.examples
            language_mix[lang] = language_mix.get(lang, 0) + len(extra.examples)
            files.update(extra.files)
        if shuffle_labels:
            labels = [adapter.label_of(e) for e in examples]
            if all(l is None for l in labels):
                raise ValueError(f"task {task}: the shuffled-label control needs a classification or multiple-choice task")
            random.Random(seed + 7).shuffle(labels)
            examples = [adapter.with_label(e, l) for e, l in zip(examples, labels)]
        feats = adapter.featurize(examples, train=True)
        dev = self.read(dev_task.name, "dev", "en")
        dev_examples = dev.examples[: train_cfg.eval_subset]
        dev_feats = adapter.featurize(dev_examples, train=False)
        dev_result = ReadResult(dev_examples, dev.files, raw=None)
        batch_size = train_cfg.eval_batch_size or 2 * train_cfg.batch_size

        def evaluate() -> float:
            preds = self.predict(model, task, adapter, dev_feats, dev_examples, batch_size)
            return main_metric(adapter.score(preds, dev_examples, dev_result, "en", METRIC_MODE))

        device = self.device

        def loss_fn(m, batch):
            inputs = {k: v.to(device) for k, v in batch.inputs.items()}
            targets = {k: v.to(device) for k, v in batch.targets.items()}
            return adapter.loss(m(task, **inputs), targets)

        info = {"n_examples": len(examples), "n_available": len(train_data.examples), "volume": volume,
                "subset_sha256": subset_digest([e.guid for e in examples]), "n_features": len(feats),
                "language_mix": language_mix, "train_source": train_task.name, "dev_source": dev_task.name,
                "dev_subset": len(dev_examples), "train_data_sha256": files_digest(files),
                "shuffle_labels": shuffle_labels, "skipped": train_data.skipped,
                "head": "continued from the previous chain stage" if head_init is not None else "fresh"}
        return Stream(task, feats, adapter.collate, loss_fn), evaluate, info, adapter

    def _train_tasks(self, model: MultiTaskModel, tasks: list[str], train_cfg: TrainConfig, run: Run, seed: int,
                     shuffle_labels: bool = False, inter=None, head_init: dict | None = None) -> dict:
        """Train on one task, or on several at once (shared encoder, one head each; ``inter`` gives
        the sampler, volume scope, MLM mixing and translated data); early-stop on the mean of the
        tasks' English dev scores and reload the best."""
        from xlrepro.sampling import MixSampler, TaskSampler, split_volume

        if inter is not None and inter.volume_scope == "total" and train_cfg.volume != "all":
            sizes = {t: len(self.read(get_task(t).train_source or t, "train", "en").examples) for t in tasks}
            volumes = split_volume(train_cfg.volume, sizes)
        else:
            volumes = {t: train_cfg.volume for t in tasks}
        streams, evals, infos, adapters = [], [], {}, {}
        for t in tasks:
            stream, ev, info, ad = self._task_stream(model, t, train_cfg, seed, volumes[t], shuffle_labels,
                                                     (inter.translated.get(t) if inter is not None else None),
                                                     (head_init or {}).get(t))
            streams.append(stream), evals.append(ev)
            infos[t], adapters[t] = info, ad
            run.log({"event": "data", "task": t, **info})
        sampler = None
        if len(streams) > 1 or (inter is not None and inter.mlm_mix > 0):
            sampler = TaskSampler({t: len(s.feats) for t, s in zip(tasks, streams)}, inter.sampler if inter else
                                  "proportional", inter.temperature if inter else 1.0, seed)
            run.log({"event": "sampler", "method": sampler.method, "probabilities": sampler.probabilities()})
        if inter is not None and inter.mlm_mix > 0:
            from xlrepro.mlm import mlm_stream

            files = self._mlm_corpus_files(inter)
            streams.append(mlm_stream(model, self.tokenizer, files, self.cfg.pretrain.max_seq_length if self.cfg.pretrain
                                      else 128, 0.15, self.device, seed))
            sampler = MixSampler(sampler, inter.mlm_mix, seed)
            run.log({"event": "mlm_mix", "ratio": inter.mlm_mix, "corpus": [str(f) for f in files]})

        def evaluate() -> float:
            return sum(e() for e in evals) / len(evals)

        state = train(model, streams, train_cfg, seed, run.dir, evaluate, run.log, desc=f"{run.kind}:{'+'.join(tasks)}",
                      sampler=sampler, keep_checkpoint=True)
        return {"tasks": infos, "steps": state.step, "best_step": state.best_step, "best_dev": state.best_score,
                "stopped_early": state.stopped_early, "_adapters": adapters}

    def _mlm_corpus_files(self, inter) -> list[Path]:
        folder = Path(inter.mlm_corpus) if inter.mlm_corpus else (self.data_root / "corpus" if self.cfg.smoke else None)
        if folder is None:
            raise ValueError("intermediate.mlm_mix > 0 needs intermediate.mlm_corpus: a folder of <lang>.txt files")
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"intermediate.mlm_corpus: no *.txt files in {folder}")
        return files

    @torch.no_grad()
    def predict(self, model, task, adapter, feats, examples, batch_size: int):
        model.eval()
        logits = []
        for s in range(0, len(feats), batch_size):
            batch = adapter.collate(feats[s:s + batch_size])
            out = model(task, **{k: v.to(self.device) for k, v in batch.inputs.items()}).float().cpu()
            if adapter.fmt == Format.SPAN_QA or adapter.fmt == Format.TAGGING:
                mask = batch.inputs["attention_mask"]
                logits += [o[: int(m.sum())] for o, m in zip(out, mask)]
            else:
                logits += list(out)
        model.train()
        return adapter.predict(logits, feats, examples)

    def intermediate_spec(self, upstream_spec: dict) -> dict | None:
        """Spec of the intermediate run, or None for the no-intermediate baseline."""
        cfg = self.cfg
        tasks = cfg.intermediate.tasks
        if not tasks:
            return None
        inter = key_config({k: v for k, v in to_dict(cfg.intermediate).items() if k != "tasks"})
        spec = {"kind": "intermediate", "tasks": tasks, "task_versions": {t: get_task(t).version for t in tasks},
                "intermediate": inter, "upstream": upstream_spec, "seed": cfg.seed,
                "data": {t: self._data_spec(t) for t in tasks}}
        from xlrepro.datakey import files_content, folder_content

        if cfg.intermediate.translated:  # the translated copies' content, not only their folders' names
            spec["translated_content"] = {
                t: {lang: folder_content(get_task(get_task(t).train_source or t), folder, "train", "en",
                                         cfg.data.layouts.get(get_task(t).train_source or t))
                    for lang, folder in sorted(by_lang.items())}
                for t, by_lang in sorted(cfg.intermediate.translated.items())}
        if cfg.intermediate.mlm_mix > 0:
            spec["mlm_corpus_content"] = files_content(self._mlm_corpus_files(cfg.intermediate))
        return spec

    def intermediate(self, upstream_dir, upstream_spec) -> tuple[Path | None, dict]:
        cfg = self.cfg
        tasks = cfg.intermediate.tasks
        spec = self.intermediate_spec(upstream_spec)
        if spec is None:
            return upstream_dir, upstream_spec
        task = "+".join(tasks)
        run = Run(self.out, "intermediate", task, spec, keep=self.cfg.run_keep())
        if not run.done:
            model = self._new_model(upstream_dir, cfg.seed)
            info = self._train_tasks(model, tasks, cfg.intermediate.train, run, cfg.seed, inter=cfg.intermediate)
            info.pop("_adapters")
            if dist.is_main():
                save_encoder(model, run.dir / "encoder", {"tasks": tasks, "run": run.hash})
                self.tokenizer.save_pretrained(str(run.dir / "encoder"))
            run.finish(info)
        self.runs[run.hash] = {"kind": "intermediate", "task": task, "dir": str(run.dir), **run.summary()}
        return run.dir / "encoder", {"kind": "intermediate", "run": run.hash}

    def _data_spec(self, task: str) -> dict:
        """The data a run of ``task`` reads, by content (``xlrepro.datakey``): the sha256 of every file
        (or the Hub revision), whatever ``data.root``/``data.task_dirs`` point at."""
        from xlrepro.datakey import data_content

        return {"source": self.cfg.data.sources.get(task, self.cfg.data.source), "layout": self.cfg.data.layouts.get(task),
                "languages": self.cfg.data.languages, "content": data_content(self, task)}

    def target_spec(self, task: str, encoder_spec: dict, control: bool = False) -> dict:
        """The spec of the run ``target(task, ..., encoder_spec)`` registers, computed without
        training (the sweep graph keys its nodes with it). With a training chain its upstream is
        the last chain stage, derived from the stages' own specs."""
        cfg = self.cfg
        _, upstream = self.chain_stage_specs(task, encoder_spec, control)
        return {"kind": "target", "task": task, "task_version": get_task(task).version,
                "train": key_config(to_dict(train_config_for(cfg, task))), "upstream": upstream, "seed": cfg.seed,
                "control_shuffled_labels": control, "eval_splits": cfg.target.eval_splits,
                "data": self._data_spec(task), "metric_mode": METRIC_MODE}

    def chain_stage_specs(self, task: str, encoder_spec: dict, control: bool = False) -> tuple[list, dict]:
        """[(stage, spec)] of the chain runs before ``task``'s own stage, and the encoder reference
        the target run starts from (``encoder_spec`` itself when the task has no chain). A stage
        keeps the previous stage's head when the formats match."""
        cfg = self.cfg
        stages, prev_format = [], None
        for stage in get_task(task).training_chain()[:-1]:
            sspec = get_task(stage)
            tcfg = train_config_for(cfg, stage if stage in cfg.target.per_task else task)
            spec = {"kind": "chain", "task": stage, "task_version": sspec.version, "train": key_config(to_dict(tcfg)),
                    "upstream": encoder_spec, "head_from_upstream": prev_format == sspec.format.value,
                    "seed": cfg.seed, "control_shuffled_labels": control, "data": self._data_spec(stage)}
            stages.append((stage, spec))
            encoder_spec = {"kind": "chain", "task": stage, "run": config_hash(spec)}
            prev_format = sspec.format.value
        return stages, encoder_spec

    def target(self, task: str, encoder_dir, encoder_spec, control: bool = False, baseline: bool = False) -> None:
        cfg = self.cfg
        spec = self.target_spec(task, encoder_spec, control)
        encoder_dir, encoder_spec, head_init = self._train_chain(task, encoder_dir, encoder_spec, control)
        if spec["upstream"] != encoder_spec:  # the chain trained what chain_stage_specs predicted
            raise RuntimeError(f"{task}: chain ended at {encoder_spec}, expected {spec['upstream']}")
        tcfg = train_config_for(cfg, task)
        tspec = get_task(task)
        kind = "control" if control else "baseline" if baseline else "target"
        run = Run(self.out, kind, task, spec, keep=self.cfg.run_keep())
        if not run.done:
            model = self._new_model(encoder_dir, cfg.seed)
            info = self._train_tasks(model, [task], tcfg, run, cfg.seed, shuffle_labels=control,
                                     head_init={task: head_init} if head_init is not None else None)
            adapter = info.pop("_adapters")[task]
            records, withheld = [], []
            for split in cfg.target.eval_splits:
                for lang in self.eval_languages(task, split):
                    data = self.read(task, split, lang)
                    feats = adapter.featurize(data.examples, train=False)
                    preds = self.predict(model, task, adapter, feats, data.examples, cfg.target.eval_batch_size)
                    labelled = self._labelled(run, tspec, split, lang, data, withheld)
                    self._export_predictions(run, task, split, lang, adapter, preds, data.examples, data.raw)
                    if not labelled:
                        continue
                    scores = adapter.score(preds, data.examples, data, lang, METRIC_MODE)
                    for metric, value in scores.items():
                        if metric in ("mode", "note") or not isinstance(value, (int, float)):
                            continue
                        records.append({"task": task, "language": lang, "split": split, "metric": metric,
                                        "value": float(value), "mode": scores.get("mode", METRIC_MODE),
                                        "n": len(data.examples), "data_sha256": files_digest(data.files),
                                        "train_chain": tspec.training_chain()})
            if dist.is_main():
                atomic_write_json(run.dir / "results.json", {"records": records, "withheld": withheld,
                                                             "model_identity": self.base_encoder_spec()["identity"]})
            run.finish({k: v for k, v in info.items()})
        self._collect(run, kind, task, encoder_spec)

    @staticmethod
    def _has_label(e) -> bool:
        from xlrepro.check import example_has_label
        return example_has_label(e)

    @staticmethod
    def _labelled(run: Run, tspec, split: str, lang: str, data: ReadResult, withheld: list) -> bool:
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

    def _export_predictions(self, run: Run, task: str, split: str, lang: str, adapter, preds, examples,
                            raw=None) -> None:
        """Predictions in the XTREME submission layout: predictions/<task>/<split>-<lang>.<ext>."""
        from xlrepro.submission import write_predictions

        if not dist.is_main():
            return
        write_predictions(run.dir / "predictions", task, split, lang, adapter.fmt, preds, examples, raw)

    def _train_chain(self, task: str, encoder_dir, encoder_spec, control: bool):
        """Train the stages of ``task``'s training chain before its own (``train_source``) stage.

        Each stage is a ``chain`` run keyed by its spec (``chain_stage_specs``: the stage task, its
        train config, the upstream encoder, seed, control flag): it starts from the previous model,
        trains on the stage's English train split with early stopping on its English dev, and hands
        on its encoder and head. Returns (encoder dir, encoder spec, head state for the target or None).
        The head is handed on only between stages of the same format (XTREME-R's XCOPA chain
        keeps the multiple-choice head from Social IQa to COPA). A stage's train config is
        ``target.per_task[<stage>]`` when given, else the target task's.
        """
        stages, _ = self.chain_stage_specs(task, encoder_spec, control)
        head = None
        for stage, spec in stages:
            encoder_dir, encoder_spec, head = self._chain_stage(task, stage, spec, encoder_dir, head, control)
        if head is not None and head["format"] != get_task(task).format.value:
            head = None
        return encoder_dir, encoder_spec, head["state"] if head is not None else None

    def _chain_stage(self, target: str, stage: str, spec: dict, encoder_dir, head, control: bool):
        cfg = self.cfg
        sspec = get_task(stage)
        tcfg = train_config_for(cfg, stage if stage in cfg.target.per_task else target)
        carry = spec["head_from_upstream"]
        run = Run(self.out, "chain", stage, spec, keep=self.cfg.run_keep())
        if not run.done:
            model = self._new_model(encoder_dir, cfg.seed)
            info = self._train_tasks(model, [stage], tcfg, run, cfg.seed, shuffle_labels=control,
                                     head_init={stage: head["state"]} if carry else None)
            info.pop("_adapters")
            if dist.is_main():
                save_encoder(model, run.dir / "encoder", {"tasks": [stage], "run": run.hash, "chain_of": target})
                self.tokenizer.save_pretrained(str(run.dir / "encoder"))
                from xlrepro.train import _atomic_torch_save

                _atomic_torch_save({"task": stage, "format": sspec.format.value,
                                    "state": model.heads[stage].state_dict()}, run.dir / "head.pt")
            run.finish(info)
        self.runs[run.hash] = {"kind": "chain", "task": stage, "chain_of": target, "dir": str(run.dir), **run.summary()}
        head = torch.load(run.dir / "head.pt", map_location="cpu", weights_only=True)
        return run.dir / "encoder", {"kind": "chain", "task": stage, "run": run.hash}, head

    def retrieval(self, task: str, encoder_dir, encoder_spec) -> None:
        from xlrepro.dual_encoder import DUAL_ENCODER_TASKS, dual_encoder_retrieval, retrieval_encoder
        from xlrepro.metrics import tatoeba_accuracy
        from xlrepro.retrieval import embed, nearest, search_backend

        if task in DUAL_ENCODER_TASKS:  # LAReQA, Mewsli-X: fine-tuned dual encoder (xlrepro/dual_encoder.py)
            return dual_encoder_retrieval(self, task, encoder_dir, encoder_spec)
        predicted = self.retrieval_spec(task, encoder_spec)
        # which encoder is read (XTREME: the intermediate one; XTREME-R Tatoeba: SQuAD-fine-tuned)
        encoder_dir, encoder_spec, source = retrieval_encoder(self, task, encoder_dir, encoder_spec)
        cfg = self.cfg
        r = cfg.retrieval
        spec = self._retrieval_spec(task, encoder_spec, source)
        if spec != predicted:  # retrieval_spec (the sweep's node key) must name the run made here
            raise RuntimeError(f"{task}: retrieval encoder {encoder_spec} differs from the predicted {predicted['upstream']}")
        run = Run(self.out, "retrieval", task, spec, keep=self.cfg.run_keep())
        encoder_info = {"encoder_source": source, "encoder_upstream": encoder_spec, "benchmark_protocol": r.benchmark}
        if not run.done and task == "bucc2018":
            model = self._new_model(encoder_dir, cfg.seed)
            records, protocol = self._bucc(model, task, run)
            protocol = {**encoder_info, **protocol, "search": "xlrepro.ops.margin_mine"}
            records = [{**rec, "protocol": protocol} for rec in records]
            if dist.is_main():
                atomic_write_json(run.dir / "results.json", {"records": records, "protocol": protocol,
                                                             "model_identity": self.base_encoder_spec()["identity"]})
            run.finish({"protocol": protocol})
        if not run.done:
            model = self._new_model(encoder_dir, cfg.seed)
            records = []
            protocol = {**encoder_info, "layer": r.layer, "pooling": r.pooling, "similarity": r.similarity, "k": 1,
                        "direction": "en queries -> other side indexed", "search": search_backend(torch.zeros(1, 1)),
                        "attention": "packed" if model.packed else "padded"}
            for lang in self.eval_languages(task, "test"):
                data = self.read(task, "test", lang)
                ex = data.examples[0]
                args = dict(layer=r.layer, pooling=r.pooling, max_len=r.max_seq_length, batch_size=r.batch_size,
                            device=self.device, packed=model.packed, attention_backend=model.attention_backend)
                src = embed(model.encoder, self.tokenizer, ex.src_sentences, **args)
                eng = embed(model.encoder, self.tokenizer, ex.tgt_sentences, **args)
                # official direction: English queries, the other side is the index (xtreme
                # evaluate_retrieval.py: similarity_search(x=src, y=eng))
                _, idx = nearest(eng, src, r.similarity, k=1)
                self._export_retrieval(run, task, "test", lang, idx[:, 0].tolist())
                acc = tatoeba_accuracy(idx[:, 0].tolist(), mode=METRIC_MODE)
                _, ridx = nearest(src, eng, r.similarity, k=1)
                rev = tatoeba_accuracy(ridx[:, 0].tolist(), mode=METRIC_MODE)
                common = {"task": task, "language": lang, "split": "test", "n": len(ex.src_sentences),
                          "data_sha256": files_digest(data.files), "protocol": protocol}
                records.append({**common, "metric": "accuracy", "value": float(acc["accuracy"]), "mode": acc["mode"]})
                records.append({**common, "metric": "accuracy_reverse_diagnostic", "value": float(rev["accuracy"]),
                                "mode": rev["mode"]})
            if dist.is_main():
                atomic_write_json(run.dir / "results.json", {"records": records, "protocol": protocol,
                                                             "model_identity": self.base_encoder_spec()["identity"]})
            run.finish({"protocol": protocol})
        self._collect(run, "retrieval", task, encoder_spec)

    def retrieval_spec(self, task: str, encoder_spec: dict) -> dict:
        """The spec of the run ``retrieval(task, ..., encoder_spec)`` registers, computed without
        training anything (the sweep graph keys its nodes with it): the encoder it reads may be a
        fine-tuned one (XTREME-R Tatoeba: SQuAD; LAReQA/Mewsli-X: a dual encoder), whose run
        reference is derived from that run's own spec."""
        from xlrepro.dual_encoder import DUAL_ENCODER_TASKS, dual_retrieval_spec, retrieval_encoder_ref

        if task in DUAL_ENCODER_TASKS:
            return dual_retrieval_spec(self, task, encoder_spec)
        enc_ref, source = retrieval_encoder_ref(self, task, encoder_spec)
        return self._retrieval_spec(task, enc_ref, source)

    def _retrieval_spec(self, task: str, encoder_ref: dict, source: str) -> dict:
        return {"kind": "retrieval", "task": task, "task_version": get_task(task).version,
                "retrieval": {k: v for k, v in to_dict(self.cfg.retrieval).items() if k != "dual_encoder"},
                "encoder_source": source, "upstream": encoder_ref, "data": self._data_spec(task),
                "metric_mode": METRIC_MODE}

    def _bucc(self, model, task: str, run: Run | None = None) -> tuple[list, dict]:
        """BUCC mining: ratio margin (k=4 each way, 'max' retrieval) over de-duplicated sentences;
        the threshold is tuned on the dev ("sample") gold and applied unchanged to test. The
        dev score with its own threshold is reported separately as ``f1_dev_oracle``."""
        from xlrepro.metrics import bucc_dedup_sentences, bucc_evaluate, bucc_extract, bucc_optimize
        from xlrepro.ops import margin_mine
        from xlrepro.retrieval import embed

        r = self.cfg.retrieval
        tr = get_task(task).retrieval
        k, margin = int(tr.get("k", 4)), tr.get("margin", "ratio")
        args = dict(layer=r.layer, pooling=r.pooling, max_len=r.max_seq_length, batch_size=r.batch_size, device=self.device,
                    packed=model.packed, attention_backend=model.attention_backend)
        records = []
        for lang in self.eval_languages(task, "test"):
            cands, golds, files = {}, {}, {}
            for split in ("dev", "test"):
                data = self.read(task, split, lang)
                ex = data.examples[0]
                # LASER's text_load_unify: mine over unique lines (first-occurrence order)
                src_u = list(dict.fromkeys(ex.src_sentences))
                tgt_u = list(dict.fromkeys(ex.tgt_sentences))
                x = embed(model.encoder, self.tokenizer, src_u, **args)
                y = embed(model.encoder, self.tokenizer, tgt_u, **args)
                si, ti, sc = margin_mine(x, y, k=k, margin=margin, mode="max", similarity=r.similarity)
                # read_candidate2score: texts back to ids; repeated sentences dropped (official, D5)
                s2id = bucc_dedup_sentences(ex.src_ids, ex.src_sentences, METRIC_MODE)
                t2id = bucc_dedup_sentences(ex.tgt_ids, ex.tgt_sentences, METRIC_MODE)
                c2s = {}
                for a, b, v in zip(si.tolist(), ti.tolist(), sc.tolist()):
                    sa, tb = src_u[a].strip(), tgt_u[b].strip()
                    if sa in s2id and tb in t2id:
                        key = (s2id[sa], t2id[tb])
                        c2s[key] = max(v, c2s.get(key, float("-inf")))
                cands[split], golds[split], files[split] = c2s, ex.gold, files_digest(data.files)
            tuned = bucc_optimize(cands["dev"], golds["dev"], METRIC_MODE)
            test = bucc_evaluate(cands["test"], golds["test"], threshold=tuned["threshold"], mode=METRIC_MODE)
            if run is not None:
                self._export_retrieval(run, task, "test", lang, bucc_extract(cands["test"], tuned["threshold"]))
            common = {"task": task, "language": lang, "mode": METRIC_MODE}
            records.append({**common, "split": "dev", "metric": "f1_dev_oracle", "value": float(tuned["best_f1"]),
                            "n": len(golds["dev"]), "data_sha256": files["dev"]})
            for m in ("f1", "precision", "recall"):
                records.append({**common, "split": "test", "metric": m, "value": float(test[m]), "n": len(golds["test"]),
                                "data_sha256": files["test"], "threshold": tuned["threshold"],
                                "threshold_source": "tuned on dev gold"})
        protocol = {"layer": r.layer, "pooling": r.pooling, "similarity": r.similarity, "margin": margin, "k": k,
                    "retrieval": "max", "threshold": "tuned on dev (BUCC sample), applied to test",
                    "attention": "packed" if model.packed else "padded"}
        return records, protocol

    @staticmethod
    def _export_retrieval(run: Run, task: str, split: str, lang: str, predictions) -> None:
        """Retrieval predictions in the submission layout: BUCC's extracted pairs at the threshold
        tuned on dev, Tatoeba's retrieved line index per English sentence."""
        from xlrepro.submission import write_predictions

        if dist.is_main():
            write_predictions(run.dir / "predictions", task, split, lang, Format.RETRIEVAL, predictions)

    def _assemble_submission(self) -> None:
        """``<out>/submission/<task>/test-<lang>.<ext>``: the test predictions of this experiment's
        runs (target, retrieval; not the controls), in the layout ``xlrepro score`` and the
        leaderboard read, and ``MANIFEST.json`` naming the run of each file and whether the split
        was scored here (False: labels withheld, exported only). Rebuilt each time: files the
        manifest does not list do not stay (``xlrepro.submission.assemble_submission``)."""
        from xlrepro.submission import assemble_submission

        if not dist.is_main():
            return
        scored = {(r["task"], r["language"]) for r in self.records if r["split"] == "test" and not r.get("control")}
        sources = [(info["task"], h[:12], Path(info["dir"]) / "predictions" / info["task"])
                   for h, info in sorted(self.runs.items(), key=lambda kv: (kv[1].get("task", ""), kv[0]))
                   if info["kind"] not in ("control", "baseline") and "task" in info]  # all but the controls
        assemble_submission(self.out / "submission", sources, scored)

    def _collect(self, run: Run, kind: str, task: str, encoder_spec: dict) -> None:
        res = json.loads((run.dir / "results.json").read_text())
        self.withheld += res.get("withheld", [])
        inter = None if kind == "baseline" else "+".join(self.cfg.intermediate.tasks) or None
        for rec in res["records"]:
            self.records.append({**rec, "phase": kind, "intermediate": inter, "control": kind == "control",
                                 "run": run.hash[:12]})
        self.runs[run.hash] = {"kind": kind, "task": task, "dir": str(run.dir), **run.summary()}

    # ------------------------------------------------------------------ all
    def run(self) -> dict:
        self.prepare()
        cfg = self.cfg
        if dist.is_main():
            atomic_write_text(self.out / "config.json", json.dumps(to_dict(cfg), indent=2) + "\n")
        set_seed(cfg.seed)
        enc_dir, enc_spec = self.pretrain()
        inter_dir, inter_spec = self.intermediate(enc_dir, enc_spec)
        for task in cfg.retrieval.tasks:
            self.retrieval(task, inter_dir, inter_spec)
        for task in cfg.target.tasks:
            self.target(task, inter_dir, inter_spec)
        for task in cfg.controls:
            self.target(task, inter_dir, inter_spec, control=True)
        if inter_spec != enc_spec:  # and the no-intermediate baseline: fine-tuned from the pre-trained encoder
            for task in cfg.controls:
                self.target(task, enc_dir, enc_spec, baseline=True)
        # Two processes may finish one experiment folder at once (each trained nothing the other had
        # not): the submission, report and export are rebuilt by one of them at a time.
        if not dist.is_main():
            return self._finish()
        with FolderLock(self.out, what="experiment folder (finishing)", name=".finish.lock"):
            return self._finish()

    def _finish(self) -> dict:
        cfg = self.cfg
        self._assemble_submission()
        if dist.is_main():  # item scores of the controls' runs: the report pairs intermediate and baseline
            from xlrepro.items import write_items

            for info in self.runs.values():
                if info["kind"] in ("target", "baseline") and info.get("task") in cfg.controls:
                    write_items(self, info["task"], Path(info["dir"]))
        results = {
            "experiment": cfg.name,
            "config_hash": config_hash(cfg),
            "config": to_dict(cfg),  # the resolved config (also in config.json; each run's spec in runs/*/spec.json)
            "seed": cfg.seed,
            "smoke_scale": cfg.smoke is not None,
            "metric_mode": METRIC_MODE,
            "model_identity": self.base_encoder_spec()["identity"],
            "provenance": provenance(cfg.seed),
            "records": [{**r, "resource_group": langtab.get(r["language"]).resource_group} for r in self.records],
            "runs": self.runs,
            "withheld": self.withheld,
        }
        if dist.is_main():
            atomic_write_json(self.out / "results.json", results)
            from xlrepro.report import write_report

            write_report(results, self.out)
            if cfg.export.at_end:  # the fine-tuned models as transformers models (xlrepro.export)
                from xlrepro.export import export_experiment

                export_experiment(self.out, Path(cfg.export.dir) if cfg.export.dir else self.out / "export",
                                  allow_empty=True)
        return results
