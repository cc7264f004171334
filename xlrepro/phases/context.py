"""What the phases of one experiment share: config, output folder, data reader, device, tokenizer.

A ``Context`` is built per experiment (or per sweep cell) and prepared once (``prepare``: the smoke
world and the tokenizer). Phases read data, build models and train through its public methods;
none of them keeps state between runs. Model construction goes through ``xlrepro.model``'s
public builders.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch

from xlrepro import distributed as dist
from xlrepro.config import ExperimentConfig, TrainConfig, config_hash, to_dict
from xlrepro.data.types import Format, ReadResult
from xlrepro.formats import adapter_for
from xlrepro.metrics import METRIC_MODE
from xlrepro.model import MultiTaskModel, build_encoder, load_encoder
from xlrepro.runs import Run, files_digest
from xlrepro.sampling import nested_subset, subset_digest
from xlrepro.tasks import get_task
from xlrepro.tasks.registry import headline_value
from xlrepro.train import Stream, train

log = logging.getLogger("xlrepro")


class Context:
    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path, device: str | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = device or (f"cuda:{dist.local_rank()}" if torch.cuda.is_available() else "cpu")
        self.tokenizer: Any = None  # set by prepare()
        self.data_root = Path(cfg.data.root)
        self.tokenizer_path = cfg.model.tokenizer or cfg.model.name_or_path

    # ------------------------------------------------------------------ data
    def task_dir(self, task: str) -> Path:
        return Path(self.cfg.data.task_dirs.get(task) or self.data_root / task)

    def read(self, task: str, split: str, lang: str) -> ReadResult:
        spec = get_task(task)
        if self.cfg.data.sources.get(task, self.cfg.data.source) == "hub":
            from xlrepro.data.hub import read_hub

            return read_hub(
                spec, split, lang, allow_unpinned=self.cfg.data.allow_unpinned_hub, prepared=self.task_dir(task)
            )
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

    def data_spec(self, task: str) -> dict:
        """The data a run of ``task`` reads, by content (``xlrepro.datakey``): the sha256 of every file
        (or the Hub revision), whatever ``data.root``/``data.task_dirs`` point at."""
        from xlrepro.datakey import data_content

        return {
            "source": self.cfg.data.sources.get(task, self.cfg.data.source),
            "layout": self.cfg.data.layouts.get(task),
            "languages": self.cfg.data.languages,
            "content": data_content(self, task),
        }

    @staticmethod
    def has_label(e) -> bool:
        from xlrepro.check import example_has_label

        return example_has_label(e)

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
            from xlrepro.runs import FolderLock
            from xlrepro.smoke.tokenizer import build_tokenizer
            from xlrepro.smoke.world import WORLD_VERSION, generate

            key = config_hash({"smoke": to_dict(cfg.smoke), "seed": self.base_seed, "world_version": WORLD_VERSION})[
                :12
            ]
            world = self.out / f"world-{key}"
            tok_dir = world / "tokenizer"
            if dist.is_main() and not (tok_dir / "tokenizer.json").exists():
                with FolderLock(self.out, "smoke world", name=f".world-{key}.lock"):  # one process builds it
                    if not (world / "WORLD.json").exists():
                        generate(
                            world,
                            cfg.smoke.languages,
                            self.base_seed,
                            cfg.smoke.n_train,
                            cfg.smoke.n_dev,
                            cfg.smoke.n_test,
                            cfg.smoke.n_corpus,
                            cfg.smoke.code_switch,
                        )
                    if not (tok_dir / "tokenizer.json").exists():
                        build_tokenizer(sorted((world / "corpus").glob("*.txt")), cfg.smoke.vocab_size, tok_dir)
            dist.barrier()  # the other ranks read the world rank 0 wrote
            self.data_root = world
            self.tokenizer_path = str(tok_dir)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            self.tokenizer_path, revision=None if cfg.smoke else cfg.model.revision
        )

    def base_encoder_spec(self) -> dict:
        """The configured encoder, keyed by its identity (``xlrepro.model.model_identity``: a local
        folder by the sha256 of its files, not its path; a Hub id by the resolved commit)."""
        from xlrepro.model import model_identity

        m = to_dict(self.cfg.model)
        if m.get("family") == "xlmr":  # the default family keeps the keys runs had before model.family
            del m["family"]
        ident = model_identity(self.cfg.model)
        tokenizer: Any = self.tokenizer_path if self.cfg.smoke is None else "smoke"
        if ident["kind"] == "local":
            if self.cfg.model.tokenizer in (None, m["name_or_path"]):
                tokenizer = "model folder"
            m["name_or_path"] = "local folder (see identity)"
        if self.cfg.smoke is None and tokenizer != "model folder" and Path(tokenizer).is_dir():
            from xlrepro.datakey import files_content

            tokenizer = {"local tokenizer": files_content(sorted(f for f in Path(tokenizer).iterdir() if f.is_file()))}
        return {"model": m, "tokenizer": tokenizer, "identity": ident}

    def model_identity(self) -> dict:
        return self.base_encoder_spec()["identity"]

    def pretrain_files(self) -> list[Path]:
        corpus = self.data_root / "corpus" if self.cfg.smoke else Path(self.cfg.pretrain.corpus)  # type: ignore[union-attr]
        files = sorted(corpus.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"pretrain.corpus: no *.txt files in {corpus}")
        return files

    def mlm_corpus_files(self, inter) -> list[Path]:
        folder = Path(inter.mlm_corpus) if inter.mlm_corpus else (self.data_root / "corpus" if self.cfg.smoke else None)
        if folder is None:
            raise ValueError("intermediate.mlm_mix > 0 needs intermediate.mlm_corpus: a folder of <lang>.txt files")
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"intermediate.mlm_corpus: no *.txt files in {folder}")
        return files

    # ------------------------------------------------------------------ models and training
    def new_model(self, encoder_dir: Path | None, seed: int) -> MultiTaskModel:
        """The configured base encoder (``encoder_dir`` None) or a handed-on one, with no heads yet."""
        if encoder_dir is None:
            from xlrepro.model import model_identity

            enc = build_encoder(
                self.cfg.model,
                vocab_size=len(self.tokenizer),
                seed=seed,
                revision=model_identity(self.cfg.model).get("commit"),
            )
        else:
            enc = load_encoder(encoder_dir)
        return MultiTaskModel(enc, packed=self.cfg.model.attention == "packed").to(self.device)

    def task_stream(
        self,
        model: MultiTaskModel,
        task: str,
        train_cfg: TrainConfig,
        seed: int,
        volume,
        shuffle_labels: bool = False,
        translated: dict | None = None,
        head_init: dict | None = None,
    ):
        """Stream, dev evaluator, data record and adapter of one task trained on its English training data.

        ``volume``: nested subset of the English examples; ``translated``: {language: folder} of
        user-supplied translated copies of the training set (same layout), added after subsetting.
        """
        spec = get_task(task)
        train_task = get_task(spec.train_source) if spec.train_source else spec
        dev_task = get_task(spec.dev_source or train_task.name)
        max_len = train_cfg.max_seq_length or spec.max_seq_length
        adapter = adapter_for(spec, self.tokenizer, max_len, train_cfg)
        train_data = self.read(train_task.name, "train", "en")
        if not train_data.examples:  # before training: an empty stream would have no batch to give
            from xlrepro.errors import DataFormatError

            raise DataFormatError(
                ", ".join(sorted(train_data.files)) or f"task {train_task.name}",
                "the English training split has no examples (an empty file, or a header without "
                "rows?); expected at least one",
            )
        labels_from_data = None
        if adapter.n_labels() is None and spec.format.value == "tagging":
            # a tagging task without a fixed tag set (CCG supertags): the tags of the whole English
            # training split, sorted, so that the head and the label indices do not depend on the volume
            labels_from_data = sorted({t for e in train_data.examples for t in (getattr(e, "tags", None) or ())})
            if not labels_from_data:
                raise ValueError(f"task {task}: no tag set in its YAML and no tags in its training data")
            adapter.labels = labels_from_data
        model.add_head(task, spec.format, adapter.n_labels(), self.cfg.model.classifier_dropout, seed=seed + 1)
        if head_init is not None:  # continue a training chain with the previous stage's head
            model.heads[task].load_state_dict(head_init)
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
            shuffled = adapter.shuffled(examples, random.Random(seed + 7))
            if shuffled is None:
                raise ValueError(
                    f"task {task}: the shuffled-label control needs a classification, multiple-choice or tagging task"
                )
            examples = shuffled
        feats = adapter.featurize(examples, train=True)
        dev = self.read(dev_task.name, "dev", "en")
        dev_examples = dev.examples[: train_cfg.eval_subset]
        dev_feats = adapter.featurize(dev_examples, train=False)
        dev_result = ReadResult(dev_examples, dev.files, raw=None)
        batch_size = train_cfg.eval_batch_size or 2 * train_cfg.batch_size

        def evaluate() -> float:
            preds = self.predict(model, task, adapter, dev_feats, dev_examples, batch_size)
            return headline_value(dev_task.name, adapter.score(preds, dev_examples, dev_result, "en", METRIC_MODE))

        device = self.device

        def loss_fn(m, batch):
            inputs = {k: v.to(device) for k, v in batch.inputs.items()}
            targets = {k: v.to(device) for k, v in batch.targets.items()}
            return adapter.loss(m(task, **inputs), targets)

        info = {
            "n_examples": len(examples),
            "n_available": len(train_data.examples),
            "volume": volume,
            "subset_sha256": subset_digest([e.guid for e in examples]),
            "n_features": len(feats),
            "language_mix": language_mix,
            "train_source": train_task.name,
            "dev_source": dev_task.name,
            "dev_subset": len(dev_examples),
            "train_data_sha256": files_digest(files),
            "shuffle_labels": shuffle_labels,
            "skipped": train_data.skipped,
            "head": "continued from the previous chain stage" if head_init is not None else "fresh",
        }
        if labels_from_data:
            info["labels_from_training_data"] = len(labels_from_data)
        return Stream(task, feats, adapter.collate, loss_fn), evaluate, info, adapter

    def train_tasks(
        self,
        model: MultiTaskModel,
        tasks: list[str],
        train_cfg: TrainConfig,
        run: Run,
        seed: int,
        shuffle_labels: bool = False,
        inter=None,
        head_init: dict | None = None,
    ) -> tuple[dict, dict]:
        """Train on one task, or on several at once (shared encoder, one head each; ``inter`` gives
        the sampler, volume scope, MLM mixing and translated data); early-stop on the mean of the
        tasks' English dev scores and reload the best. Returns (run summary, {task: adapter})."""
        from xlrepro.sampling import MixSampler, TaskSampler, split_volume

        # the config's own switch (e.g. ``intermediate.train.shuffle_labels``: an intermediate phase
        # that carries no information, the scaling sweep's negative control) or the caller's
        shuffle_labels = shuffle_labels or train_cfg.shuffle_labels
        if inter is not None and inter.volume_scope == "total" and train_cfg.volume != "all":
            sizes = {t: len(self.read(get_task(t).train_source or t, "train", "en").examples) for t in tasks}
            volumes: dict = split_volume(int(train_cfg.volume), sizes)
        else:
            volumes = {t: train_cfg.volume for t in tasks}
        streams: list = []
        evals: list = []
        infos: dict = {}
        adapters: dict = {}
        for t in tasks:
            stream, ev, info, ad = self.task_stream(
                model,
                t,
                train_cfg,
                seed,
                volumes[t],
                shuffle_labels,
                (inter.translated.get(t) if inter is not None else None),
                (head_init or {}).get(t),
            )
            streams.append(stream)
            evals.append(ev)
            infos[t], adapters[t] = info, ad
            run.log({"event": "data", "task": t, **info})
        sampler: Any = None
        if len(streams) > 1 or (inter is not None and inter.mlm_mix > 0):
            sampler = TaskSampler(
                {t: len(s.feats) for t, s in zip(tasks, streams)},
                inter.sampler if inter else "proportional",
                inter.temperature if inter else 1.0,
                seed,
            )
            run.log({"event": "sampler", "method": sampler.method, "probabilities": sampler.probabilities()})
        if inter is not None and inter.mlm_mix > 0:
            from xlrepro.mlm import mlm_stream

            files = self.mlm_corpus_files(inter)
            streams.append(
                mlm_stream(
                    model,
                    self.tokenizer,
                    files,
                    self.cfg.pretrain.max_seq_length if self.cfg.pretrain else 128,
                    0.15,
                    self.device,
                    seed,
                )
            )
            sampler = MixSampler(sampler, inter.mlm_mix, seed)
            run.log({"event": "mlm_mix", "ratio": inter.mlm_mix, "corpus": [str(f) for f in files]})

        def evaluate() -> float:
            return sum(e() for e in evals) / len(evals)

        state = train(
            model,
            streams,
            train_cfg,
            seed,
            run.dir,
            evaluate,
            run.log,
            desc=f"{run.kind}:{'+'.join(tasks)}",
            sampler=sampler,
            keep_checkpoint=True,
        )
        return (
            {
                "tasks": infos,
                "steps": state.step,
                "best_step": state.best_step,
                "best_dev": state.best_score,
                "stopped_early": state.stopped_early,
            },
            adapters,
        )

    @torch.no_grad()
    def predict(self, model, task, adapter, feats, examples, batch_size: int):
        model.eval()
        logits = []
        for s in range(0, len(feats), batch_size):
            batch = adapter.collate(feats[s : s + batch_size])
            out = model(task, **{k: v.to(self.device) for k, v in batch.inputs.items()}).float().cpu()
            if adapter.fmt == Format.SPAN_QA or adapter.fmt == Format.TAGGING:
                mask = batch.inputs["attention_mask"]
                logits += [o[: int(m.sum())] for o, m in zip(out, mask)]
            else:
                logits += list(out)
        model.train()
        return adapter.predict(logits, feats, examples)

    def save_encoder(self, model, folder: Path, meta: dict) -> None:
        """Rank 0 writes the encoder and the tokenizer beside it (the hand-off to the next phase)."""
        from xlrepro.model import save_encoder

        if dist.is_main():
            save_encoder(model, folder, meta)
            self.tokenizer.save_pretrained(str(folder))
