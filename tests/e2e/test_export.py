"""xlrepro export: fine-tuned smoke models as transformers models give xlrepro's predictions."""

import json
from pathlib import Path

import pytest
import torch
from mini import MINI as BASE

from xlrepro import export
from xlrepro.cli import main
from xlrepro.config import load_config, train_config_for
from xlrepro.formats import adapter_for
from xlrepro.model import MultiTaskModel, load_encoder
from xlrepro.phases import Context
from xlrepro.phases.orchestrator import run_experiment
from xlrepro.tasks import get_task

pytestmark = pytest.mark.slow  # every test here trains (tests/README.md)

MINI = BASE + [
    "target.tasks=[xnli, xcopa, xquad, panx]",
    "retrieval.tasks=[tatoeba]",
    "target.per_task={xquad: {max_seq_length: 128, doc_stride: 64, max_query_length: 32}}",
    "target.eval_splits=[test]",
    "keep=all",
]
LANGS = ["en", "tr", "zh"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    cfg = load_config("smoke", MINI)
    run_experiment(cfg, out)
    dest = out / "exported"
    assert main(["export", str(out), "--out", str(dest)]) == 0
    exp = Context(cfg, out)
    exp.prepare()
    return {"out": out, "cfg": cfg, "dest": dest, "exp": exp}


def _run(world, kind, task) -> Path:
    return next((world["out"] / "runs").glob(f"{kind}-{task}-*"))


def _xlrepro(world, task, lang):
    """xlrepro's own model, features and predictions for a task's test split in one language."""
    exp, cfg = world["exp"], world["cfg"]
    run = _run(world, "target", task)
    spec = json.loads((run / "spec.json").read_text())
    enc_dir, _ = export._encoder_source(world["out"], spec["upstream"])
    model = MultiTaskModel(load_encoder(enc_dir), packed=cfg.model.attention == "packed")
    t, tc = get_task(task), train_config_for(cfg, task)
    adapter = adapter_for(t, exp.tokenizer, tc.max_seq_length or t.max_seq_length, tc)
    model.add_head(task, t.format, adapter.n_labels(), 0.1, seed=0)
    model.load_state_dict(torch.load(run / "best_model.pt", weights_only=True))
    model.eval()
    data = exp.read(task, "test", lang)
    feats = adapter.featurize(data.examples, train=False)
    preds = exp.predict(model, task, adapter, feats, data.examples, 8)
    return {
        "run": run,
        "model": model,
        "adapter": adapter,
        "examples": data.examples,
        "feats": feats,
        "preds": preds,
        "folder": world["dest"] / run.name,
        "train": tc,
    }


def test_every_target_and_the_retrieval_encoder_are_exported(world):
    names = sorted(p.name for p in world["dest"].iterdir())
    assert [n.rsplit("-", 1)[0] for n in names] == [
        "retrieval-tatoeba",
        "target-panx",
        "target-xcopa",
        "target-xnli",
        "target-xquad",
    ]
    classes = {n: json.loads((world["dest"] / n / "config.json").read_text())["architectures"] for n in names}
    assert [classes[n][0] for n in names] == [
        "XLMRobertaModel",
        "XLMRobertaForTokenClassification",
        "XLMRobertaForMultipleChoice",
        "XLMRobertaForSequenceClassification",
        "XLMRobertaForQuestionAnswering",
    ]
    assert not list(world["dest"].glob(".*")), "no temporary folders left behind"


def test_sequence_classification_pipeline_predicts_like_xlrepro(world):
    from transformers import pipeline

    for lang in LANGS:
        x = _xlrepro(world, "xnli", lang)
        clf = pipeline("text-classification", model=str(x["folder"]), device="cpu")
        got = [r["label"] for r in clf([{"text": e.text_a, "text_pair": e.text_b} for e in x["examples"]])]
        assert got == x["preds"], lang
    config = json.loads((x["folder"] / "config.json").read_text())
    assert config["id2label"] == {str(i): l for i, l in enumerate(get_task("xnli").labels)}


def test_token_classification_predicts_like_xlrepro(world):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    for lang in LANGS:
        x = _xlrepro(world, "panx", lang)
        tok = AutoTokenizer.from_pretrained(x["folder"])
        model = AutoModelForTokenClassification.from_pretrained(x["folder"]).eval()
        got = []
        for ex, feat in zip(x["examples"], x["feats"]):
            enc = tok(ex.words, is_split_into_words=True, return_tensors="pt")
            assert enc["input_ids"][0].tolist() == feat["input_ids"], "same sub-words as xlrepro's featurisation"
            with torch.no_grad():
                ids = model(**enc).logits[0].argmax(-1).tolist()
            words = enc.word_ids()
            got.append([model.config.id2label[ids[words.index(j)]] for j in range(len(ex.words))])
        assert got == x["preds"], lang
    ner = pipeline("token-classification", model=str(x["folder"]), device="cpu")
    assert all(r["entity"] in get_task("panx").labels for r in ner(" ".join(x["examples"][0].words)))


def _logits_both(x, hf_model, **kw):
    batch = x["adapter"].collate(x["feats"])
    x["model"].eval()  # Context.predict leaves the model in training mode
    with torch.no_grad():
        ours = x["model"](x["adapter"].task.name, **batch.inputs).float()
        theirs = hf_model(**batch.inputs, **kw)
    return batch, ours, theirs


def test_question_answering_model_gives_xlrepro_logits_and_answers(world):
    from transformers import AutoModelForQuestionAnswering

    for lang in LANGS:
        x = _xlrepro(world, "xquad", lang)
        model = AutoModelForQuestionAnswering.from_pretrained(x["folder"]).eval()
        batch, ours, theirs = _logits_both(x, model)
        mask = batch.inputs["attention_mask"].bool()
        torch.testing.assert_close(theirs.start_logits[mask], ours[..., 0][mask], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(theirs.end_logits[mask], ours[..., 1][mask], atol=1e-4, rtol=1e-4)
        logits = [
            torch.stack([s, e], -1)[: int(m.sum())]
            for s, e, m in zip(theirs.start_logits, theirs.end_logits, batch.inputs["attention_mask"])
        ]
        assert x["adapter"].predict(logits, x["feats"], x["examples"]) == x["preds"], lang


def test_multiple_choice_model_picks_xlrepro_choices(world):
    from transformers import AutoModelForMultipleChoice

    for lang in ("tr", "zh"):
        x = _xlrepro(world, "xcopa", lang)
        model = AutoModelForMultipleChoice.from_pretrained(x["folder"]).eval()
        _, ours, theirs = _logits_both(x, model)
        torch.testing.assert_close(theirs.logits, ours, atol=1e-4, rtol=1e-4)
        assert theirs.logits.argmax(-1).tolist() == x["preds"], lang


def test_retrieval_encoder_embeds_like_xlrepro(world):
    from transformers import AutoModel, AutoTokenizer

    from xlrepro.retrieval import embed

    cfg, exp = world["cfg"], world["exp"]
    run = _run(world, "retrieval", "tatoeba")
    spec = json.loads((run / "spec.json").read_text())
    enc = load_encoder(export._encoder_source(world["out"], spec["upstream"])[0])
    sentences = exp.read("tatoeba", "test", "tr").examples[0].src_sentences[:12]
    r = cfg.retrieval
    ours = embed(
        enc, exp.tokenizer, sentences, layer=r.layer, pooling=r.pooling, max_len=r.max_seq_length, batch_size=4
    )
    folder = world["dest"] / run.name
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    assert model.config.num_hidden_layers == r.layer
    batch = tok(sentences, padding=True, truncation=True, max_length=r.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close((h * m).sum(1) / m.sum(1), ours, atol=1e-5, rtol=1e-4)


def test_model_card_states_data_recipe_scores_and_provenance(world):
    x = world["dest"] / _run(world, "target", "xcopa").name
    card = (x / "README.md").read_text()
    info = json.loads((x / "xlrepro_export.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\n")
    for heading in ("## Data", "## Recipe", "## Scores", "## Provenance", "## Upload"):
        assert heading in card
    assert "Smoke scale" in card and "huggingface-cli upload" in card
    assert "`copa` train split" in card, "the last stage of XCOPA's English chain"
    assert any(step.startswith("chain: socialiqa") for step in info["lineage"])
    assert any(step.startswith("intermediate: hellaswag") for step in info["lineage"])
    results = json.loads((world["out"] / "results.json").read_text())
    mine = [r for r in results["records"] if r["task"] == "xcopa"]
    assert mine and len(info["records"]) == len(mine)
    for r in mine:
        assert f"| {r['split']} | {r['language']} | {r['metric']} | {r['value']:.2f} |" in card
    assert info["experiment"]["config_hash"] == results["config_hash"]
    assert info["training_provenance"]["git_commit"] == results["provenance"]["git_commit"]


def test_single_run_export_and_errors(world, tmp_path, capsys):
    run = _run(world, "target", "xnli")
    assert main(["export", str(run), "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one" / "model.safetensors").exists()
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "xlrepro: error:" in capsys.readouterr().err
    # a finished run whose best model is gone: a clear error, nothing written
    broken = world["out"] / "runs" / (run.name[:-12] + "0" * 12)
    broken.mkdir()
    for f in ("spec.json", "done.json"):
        (broken / f).write_bytes((run / f).read_bytes())
    try:
        assert main(["export", str(broken), "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert "best_model.pt: missing" in err and "Traceback" not in err
        assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))
    finally:
        import shutil

        shutil.rmtree(broken)


def test_export_at_the_end_of_a_run(tmp_path):
    over = MINI + ["target.tasks=[xnli]", "retrieval.tasks=[]", "export.at_end=true", f"export.dir={tmp_path / 'm'}"]
    run_experiment(load_config("smoke", over), tmp_path / "e")
    assert [p.name.rsplit("-", 1)[0] for p in (tmp_path / "m").iterdir()] == ["target-xnli"]
    # nothing fine-tuned to export (no target task): the run still ends normally
    run_experiment(load_config("smoke", over + ["target.tasks=[]"]), tmp_path / "f")
    assert (tmp_path / "f" / "report.md").exists() and not (tmp_path / "f" / "export").exists()
