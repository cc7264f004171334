import torch

from xlrepro.config import ModelConfig
from xlrepro.data.types import Format
from xlrepro.model import MultiTaskModel, build_encoder, load_encoder, save_encoder

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "type_vocab_size": 1,
    "pad_token_id": 1,
}


def test_handoff_keeps_every_encoder_tensor_and_drops_heads(tmp_path):
    enc = build_encoder(ModelConfig(init_config=TINY), vocab_size=50, seed=3)
    m = MultiTaskModel(enc)
    m.add_head("xnli", Format.CLASSIFICATION, 3, 0.1, seed=11)
    # change the encoder so the test cannot pass by re-initialisation
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(0.5)
    save_encoder(m, tmp_path / "enc", {"task": "xnli"})
    m2 = MultiTaskModel(load_encoder(tmp_path / "enc"))
    s1, s2 = m.encoder.state_dict(), m2.encoder.state_dict()
    assert s1.keys() == s2.keys() and len(s1) > 10
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert len(m2.heads) == 0, "heads are dropped at the hand-off"
    m2.add_head("udpos", Format.TAGGING, 17, 0.1, seed=11)
    assert "xnli" not in m2.heads


def test_heads_are_fresh_and_depend_only_on_their_seed():
    enc = build_encoder(ModelConfig(init_config=TINY), vocab_size=50, seed=0)
    a, b = MultiTaskModel(enc), MultiTaskModel(enc)
    torch.manual_seed(123)
    a.add_head("t", Format.CLASSIFICATION, 3, 0.1, seed=5)
    torch.manual_seed(999)  # the global RNG state must not matter
    b.add_head("t", Format.CLASSIFICATION, 3, 0.1, seed=5)
    for (n, p), (_, q) in zip(a.heads["t"].named_parameters(), b.heads["t"].named_parameters()):
        assert torch.equal(p, q), n
    b.add_head("u", Format.CLASSIFICATION, 3, 0.1, seed=6)
    assert not torch.equal(a.heads["t"].out.weight, b.heads["u"].out.weight)


def test_every_format_runs_forward():
    enc = build_encoder(ModelConfig(init_config=TINY), vocab_size=50, seed=0)
    m = MultiTaskModel(enc)
    for name, fmt, n in (
        ("c", Format.CLASSIFICATION, 3),
        ("mc", Format.MULTIPLE_CHOICE, None),
        ("qa", Format.SPAN_QA, None),
        ("tag", Format.TAGGING, 5),
    ):
        m.add_head(name, fmt, n, 0.0, seed=1)
    ids = torch.randint(3, 50, (2, 7))
    mask = torch.ones_like(ids)
    assert m("c", ids, mask).shape == (2, 3)
    assert m("qa", ids, mask).shape == (2, 7, 2)
    assert m("tag", ids, mask).shape == (2, 7, 5)
    assert m("mc", ids[:, None].expand(2, 4, 7), mask[:, None].expand(2, 4, 7)).shape == (2, 4)
