"""Fine-tuned models as standard Hugging Face ``transformers`` models (``xlrepro export``).

A target run keeps its best weights as ``best_model.pt``: the state dict of ``MultiTaskModel``
(``encoder.*`` = an ``XLMRobertaModel`` without pooler, ``heads.<task>.*``). Export renames them
into the matching ``transformers`` class, whose inference forward is the same computation:

  classification    XLMRobertaForSequenceClassification   heads.dense -> classifier.dense,
                                                          heads.out -> classifier.out_proj; id2label
  multiple_choice   XLMRobertaForMultipleChoice           heads.dense -> roberta.pooler.dense (tanh on <s>),
                                                          heads.out -> classifier
  span_qa           XLMRobertaForQuestionAnswering        heads.out -> qa_outputs (start, end)
  tagging           XLMRobertaForTokenClassification      heads.out -> classifier; id2label

A BUCC/Tatoeba retrieval run exports the encoder it read, cut after its retrieval layer, as an
``XLMRobertaModel``: its ``last_hidden_state`` is ``hidden_states[layer]`` of the full encoder,
so mean pooling over the attention mask gives xlrepro's sentence embeddings. (Dual-encoder runs,
LAReQA and Mewsli-X, have their own pooler and scale and are not exported.)

Each export folder holds the weights (safetensors), ``config.json``, the tokenizer, a model card
``README.md`` (data, recipe, scores, provenance) and ``xlrepro_export.json`` (the same, as data).
Folders are written under a temporary name and renamed into place. Uploading to the Hub is the
user's own step (``huggingface-cli upload <user>/<repo> <folder> .``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from xlrepro.errors import ConfigError

CLASSES = {
    "classification": "XLMRobertaForSequenceClassification",
    "multiple_choice": "XLMRobertaForMultipleChoice",
    "span_qa": "XLMRobertaForQuestionAnswering",
    "tagging": "XLMRobertaForTokenClassification",
    "retrieval": "XLMRobertaModel",
}
PIPELINE_TAGS = {
    "classification": "text-classification",
    "multiple_choice": "multiple-choice",
    "span_qa": "question-answering",
    "tagging": "token-classification",
    "retrieval": "feature-extraction",
}
HEAD_KEYS = {
    "classification": {"dense": "classifier.dense", "out": "classifier.out_proj"},
    "multiple_choice": {"dense": "roberta.pooler.dense", "out": "classifier"},
    "span_qa": {"out": "qa_outputs"},
    "tagging": {"out": "classifier"},
}


def _json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def _run_by_hash(out: Path, run_hash: str) -> Path:
    found = sorted((out / "runs").glob(f"*-{run_hash[:12]}"))
    if not found:
        raise ConfigError(
            f"{out / 'runs'}: no run folder for upstream run {run_hash[:12]} (expected runs/<kind>-<task>-"
            f"{run_hash[:12]}/); export from the experiment's output folder as it was written"
        )
    return found[0]


def _encoder_source(out: Path, upstream: dict) -> tuple[Path | None, dict]:
    """(folder with the upstream encoder's config.json and tokenizer, or None for the base model; the upstream ref)."""
    if "run" in upstream:
        run = _run_by_hash(out, upstream["run"])
        for name in ("encoder", "model"):
            if (run / name / "config.json").exists():
                return run / name, upstream
        raise ConfigError(f"{run}: no encoder/config.json (the run's encoder hand-off is missing)")
    return None, upstream


def _base_config_and_tokenizer(out: Path, upstream: dict, vocab_size: int):
    """Config and tokenizer of a run that started from the configured base model (no xlrepro run upstream)."""
    from transformers import AutoConfig, AutoTokenizer, XLMRobertaConfig

    model = upstream.get("model") or {}
    if upstream.get("tokenizer") == "smoke":  # the generated world's tokenizer, a fresh smoke-shaped encoder
        worlds = sorted(out.glob("world-*/tokenizer"))
        if not worlds:
            raise ConfigError(f"{out}: no world-*/tokenizer (the smoke world this run was trained on)")
        cfg = XLMRobertaConfig(**{**(model.get("init_config") or {}), "vocab_size": vocab_size})
        return cfg, AutoTokenizer.from_pretrained(str(worlds[0]))
    name, rev = model["name_or_path"], model.get("revision")  # a run spec's model config always has a name
    return (
        AutoConfig.from_pretrained(name, revision=rev),
        AutoTokenizer.from_pretrained(upstream.get("tokenizer") or name, revision=rev),
    )


def _load_state(path: Path) -> dict:
    import torch

    if not path.exists():
        raise ConfigError(
            f"{path}: missing: the run kept no best model (is it finished, with evaluation? "
            "keep=handoff, the default, drops it: run with keep=all or export.at_end=true)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ConfigError(f"{path}: cannot be read as a state dict ({type(e).__name__}: {e})") from None


def convert_state(state: dict, task: str, fmt: str) -> dict:
    """xlrepro's ``MultiTaskModel`` state dict -> the ``transformers`` class's names (module docstring)."""
    out, head = {}, f"heads.{task}."
    mapping = HEAD_KEYS[fmt]
    for k, v in state.items():
        if k.startswith("encoder."):
            out["roberta." + k[len("encoder.") :]] = v
        elif k.startswith(head):
            module, _, param = k[len(head) :].partition(".")
            if module in mapping:
                out[f"{mapping[module]}.{param}"] = v
    if not any(k.startswith(head) for k in state):
        raise ConfigError(
            f"best_model.pt has no head for task {task!r} (heads: "
            f"{sorted({k.split('.')[1] for k in state if k.startswith('heads.')})})"
        )
    return out


def _write_folder(dest: Path, fill) -> Path:
    """Build the folder under a temporary name beside ``dest``, then swap it into place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _experiment_results(out: Path) -> dict | None:
    path = out / "results.json"
    return _json(path) if path.exists() else None


def _run_records(run_dir: Path) -> list[dict]:
    path = run_dir / "results.json"
    return _json(path).get("records", []) if path.exists() else []


def _lineage(out: Path, upstream: dict) -> list[str]:
    """The phases behind an encoder, oldest first: e.g. ['base model', 'pretrain: mlm', 'intermediate: hellaswag']."""
    chain = []
    while "run" in upstream:
        run = _run_by_hash(out, upstream["run"])
        spec = _json(run / "spec.json")
        what = spec.get("task") or "+".join(spec.get("tasks") or []) or run.name.split("-")[1]
        chain.append(f"{spec.get('kind', run.name.split('-')[0])}: {what} (run {run.name})")
        upstream = spec.get("upstream") or spec.get("base") or {}
    model = upstream.get("model") or {}
    base = (
        "smoke-scale XLM-R-shaped encoder (random init)"
        if upstream.get("tokenizer") == "smoke"
        else f"{model.get('name_or_path')}" + (f" @ {model['revision']}" if model.get("revision") else "")
    )
    return [f"base: {base}"] + chain[::-1]


def export_run(run_dir: str | Path, dest: str | Path, experiment: dict | None = None) -> Path:
    """Export one finished target or BUCC/Tatoeba retrieval run to ``dest``; returns ``dest``."""
    import torch
    import transformers

    from xlrepro.tasks import get_task

    run_dir = Path(run_dir)
    out = run_dir.parent.parent
    if not (run_dir / "done.json").exists():
        raise ConfigError(f"{run_dir}: not a finished run (no done.json)")
    spec = _json(run_dir / "spec.json")
    kind, task = spec.get("kind"), str(spec.get("task"))
    tspec = get_task(task)
    fmt = "retrieval" if kind == "retrieval" else tspec.format.value
    if kind not in ("target", "retrieval") or fmt not in CLASSES:
        raise ConfigError(
            f"{run_dir}: a {kind} run of {task!r} ({fmt}); export takes target runs and BUCC/Tatoeba retrieval runs"
        )
    enc_dir, upstream = _encoder_source(out, spec["upstream"])
    model_type = (
        _json(enc_dir / "config.json").get("model_type")
        if enc_dir is not None
        else "xlm-roberta"
        if (upstream.get("model") or {}).get("family", "xlmr") == "xlmr"
        else None
    )
    if model_type != "xlm-roberta":  # the classes and key names below are XLM-R's (docs/models.md)
        raise ConfigError(
            f"{run_dir}: the run's encoder is a {model_type or (upstream.get('model') or {}).get('family')!r} "
            "model; export writes XLM-R classes only (model.family=xlmr)"
        )
    if kind == "retrieval":
        if enc_dir is None:
            raise ConfigError(
                f"{run_dir}: the retrieval encoder is the base model itself; nothing fine-tuned to export"
            )
        from safetensors.torch import load_file

        state = {"roberta." + k: v for k, v in load_file(str(enc_dir / "model.safetensors")).items()}
    else:
        state = convert_state(_load_state(run_dir / "best_model.pt"), task, fmt)
    vocab = state["roberta.embeddings.word_embeddings.weight"].shape[0]
    if enc_dir is not None:
        from transformers import AutoConfig, AutoTokenizer

        config = AutoConfig.from_pretrained(str(enc_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(enc_dir))
    else:
        config, tokenizer = _base_config_and_tokenizer(out, upstream, vocab)
    config.vocab_size = vocab
    cls_name = CLASSES[fmt]
    config.architectures = [cls_name]
    if fmt in ("classification", "tagging"):
        assert tspec.labels is not None  # the registry requires labels of these formats
        labels = list(tspec.labels)
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {l: i for i, l in enumerate(labels)}
    if fmt == "retrieval":
        layer = spec["retrieval"]["layer"]
        if not 0 <= layer <= config.num_hidden_layers:
            raise ConfigError(
                f"{run_dir}/spec.json: retrieval.layer {layer} is outside the encoder's 0..{config.num_hidden_layers}"
            )
        config.num_hidden_layers = layer  # last_hidden_state == hidden_states[layer] of the full encoder
        state = {
            k: v for k, v in state.items() if not k.startswith("roberta.encoder.layer.") or int(k.split(".")[3]) < layer
        }
    model_cls = getattr(transformers, cls_name)
    model = model_cls(config, add_pooling_layer=False) if fmt == "retrieval" else model_cls(config)
    if fmt == "retrieval":
        state = {k[len("roberta.") :]: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ConfigError(
            f"{run_dir}: the weights do not fit {cls_name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.eval()

    records = [r for r in (experiment or {}).get("records", []) if r.get("run") == run_dir.name[-12:]] or _run_records(
        run_dir
    )
    done = _json(run_dir / "done.json")
    from xlrepro.runs import provenance

    info = {
        "xlrepro_export": 1,
        "class": cls_name,
        "format": fmt,
        "task": task,
        "run": run_dir.name,
        "run_spec": spec,
        "run_summary": done,
        "lineage": _lineage(out, spec["upstream"]),
        "records": records,
        "experiment": {
            k: (experiment or {}).get(k) for k in ("experiment", "config_hash", "seed", "smoke_scale", "metric_mode")
        },
        "training_provenance": (experiment or {}).get("provenance"),
        "export_provenance": {k: v for k, v in provenance().items() if k not in ("installed", "locks")},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if fmt == "retrieval":
        info["retrieval"] = {k: spec["retrieval"][k] for k in ("layer", "pooling", "similarity", "max_seq_length")}

    def fill(folder: Path) -> None:
        with torch.no_grad():
            model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
        (folder / "xlrepro_export.json").write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
        (folder / "README.md").write_text(model_card(info), encoding="utf-8")

    return _write_folder(Path(dest), fill)


def _usage(info: dict) -> list[str]:
    fmt, name = info["format"], "path/to/this/folder"
    if fmt == "classification":
        return [
            "from transformers import pipeline",
            f'clf = pipeline("text-classification", model="{name}")',
            'clf({"text": "premise ...", "text_pair": "hypothesis ..."})',
        ]
    if fmt == "span_qa":
        t = info["run_spec"]["train"]
        return [
            "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
            f'tok = AutoTokenizer.from_pretrained("{name}")',
            f'model = AutoModelForQuestionAnswering.from_pretrained("{name}")',
            f'enc = tok(question, context, truncation="only_second", max_length={t.get("max_seq_length") or 384}, '
            f"stride={t['doc_stride']}, return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, "
            'return_tensors="pt")',
            'out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])',
            f"# best span: highest start + end logit inside the context, end >= start, at most "
            f"{t['max_answer_length']} tokens",
            '# (transformers 4.x: pipeline("question-answering", model=...) does this decoding)',
        ]
    if fmt == "tagging":
        return [
            "from transformers import AutoModelForTokenClassification, AutoTokenizer",
            f'tok = AutoTokenizer.from_pretrained("{name}")',
            f'model = AutoModelForTokenClassification.from_pretrained("{name}")',
            'enc = tok(words, is_split_into_words=True, return_tensors="pt")',
            "ids = model(**enc).logits[0].argmax(-1)",
            "# the tag of word j is the prediction at its first sub-word: the first k with enc.word_ids()[k] == j",
            '# (pipeline("token-classification", ...) also loads it, on raw text)',
        ]
    if fmt == "multiple_choice":
        return [
            "from transformers import AutoModelForMultipleChoice, AutoTokenizer",
            f'tok = AutoTokenizer.from_pretrained("{name}")',
            f'model = AutoModelForMultipleChoice.from_pretrained("{name}")',
            'enc = tok([context] * len(choices), choices, padding=True, return_tensors="pt")',
            "best = model(**{k: v[None] for k, v in enc.items()}).logits.argmax(-1)",
        ]
    r = info["retrieval"]
    return [
        "from transformers import AutoModel, AutoTokenizer",
        f'tok = AutoTokenizer.from_pretrained("{name}"); model = AutoModel.from_pretrained("{name}")',
        f'enc = tok(sentences, padding=True, truncation=True, max_length={r["max_seq_length"]}, return_tensors="pt")',
        "h = model(**enc).last_hidden_state",
        'm = enc["attention_mask"].unsqueeze(-1)',
        "emb = (h * m).sum(1) / m.sum(1)" if r["pooling"] == "mean" else "emb = h[:, 0]",
        f"# compare with {r['similarity']} similarity",
    ]


def model_card(info: dict) -> str:
    spec, done, exp = info["run_spec"], info["run_summary"], info["experiment"]
    fmt, task = info["format"], info["task"]
    langs = sorted({r["language"] for r in info["records"]})
    front = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {PIPELINE_TAGS[fmt]}",
        f"tags: [xlrepro, xlm-roberta, zero-shot-cross-lingual-transfer, {task}]",
    ]
    if langs and not exp.get("smoke_scale"):
        front.append(f"language: [{', '.join(langs)}]")
    front.append("---")
    lines = front + ["", f"# {task}: XLM-R fine-tuned by xlrepro ({info['class']})", ""]
    if exp.get("smoke_scale"):
        lines += [
            "> **Smoke scale.** A tiny XLM-R-shaped model trained on a generated world whose languages are",
            "> synthetic stand-ins named after real ones. It tests the pipeline; it is not a useful model.",
            "",
        ]
    lines += [
        "Trained by xlrepro, which reproduces Phang et al. (2020, arXiv:2005.13013): English",
        "intermediate-task training, then English target-task training, evaluated zero-shot in other languages.",
        "",
        "## Use",
        "",
        "```python",
        *_usage(info),
        "```",
        "",
    ]
    if fmt == "tagging":
        lines += [
            "xlrepro labels each word's first sub-word; words are tokenised one by one (no special tokens)",
            "between `<s>` and `</s>`, which is what `is_split_into_words=True` gives with this tokenizer.",
            "",
        ]
    lines += ["## Data", ""]
    if kind_is_target(spec):
        for d in (done.get("tasks") or {}).values():
            lines += [
                f"- English training data: `{d.get('train_source')}` train split, {d.get('n_examples')} of "
                f"{d.get('n_available')} examples (volume `{d.get('volume')}`, subset sha256 "
                f"`{str(d.get('subset_sha256'))[:16]}…`, files sha256 `{str(d.get('train_data_sha256'))[:16]}…`)",
                f"- early stopping on {d.get('dev_subset')} examples of `{d.get('dev_source')}` English dev; "
                f"best step {done.get('best_step')} of {done.get('steps')} (dev score {_num(done.get('best_dev'))})",
                f"- head: {d.get('head')}; labels shuffled (negative control): {d.get('shuffle_labels')}",
            ]
    else:
        r = info["retrieval"]
        lines += [
            f"- no training on {task}: the encoder below, cut after hidden layer {r['layer']} "
            f"(index 0 = embeddings), {r['pooling']} pooling, {r['similarity']} similarity"
        ]
    lines += ["", "## Recipe", "", "Encoder lineage (oldest first):", ""]
    lines += [f"1. {step}" for step in info["lineage"]]
    if kind_is_target(spec):
        lines += ["", "Target-task training (`xlrepro` TrainConfig):", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in spec["train"].items() if v is not None]
    lines += ["", "## Scores", ""]
    if info["records"]:
        lines += [
            "Zero-shot: trained on English only. Metric mode as recorded (`official` = the benchmark's scorer).",
            "",
            "| split | language | metric | value | mode | n |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(info["records"], key=lambda r: (r["split"], r["language"] != "en", r["language"], r["metric"])):
            lines.append(
                f"| {r['split']} | {r['language']} | {r['metric']} | {_num(r['value'])} | {r.get('mode', '')} "
                f"| {r.get('n', '')} |"
            )
    else:
        lines += ["No scored split (labels withheld: predictions were exported for the leaderboard instead)."]
    prov = info.get("training_provenance") or {}
    lines += [
        "",
        "## Provenance",
        "",
        f"- run `{info['run']}` (its spec: `run_spec` in `xlrepro_export.json`)",
        f"- experiment `{exp.get('experiment')}`, config hash `{str(exp.get('config_hash'))[:12]}`, "
        f"seed {exp.get('seed')}",
        f"- trained with git commit `{prov.get('git_commit')}`"
        + (" (dirty)" if prov.get("git_dirty") else "")
        + f", torch {(prov.get('versions') or {}).get('torch')}"
        + f", transformers {(prov.get('versions') or {}).get('transformers')}",
        f"- exported {info['exported_at']} with git commit `{info['export_provenance'].get('git_commit')}`",
        "",
        "## Upload",
        "",
        "The Hub upload is yours to do, e.g.:",
        "",
        "```bash",
        "huggingface-cli login",
        "huggingface-cli upload <user>/<repo-name> <this-folder> .",
        "```",
        "",
    ]
    return "\n".join(lines)


def kind_is_target(spec: dict) -> bool:
    return spec.get("kind") == "target"


def _num(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else str(v)


def exportable_runs(out: Path, experiment: dict | None) -> list[Path]:
    """Finished target runs (not controls) and BUCC/Tatoeba retrieval runs of an output folder."""
    from xlrepro.dual_encoder import DUAL_ENCODER_TASKS

    if experiment is not None:
        dirs = [Path(v["dir"]) for v in experiment.get("runs", {}).values() if v.get("kind") in ("target", "retrieval")]
        dirs = [out / "runs" / d.name for d in dirs]  # the folder may have moved since
    else:
        dirs = sorted(p for pat in ("target-*", "retrieval-*") for p in (out / "runs").glob(pat))
    return sorted(
        d
        for d in dirs
        if (d / "done.json").exists()
        and not (d.name.startswith("retrieval-") and d.name.split("-")[1] in DUAL_ENCODER_TASKS)
    )


def export_experiment(
    out: str | Path, dest: str | Path, tasks: list[str] | None = None, allow_empty: bool = False
) -> list[Path]:
    """Export every exportable run of an experiment (or sweep) output folder into ``dest/<run folder name>``
    (``allow_empty``: nothing to export is no error, as at the end of a run without target tasks)."""
    out = Path(out)
    if not (out / "runs").is_dir():
        raise ConfigError(f"{out}: no runs/ folder (expected an experiment's --out folder or one of its runs/<run>)")
    experiment = _experiment_results(out)
    runs = exportable_runs(out, experiment)
    if tasks:
        runs = [r for r in runs if r.name.split("-")[1] in tasks]
    if not runs and allow_empty:
        return []
    if not runs:
        raise ConfigError(
            f"{out}: no finished target or BUCC/Tatoeba retrieval run to export"
            + (f" for tasks {tasks}" if tasks else "")
        )
    return [export_run(r, Path(dest) / r.name, experiment) for r in runs]


def export_path(path: str | Path, dest: str | Path, tasks: list[str] | None = None) -> list[Path]:
    """``xlrepro export``: ``path`` is an output folder (every exportable run) or one run folder."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such folder")
    if (path / "spec.json").exists() and path.parent.name == "runs":
        return [export_run(path, Path(dest), _experiment_results(path.parent.parent))]
    return export_experiment(path, dest, tasks)
