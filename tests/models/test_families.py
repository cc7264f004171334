"""Encoder families (xlrepro.models): the model.family field, the BERT family's build, load,
MLM head, packed forward and pooling, parameter counts from configs, and the one GPU-hour estimator."""

import json

import pytest
import torch
from mini import XNLI_TATOEBA

from xlrepro.config import ModelConfig, load_config
from xlrepro.data.types import Format
from xlrepro.errors import ConfigError
from xlrepro.model import MultiTaskModel, build_encoder, load_encoder, save_encoder

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
FORMATS = [
    ("cls", Format.CLASSIFICATION, 3),
    ("mc", Format.MULTIPLE_CHOICE, None),
    ("qa", Format.SPAN_QA, None),
    ("tag", Format.TAGGING, 5),
]


def _bert(seed=0, **over):
    return build_encoder(ModelConfig(init_config={**TINY, **over}, family="bert"), vocab_size=60, seed=seed)


# ---------------------------------------------------------------------- config


def test_family_is_validated_and_documented():
    assert load_config("smoke").model.family == "xlmr"
    assert load_config("smoke", ["model.family=bert"]).model.family == "bert"
    with pytest.raises(ConfigError, match=r"model\.family: 'brt' is not one of \['xlmr', 'bert', 'auto'\].*'bert'"):
        load_config("smoke", ["model.family=brt"])
    with pytest.raises(ConfigError, match=r"model\.family: 'auto' reads a model folder's config.json"):
        load_config("smoke", ["model.family=auto"])
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "config.md").read_text()
    assert "model.family" in doc


def test_family_builds_its_own_encoder_class():
    from transformers import BertModel, XLMRobertaModel

    assert type(build_encoder(ModelConfig(init_config=TINY), vocab_size=60)) is XLMRobertaModel
    enc = _bert()
    assert type(enc) is BertModel and enc.pooler is None
    from xlrepro.models import family_of, get_family

    assert family_of(enc).name == "bert"
    with pytest.raises(ConfigError, match="model.family: 'roberta' is not one of"):
        get_family("roberta")


# ---------------------------------------------------------------------- BERT: packed = padded


def _batch(fmt, lengths=(9, 4, 7)):
    g = torch.Generator().manual_seed(1)
    B, L = len(lengths), max(lengths)
    ids = torch.randint(3, 60, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids[mask == 0] = 1
    ids[:, 0] = 0
    if fmt == Format.MULTIPLE_CHOICE:
        return ids[:, None].expand(B, 2, L).contiguous(), mask[:, None].expand(B, 2, L).contiguous()
    return ids, mask


@pytest.mark.parametrize("name,fmt,n", FORMATS)
def test_bert_packed_equals_padded_outputs_and_gradients(name, fmt, n):
    outs, grads = {}, {}
    for packed in (False, True):
        m = MultiTaskModel(_bert(), packed=packed)
        m.add_head(name, fmt, n, 0.0, seed=1)
        ids, mask = _batch(fmt)
        out = m(name, ids, mask)
        if fmt in (Format.SPAN_QA, Format.TAGGING):
            out = out * mask[..., None]  # padding positions are not compared (packed gives zeros there)
        out.float().pow(2).sum().backward()
        outs[packed] = out.detach()
        grads[packed] = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=1e-4)
    assert grads[True].keys() == grads[False].keys() and len(grads[True]) > 10
    for k in grads[True]:
        torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-5, rtol=1e-4, msg=k)


def test_bert_packed_positions_start_at_zero_in_each_sequence():
    from xlrepro.models import get_family
    from xlrepro.packing import pack_batch

    enc = _bert().eval()
    cu = torch.tensor([0, 3, 5], dtype=torch.int32)
    assert get_family("bert").packed_position_ids(enc, cu).tolist() == [0, 1, 2, 0, 1]
    xlmr = build_encoder(ModelConfig(init_config=TINY), vocab_size=60)
    assert get_family("xlmr").packed_position_ids(xlmr, cu).tolist() == [2, 3, 4, 2, 3]
    # every hidden state (the retrieval layers) matches the padded forward on the real tokens
    ids, mask = _batch(Format.TAGGING)
    with torch.no_grad():
        padded = enc(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        flat, cu, mx, idx = pack_batch(ids, mask)
        _, packed = get_family("bert").packed_forward(enc, flat, cu, mx, output_hidden_states=True)
    assert len(packed) == len(padded) == 3
    for a, b in zip(packed, padded):
        torch.testing.assert_close(a, b.reshape(-1, b.shape[-1])[idx], atol=1e-5, rtol=1e-4)


def test_bert_retrieval_embeddings_packed_equal_padded():
    from xlrepro.retrieval import embed

    class Tok:  # ids from characters: [CLS]=0 ... [SEP]=2, pad 1
        def __call__(self, texts, truncation=True, max_length=16, padding=False, return_tensors=None):
            ids = [[0] + [3 + ord(c) % 50 for c in t][: max_length - 2] + [2] for t in texts]
            if not padding:
                return {"input_ids": ids}
            L = max(map(len, ids))
            out = {
                "input_ids": torch.tensor([x + [1] * (L - len(x)) for x in ids]),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (L - len(x)) for x in ids]),
            }

            class B(dict):
                def to(self, device):
                    return self

            return B(out)

    enc = _bert()
    sents = ["abc", "hello world", "x", "a longer sentence here"]
    for pooling in ("mean", "cls"):
        a = embed(enc, Tok(), sents, layer=1, pooling=pooling, max_len=16, batch_size=2)
        b = embed(enc, Tok(), sents, layer=1, pooling=pooling, max_len=16, batch_size=2, packed=True)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_classification_heads_read_the_familys_pooled_vector(monkeypatch):
    from xlrepro.models import get_family

    enc = _bert()
    m = MultiTaskModel(enc)
    m.add_head("c", Format.CLASSIFICATION, 3, 0.0, seed=1)
    ids, mask = _batch(Format.CLASSIFICATION)
    base = m("c", ids, mask)
    fam = get_family("bert")
    monkeypatch.setattr(type(fam), "pool", lambda self, h: h[:, 1])
    m2 = MultiTaskModel(enc)
    m2.add_head("c", Format.CLASSIFICATION, 3, 0.0, seed=1)
    assert not torch.allclose(m2("c", ids, mask), base), "the head pools through the family"


# ---------------------------------------------------------------------- BERT: MLM, hand-off, loading


def test_bert_mlm_head_is_tied_and_pretraining_hands_on_a_bert_encoder():
    from transformers import BertForMaskedLM, BertModel

    from xlrepro.models import get_family

    m = MultiTaskModel(_bert())
    m.add_mlm_head(seed=3)
    head = m.heads["mlm"]
    assert head.predictions.decoder.weight is m.encoder.embeddings.word_embeddings.weight
    ids, mask = _batch(Format.TAGGING)
    assert m("mlm", ids, mask).shape == (3, 9, 60)
    fam = get_family("bert")
    mlm = fam.build_mlm(TINY, 60, seed=0)
    assert type(mlm) is BertForMaskedLM and type(fam.mlm_encoder(mlm)) is BertModel
    a, b = fam.build_mlm(TINY, 60, seed=0), fam.build_mlm(TINY, 60, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bert_handoff_round_trips_and_loads_as_bert(tmp_path):
    from transformers import BertModel

    m = MultiTaskModel(_bert(seed=4))
    m.add_head("x", Format.CLASSIFICATION, 3, 0.1, seed=1)
    save_encoder(m, tmp_path / "enc")
    back = load_encoder(tmp_path / "enc")
    assert type(back) is BertModel
    s1, s2 = m.encoder.state_dict(), back.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def _bert_folder(out, vocab_words=("hello", "world", "bonjour", "monde", "hola", "mundo")):
    """A save_pretrained folder of a tiny BertForMaskedLM with a WordPiece tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    out.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocab_words, *"abcdefghijklmnopqrstuvwxyz"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=False)
    tok.save_pretrained(str(out))
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(cfg)
    model.save_pretrained(str(out))
    return model


def test_a_bert_model_folder_loads_by_path(tmp_path):
    from transformers import AutoTokenizer, BertModel

    from xlrepro.config_checks import model_problems
    from xlrepro.models import resolve_family

    saved = _bert_folder(tmp_path / "mbert")
    folder = str(tmp_path / "mbert")
    enc = build_encoder(ModelConfig(name_or_path=folder, family="bert"))
    assert type(enc) is BertModel
    want = saved.bert.state_dict()
    got = enc.state_dict()
    assert got.keys() <= want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert resolve_family(ModelConfig(name_or_path=folder, family="auto")).name == "bert"
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(["hello world", "bonjour monde"], padding=True, return_tensors="pt")
    m = MultiTaskModel(enc, packed=True)
    m.add_head("t", Format.TAGGING, 3, 0.0, seed=0)
    assert m("t", batch["input_ids"], batch["attention_mask"]).shape[-1] == 3

    # a folder of the other family is named in one line before anything loads
    def cfg_for(family, length):
        cfg = load_config("xstilts-squad")
        cfg.model = ModelConfig(name_or_path=folder, family=family)
        cfg.target.per_task, cfg.retrieval.tasks = {}, []
        cfg.intermediate.train.max_seq_length = cfg.target.train.max_seq_length = length
        return cfg

    assert any(
        "model.family: 'xlmr' runs models of type ['xlm-roberta']" in p and "'bert'" in p
        for p in model_problems(cfg_for("xlmr", 32), {})
    )
    # BERT's positions start at 0: 64 positions take 64 tokens (XLM-R's would take 62)
    assert model_problems(cfg_for("bert", 64), {}) == []
    assert any("exceed the encoder's 64 positions" in p for p in model_problems(cfg_for("bert", 65), {}))
    assert any("exceed the encoder's 62 positions" in p for p in model_problems(cfg_for("xlmr", 64), {}))


# ---------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("family", ["xlmr", "bert"])
def test_param_count_from_config_equals_the_built_module(family):
    from xlrepro.estimate import param_count
    from xlrepro.models import get_family

    cfg = ModelConfig(init_config={k: v for k, v in TINY.items() if k != "type_vocab_size"}, family=family)
    enc = build_encoder(cfg, vocab_size=77)
    assert param_count(cfg, vocab_size=77) == sum(p.numel() for p in enc.parameters())
    fam = get_family(family)
    for name, published in fam.published_configs.items():
        with torch.device("meta"):
            big = fam.build_encoder(published)
        assert param_count(ModelConfig(name_or_path=f"org/{name}", family=family)) == sum(
            p.numel() for p in big.parameters()
        ), name


def test_param_counts_of_published_configs_and_unknown_models():
    from xlrepro import estimate, plan
    from xlrepro.estimate import param_count

    assert 550e6 < param_count(ModelConfig(name_or_path="FacebookAI/xlm-roberta-large")) < 570e6
    assert (
        170e6 < param_count(ModelConfig(name_or_path="google-bert/bert-base-multilingual-cased", family="bert")) < 180e6
    )
    with pytest.raises(KeyError, match="parameter count unknown.*give a local model folder"):
        param_count(ModelConfig(name_or_path="nobody/unknown-model"))
    # a published config of another family is not taken for this one
    with pytest.raises(KeyError, match="parameter count unknown"):
        param_count(ModelConfig(name_or_path="google-bert/bert-base-multilingual-cased", family="xlmr"))
    assert not hasattr(estimate, "KNOWN_PARAMS") and not hasattr(plan, "KNOWN_MODELS")


# ---------------------------------------------------------------------- one GPU-hour estimator


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["intermediate.train.deepspeed=zero2-bf16", "target.train.max_steps=100"],
        [
            "model.family=bert",
            "model.name_or_path=google-bert/bert-base-multilingual-cased",
            "intermediate.train.volume=1000",
        ],
    ],
)
def test_plan_and_estimate_agree(overrides):
    pytest.importorskip("deepspeed")
    from xlrepro import estimate
    from xlrepro.config import train_config_for
    from xlrepro.plan import plan

    cfg = load_config("xstilts-squad", overrides)
    p = plan(cfg, gpus_per_node=4)
    assert p["mfu"] == estimate.MFU == estimate.DEFAULT_MFU
    n = estimate.param_count(cfg.model)
    assert p["parameters"] == n
    by_phase = {ph["phase"]: ph for ph in p["phases"]}
    expect_hours = 0.0
    for kind, task in [("intermediate", None)] + [("target", t) for t in cfg.target.tasks]:
        name = "intermediate:" + "+".join(cfg.intermediate.tasks) if kind == "intermediate" else f"target:{task}"
        tokens = estimate.run_tokens(cfg, kind, task)
        prec = estimate.run_precision(cfg, kind, task)
        assert by_phase[name]["tokens"] == tokens and by_phase[name]["precision"] == prec, name
        h = estimate.gpu_hours(n, tokens, p["card"], p["mfu"], prec)
        assert by_phase[name]["gpu_hours"] == pytest.approx(h), name
        expect_hours += h
        tc = cfg.intermediate.train if kind == "intermediate" else train_config_for(cfg, task)
        from xlrepro.tasks import get_task

        assert by_phase[name]["max_seq_length"] == (tc.max_seq_length or get_task(task or "squad").max_seq_length)
    assert p["gpu_hours"] == round(expect_hours, 1)


def test_tokens_use_the_tasks_length_choices_and_whole_steps():
    from xlrepro import estimate

    cfg = load_config(
        "xstilts-squad",
        [
            "intermediate.tasks=[hellaswag]",
            "intermediate.train.max_seq_length=null",
            "intermediate.train.volume=1000",
            "intermediate.train.epochs=1",
        ],
    )
    ph = estimate.phase_tokens(cfg, cfg.intermediate.train, ["hellaswag"])
    gb = cfg.intermediate.train.batch_size * cfg.intermediate.train.grad_accum
    # HellaSwag: 256 tokens (its registry max_seq_length) x 4 choices; ceil(1000 / 32) = 32 optimiser steps
    assert ph["max_seq_length"] == 256 and ph["per_example"] == 256 * 4
    assert ph["steps"] == 32 and ph["tokens"] == 32 * gb * 256 * 4
    with pytest.raises(ConfigError, match="--examples"):
        estimate.phase_tokens(cfg, cfg.intermediate.train, ["tatoeba"])
    assert estimate.phase_tokens(cfg, cfg.intermediate.train, ["tatoeba"], examples={"tatoeba": 64})["steps"] == 2


# ---------------------------------------------------------------------- info


def test_info_lists_the_families():
    from xlrepro.info import families_status

    fams = {f["name"]: f for f in families_status()}
    assert set(fams) == {"xlmr", "bert"}
    assert (
        fams["bert"]["model_types"] == ["bert"] and "bert-base-multilingual-cased" in fams["bert"]["published_configs"]
    )
    from xlrepro.info import format_info, info

    d = info()
    assert d["families"] == families_status()
    json.dumps(d["families"])  # JSON-ready, as `xlrepro info --json` prints it
    text = format_info(d)
    assert "encoder families (model.family" in text and "  bert   model_type bert:" in text


# ---------------------------------------------------------------------- the smoke world with a BERT encoder

MINI = XNLI_TATOEBA


@pytest.mark.slow
def test_bert_family_trains_and_evaluates_the_smoke_world_end_to_end(tmp_path, capsys):
    import math

    from xlrepro.cli import main
    from xlrepro.phases import Context
    from xlrepro.phases.graph import build_graph

    out = tmp_path / "bert"
    assert main(["reproduce", "smoke", *MINI, "model.family=bert", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    kinds = {v["kind"] for v in res["runs"].values()}
    assert {"pretrain", "intermediate", "target", "retrieval"} <= kinds
    tasks = {r["task"] for r in res["records"]}
    assert {"xnli", "tatoeba"} <= tasks
    assert all(isinstance(r["value"], (int, float)) and math.isfinite(r["value"]) for r in res["records"])
    # every hand-off is a BERT encoder: pre-training's and the intermediate task's
    for kind in ("pretrain", "intermediate"):
        run = next(v for v in res["runs"].values() if v["kind"] == kind)
        folder = out / "runs" / run["dir"].split("/runs/")[1] / "encoder"
        assert json.loads((folder / "config.json").read_text())["model_type"] == "bert", kind
    # the same config with the XLM-R family is another run: its pre-training key differs
    xlmr = Context(load_config("smoke", MINI), out)
    xlmr.prepare()
    bert = Context(load_config("smoke", MINI + ["model.family=bert"]), out)
    bert.prepare()
    kb, kx = (build_graph(c).find("pretrain", "mlm").key for c in (bert, xlmr))
    assert kb != kx and kb in res["runs"] and kx not in res["runs"]
    assert xlmr.base_encoder_spec()["model"].get("family") is None, "the default family keeps the old run keys"
