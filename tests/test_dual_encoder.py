"""Dual-encoder retrieval (LAReQA, Mewsli-X), the Mewsli-X training/candidate readers and input
strings, the knn-based @20 metrics, and the Tatoeba encoder choice (XTREME vs XTREME-R)."""

import copy
import json

import numpy as np
import pytest
import torch
from mini import WORLD

from xlrepro.config import load_config
from xlrepro.data.all_readers import get_reader
from xlrepro.data.readers_retrieval import mewslix_entity_text, mewslix_mention_text, sentence_breaks
from xlrepro.data.types import EntityDescription, EntityMentionExample
from xlrepro.dual_encoder import DualEncoder, lareqa_map_knn, load_dual_encoder, save_dual_encoder
from xlrepro.errors import ConfigError, DataFormatError
from xlrepro.metrics import lareqa_map_at_k
from xlrepro.phases import Context
from xlrepro.phases.graph import build_graph
from xlrepro.phases.orchestrator import run_experiment
from xlrepro.smoke.world import generate
from xlrepro.tasks import get_task

# --------------------------------------------------------------------------- LAReQA mAP@20 through knn


def _xling(n_q, n_c, per_q, rng):
    q_ids = [f"q{i}" for i in range(n_q)]
    owners = [set() for _ in range(n_c)]
    for i in range(n_q):
        for c in rng.choice(n_c, per_q, replace=False):
            owners[c].add(f"q{i}")
    return q_ids, owners


@pytest.mark.parametrize("mode", ["official", "corrected"])
def test_knn_map_equals_the_full_ranking_metric(mode):
    rng = np.random.default_rng(0)
    Q = torch.from_numpy(rng.standard_normal((40, 16)).astype(np.float32))
    C = torch.from_numpy(rng.standard_normal((300, 16)).astype(np.float32))
    q_ids, owners = _xling(40, 300, 11, rng)
    got = lareqa_map_knn(Q, C, q_ids, owners, k=20, mode=mode)
    ref = lareqa_map_at_k(Q.numpy(), C.numpy(), q_ids, owners, k=20, mode=mode)
    assert got["map@20"] == ref["map@20"] and got["n_reranked"] < 5  # near-ties only: the knn path ranks the rest
    assert 0 < got["map@20"] < 100


@pytest.mark.parametrize("mode", ["official", "corrected"])
def test_knn_map_with_ties_is_reranked_like_the_official_scorer(mode):
    """Duplicated candidates tie exactly: the tie order then decides the AP, so the knn path must
    defer to the official ranking (numpy argsort reversed; corrected: stable)."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((30, 8)).astype(np.float32)
    C = torch.from_numpy(np.concatenate([base, base, base]))  # every vector three times
    Q = torch.from_numpy(rng.standard_normal((12, 8)).astype(np.float32))
    q_ids = [f"q{i}" for i in range(12)]
    owners = [{f"q{c % 12}"} if c >= 30 and c % 5 == 0 else set() for c in range(90)]
    for i in range(12):
        owners[60 + i].add(f"q{i}")
    got = lareqa_map_knn(Q, C, q_ids, owners, k=20, mode=mode)
    ref = lareqa_map_at_k(Q.numpy(), C.numpy(), q_ids, owners, k=20, mode=mode)
    assert got["n_reranked"] == 12
    assert got["map@20"] == ref["map@20"]


def test_knn_map_needs_only_the_top_k():
    """AP@k divides by min(#relevant, k) and sees the top k: 11 relevant at ranks 1..11 give 100."""
    C = torch.eye(30)
    Q = torch.ones(1, 30) * 0.0
    Q[0, :11] = torch.linspace(2.0, 1.0, 11)
    got = lareqa_map_knn(Q, C, ["x"], [{"x"} if i < 11 else set() for i in range(30)], k=20)
    assert got["map@20"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no relevant candidate"):
        lareqa_map_knn(Q, C, ["y"], [set()] * 30, k=20)


# --------------------------------------------------------------------------- model


def _tiny_encoder(seed=0):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    return XLMRobertaModel(
        XLMRobertaConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=40,
            pad_token_id=1,
        ),
        add_pooling_layer=False,
    )


def test_dual_encoder_loss_is_in_batch_softmax_over_scaled_cosines(tmp_path):
    model = DualEncoder(_tiny_encoder(), seed=3, logit_scale=100.0).eval()
    q = torch.randint(3, 50, (4, 7))
    a = torch.randint(3, 50, (4, 9))
    m_q, m_a = torch.ones_like(q), torch.ones_like(a)
    m_a[1, 5:] = 0
    with torch.no_grad():
        loss = model(q, m_q, a, m_a)
        eq, ea = model.embed(q, m_q), model.embed(a, m_a)
        assert torch.allclose(eq.norm(dim=1), torch.ones(4)) and torch.allclose(ea.norm(dim=1), torch.ones(4))
        expect = torch.nn.functional.cross_entropy(100.0 * eq @ ea.T, torch.arange(4))
    assert torch.allclose(loss, expect)
    # the pooler's initialisation depends on the seed only; save/load keeps both towers' outputs
    assert torch.equal(DualEncoder(_tiny_encoder(), seed=3).pooler.weight, model.pooler.weight)
    save_dual_encoder(model, tmp_path / "m", {"task": "test"})
    again = load_dual_encoder(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.allclose(again.embed(a, m_a), ea, atol=1e-6)
    assert json.loads((tmp_path / "m" / "handoff.json").read_text())["dual_encoder"] is True


def test_packed_dual_encoder_equals_padded():
    """model.attention=packed: the towers' <s> vectors come straight from the packed tokens; embeddings,
    loss and gradients equal the padded model's (fp32, relative error <= 1e-5 / gradients 1e-4; the key bias,
    whose exact gradient is zero, holds rounding noise only on both paths)."""
    torch.manual_seed(0)
    enc = _tiny_encoder()
    q = torch.randint(3, 50, (4, 9))
    a = torch.randint(3, 50, (4, 13))
    m_q, m_a = torch.ones_like(q), torch.ones_like(a)
    for row, n in enumerate((1, 7, 9, 3)):
        m_q[row, n:] = 0
    for row, n in enumerate((13, 2, 11, 5)):
        m_a[row, n:] = 0
    q, a = q.masked_fill(m_q == 0, 1), a.masked_fill(m_a == 0, 1)
    out = {}
    for packed in (False, True):
        model = DualEncoder(copy.deepcopy(enc), packed=packed, seed=3).eval()
        model.zero_grad()
        loss = model(q, m_q, a, m_a)
        loss.backward()
        with torch.no_grad():
            out[packed] = (
                model.embed(q, m_q),
                model.embed(a, m_a),
                loss.detach(),
                {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
            )
    for i in range(3):
        ref = out[False][i]
        assert ((out[True][i] - ref).abs().max() / ref.abs().max()).item() <= 1e-5, i
    grads_pad, grads_pk = out[False][3], out[True][3]
    assert grads_pad.keys() == grads_pk.keys() and len(grads_pad) > 10
    # The attention key bias adds q.b_k to every logit of a query's row, which softmax ignores: its exact
    # gradient is zero and both paths hold only rounding noise there (~1e-10 against gradients up to ~1e2),
    # so a relative comparison would compare noise with noise. Check it is noise on both paths instead.
    scale = max(g.abs().max().item() for g in grads_pad.values())
    zero_grad = [k for k in grads_pad if k.endswith("attention.self.key.bias")]
    assert zero_grad, "the tiny encoder should have a key bias"
    for k in zero_grad:
        for grads in (grads_pad, grads_pk):
            assert grads.pop(k).abs().max().item() <= 1e-8 * scale, k
    for k, g in grads_pad.items():
        assert (grads_pk[k] - g).abs().max().item() <= 1e-4 * max(g.abs().max().item(), 1e-6), k


# --------------------------------------------------------------------------- Mewsli-X inputs and readers


def test_mention_and_entity_strings_follow_the_baseline():
    text = "The {x} met Bob. Paris is big."
    m = EntityMentionExample("e1", "en", "d", text, 12, 15, "Bob", "Q1", [(0, 16), (17, 30)])
    assert mewslix_mention_text(m) == "Bob: The (x) met { Bob } ."
    m2 = EntityMentionExample("e2", "en", "d", text, 17, 22, "Paris", "Q2", [(0, 16), (17, 30)])
    assert mewslix_mention_text(m2) == "Paris: { Paris } is big."
    crossing = EntityMentionExample("e3", "en", "d", text, 12, 20, "Bob. Par", "Q3", [(0, 16), (17, 30)])
    with pytest.raises(ValueError, match="e3"):
        mewslix_mention_text(crossing)
    e = EntityDescription("Q2", "Paris", "Paris is a\ncity.  Capital.", "en", "u", [(0, 16), (18, 26)])
    assert mewslix_entity_text(e) == "Paris is a city. Capital."


def test_sentence_breaks():
    text = 'It rained. He said "Go!"  Then (she left.) ok'
    assert [text[a:b] for a, b in sentence_breaks(text)] == ["It rained.", 'He said "Go!"', "Then (she left.)", "ok"]
    assert sentence_breaks("no break") == [(0, 8)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("w") / "world"
    generate(root, ["en", "tr", "vi"], 5, n_train=60, n_dev=20, n_test=30, n_corpus=50)
    return root


def test_world_files_read_with_the_real_readers(world):
    pools = {l: get_task("lareqa").read(world / "lareqa", "test", l).examples[0] for l in ("en", "tr", "vi")}
    assert {len(p.questions) for p in pools.values()} == {18}
    assert pools["en"].question_ids == pools["tr"].question_ids  # parallel: shared ids
    pairs = get_task("mewslix_wikipedia").read(world / "mewslix_wikipedia", "train", "en").examples
    assert len(pairs) == 30 and all(p.mention.entity_id == p.entity.entity_id for p in pairs)
    cands = get_reader("mewslix_entities_jsonl")({"file": world / "mewslix" / "candidate_set_entities.jsonl"})
    assert len(cands.examples) == 120
    assert {p.entity.entity_id for p in pairs} <= {e.entity_id for e in cands.examples}
    for split, n in (("dev", 2 * 3), ("test", 3 * 3)):
        assert len(get_task("mewslix").read(world / "mewslix", split, "tr").examples) == n
        news = {"file": world / "mewslix" / f"wikinews_mentions-{split}.jsonl"}
        assert get_reader("mewslix_jsonl")(news, src_lang="vi").examples == []  # vi is no Mewsli-X language


def _rewrite(path, fn):
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    fn(rows)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_malformed_mewslix_training_files(world, tmp_path):
    src = (world / "mewslix_wikipedia" / "wikipedia_pairs-dev.jsonl").read_text()
    read = get_reader("mewslix_pairs_jsonl")
    p = tmp_path / "pairs.jsonl"

    def bad(fn, match):
        p.write_text(src)
        _rewrite(p, fn)
        with pytest.raises(DataFormatError, match=match):
            read({"file": p}, src_lang="en")

    def shift(rows):
        rows[2]["contextual_mention"]["mention"]["mention_span"]["start"] += 1

    bad(shift, r"pairs.jsonl, line 3, field 'contextual_mention.mention.mention_span'")

    def other_entity(rows):
        rows[0]["entity"]["entity_id"] = "Q1"

    bad(other_entity, "line 1, field 'contextual_mention.mention.entity_id'")

    def no_title(rows):
        del rows[1]["entity"]["title"]

    bad(no_title, "line 2, field 'title'")

    def span_outside(rows):
        rows[0]["entity"]["sentence_spans"][0]["end"] = 10_000

    bad(span_outside, r"line 1, field 'entity.sentence_spans\[0\]'")

    p.write_text(src.replace("\n", "\r\n"))
    assert len(read({"file": p}, src_lang="en").examples) == 10  # CRLF reads the same
    p.write_text(src[: len(src) // 2])
    with pytest.raises(DataFormatError, match="invalid JSON"):
        read({"file": p}, src_lang="en")

    c = tmp_path / "cands.jsonl"
    c.write_text((world / "mewslix" / "candidate_set_entities.jsonl").read_text())
    _rewrite(c, lambda rows: rows.append(rows[0]))
    with pytest.raises(DataFormatError, match="line 121, field 'entity_id'.*duplicate"):
        get_reader("mewslix_entities_jsonl")({"file": c})


# --------------------------------------------------------------------------- config and pipeline


def test_encoder_choice_is_validated():
    with pytest.raises(ConfigError, match="retrieval.encoder.tatoeba: 'squad'"):
        load_config("smoke", ["retrieval.encoder={tatoeba: squad}"])
    with pytest.raises(ConfigError, match="not lareqa|not 'lareqa'"):
        load_config("smoke", ["retrieval.encoder={lareqa: squad_mrc}"])
    with pytest.raises(ConfigError, match="retrieval.benchmark"):
        load_config("smoke", ["retrieval.benchmark=xtreme-r"])
    with pytest.raises(ConfigError, match="per_task.lareqa.lrr"):
        load_config("smoke", ["retrieval.dual_encoder.per_task={lareqa: {lrr: 1}}"])
    with pytest.raises(ConfigError, match="token_budget"):
        load_config("smoke", ["retrieval.dual_encoder.train.token_budget=100"])


def test_retrieval_spec_hashes_do_not_depend_on_the_search_backend(tmp_path, monkeypatch):
    """Same config, same run folder whether or not the C++ extension is built: the knn backend is
    recorded with the results, never hashed into a retrieval run's spec."""
    import torch

    from xlrepro.config import config_hash
    from xlrepro.ops import _lib
    from xlrepro.retrieval import search_backend

    cfg = load_config("smoke", ["retrieval.tasks=[tatoeba, bucc2018, lareqa, mewslix]"])
    ctx = Context(cfg, tmp_path)
    ctx.prepare()

    def hashes():
        return {n.task: config_hash(n.spec) for n in build_graph(ctx, targets=[], controls=[]) if n.kind == "retrieval"}

    built = hashes()
    if _lib.has_kernel("knn", "CPU"):  # the build is here, so the patch below really changes the backend
        assert search_backend(torch.zeros(1, 1)) == "xlrepro.ops.knn/cpp"
    monkeypatch.setattr(_lib, "load", lambda: False)
    assert search_backend(torch.zeros(1, 1)) == "xlrepro.ops.knn/reference"
    assert hashes() == built


MINI = WORLD + [
    "pretrain.steps=10",
    "intermediate.train.max_steps=4",
    "intermediate.train.eval_every_steps=4",
    "target.train.max_steps=4",
    "target.train.eval_every_steps=4",
    "target.tasks=[]",
    "controls=[]",
    "target.per_task={squad: {max_seq_length: 128, doc_stride: 64, max_query_length: 32}}",
    "target.eval_splits=[dev, test]",
    "retrieval.dual_encoder.train.max_steps=6",
    "retrieval.dual_encoder.train.eval_every_steps=3",
    "retrieval.dual_encoder.per_task={}",
]


@pytest.mark.slow
def test_xtreme_r_retrieval_end_to_end(tmp_path):
    """LAReQA and Mewsli-X train their dual encoders and are scored with the protocol attached;
    XTREME-R Tatoeba reads a SQuAD-fine-tuned encoder, XTREME Tatoeba the intermediate one."""
    cfg = load_config("smoke", MINI + ["retrieval.tasks=[tatoeba, lareqa, mewslix]", "retrieval.benchmark=xtreme_r"])
    res = run_experiment(cfg, tmp_path)
    kinds = {(v["kind"], v["task"]) for v in res["runs"].values() if "task" in v}
    assert {("dual_encoder", "lareqa"), ("dual_encoder", "mewslix"), ("squad_mrc", "squad")} <= kinds
    recs = {(r["task"], r["language"], r["split"]): r for r in res["records"]}
    assert {k for k in recs if k[0] == "lareqa"} == {("lareqa", l, "test") for l in ("en", "tr", "vi", "zh")}
    assert {k for k in recs if k[0] == "mewslix"} == {("mewslix", l, s) for l in ("en", "tr") for s in ("dev", "test")}
    lareqa, mewslix, tatoeba = (
        recs[("lareqa", "tr", "test")],
        recs[("mewslix", "tr", "test")],
        recs[("tatoeba", "tr", "test")],
    )
    assert lareqa["metric"] == "map@20" and lareqa["n"] == 18 and 0 <= lareqa["value"] <= 100
    assert lareqa["protocol"]["similarity"] == "dot" and lareqa["protocol"]["k"] == 20
    assert lareqa["protocol"]["pool_languages"] == ["en", "tr", "vi", "zh"] and lareqa["protocol"]["n_candidates"] == 72
    assert mewslix["metric"] == "map@20" and mewslix["n"] == 9 and mewslix["protocol"]["n_candidates"] == 120
    assert "WikiNews" in mewslix["protocol"]["eval_domain"] and "Wikipedia" in mewslix["protocol"]["train_domain"]
    assert mewslix["protocol"]["search"].startswith("xlrepro.ops.knn/")
    assert mewslix["protocol"]["attention"] == lareqa["protocol"]["attention"] == cfg.model.attention
    assert (
        tatoeba["protocol"]["encoder_source"] == "squad_mrc" and tatoeba["protocol"]["benchmark_protocol"] == "xtreme_r"
    )
    assert tatoeba["protocol"]["encoder_upstream"]["kind"] == "squad_mrc"
    de = next(v for v in res["runs"].values() if v["kind"] == "dual_encoder" and v["task"] == "mewslix")
    assert de["n_pairs"] == 60 and de["train_source"] == "mewslix_wikipedia" and de["steps"] == 6
    pred = json.loads(next(tmp_path.glob("runs/retrieval-mewslix-*/predictions/mewslix/test-tr.json")).read_text())
    assert len(pred) == 9 and all(len(v) == 20 for v in pred.values())

    # item-level scores (bootstrap CIs, paired tests): per-mention RR@20 and per-question AP@20, whose
    # means are the records' official values; LAReQA's per-question files stay out of the submission
    from xlrepro.items import load_items, write_items

    exp = Context(cfg, tmp_path)
    exp.prepare()
    n_entries = 0
    for task in ("lareqa", "mewslix"):
        (run_dir,) = {v["dir"] for v in res["runs"].values() if v["kind"] == "retrieval" and v["task"] == task}
        items = load_items(write_items(exp, task, run_dir).parent)
        assert set(items) == {f"{s}/{l}" for (t, l, s) in recs if t == task}
        for key, entry in items.items():
            split, lang = key.split("/")
            rec = recs[(task, lang, split)]
            assert entry["kind"] == "mean" and entry["metric"] == rec["metric"] and len(entry["scores"]) == rec["n"]
            assert np.mean(entry["scores"]) == pytest.approx(rec["value"], rel=1e-12, abs=1e-12)
            n_entries += 1
    assert n_entries == 4 + 4
    assert not (tmp_path / "submission" / "lareqa").exists()

    # the XTREME protocol reads the intermediate encoder; the SQuAD dual encoder is the third choice
    # and reuses the finished LAReQA dual-encoder run
    xt = run_experiment(load_config("smoke", MINI + ["retrieval.tasks=[tatoeba]"]), tmp_path)
    assert {r["protocol"]["encoder_source"] for r in xt["records"]} == {"intermediate"}
    de_run = next(h for h, v in res["runs"].items() if v["kind"] == "dual_encoder" and v["task"] == "lareqa")
    alt = run_experiment(
        load_config("smoke", MINI + ["retrieval.tasks=[tatoeba]", "retrieval.encoder={tatoeba: squad_dual_encoder}"]),
        tmp_path,
    )
    assert {r["protocol"]["encoder_upstream"]["run"] for r in alt["records"]} == {de_run}
