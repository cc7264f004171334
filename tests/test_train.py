import json

import pytest
import torch

from xlrepro.config import ModelConfig, TrainConfig
from xlrepro.data.types import Format
from xlrepro.formats import Batch, pad_sequences
from xlrepro.model import MultiTaskModel, build_encoder
from xlrepro.train import Stream, train

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "type_vocab_size": 1,
    "pad_token_id": 1,
}


def _setup(seed=0):
    enc = build_encoder(ModelConfig(init_config=TINY), vocab_size=40, seed=seed)
    m = MultiTaskModel(enc)
    m.add_head("t", Format.CLASSIFICATION, 2, 0.1, seed=seed + 1)
    g = torch.Generator().manual_seed(0)
    feats = []
    for i in range(40):
        n = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(3, 40, (n,), generator=g).tolist()
        feats.append({"ex": i, "input_ids": [0] + ids + [2], "label": int(ids[0] % 2)})

    def collate(fs):
        ids = pad_sequences([f["input_ids"] for f in fs], 1)
        return Batch(
            {"input_ids": ids, "attention_mask": (ids != 1).long()},
            {"labels": torch.tensor([f["label"] for f in fs])},
            [f["ex"] for f in fs],
        )

    return m, feats, collate


class Crash(Exception):
    pass


def _losses(log_path):
    return [e["loss"] for e in map(json.loads, open(log_path)) if e["event"] == "train"]


@pytest.mark.slow
@pytest.mark.parametrize("token_budget", [None, 40])
def test_resume_reproduces_the_uninterrupted_loss_trajectory(tmp_path, token_budget):
    """Also with token-budget batches (micro-batches of at most 40 real tokens)."""
    cfg = TrainConfig(
        lr=1e-3,
        batch_size=4,
        grad_accum=2,
        max_steps=12,
        checkpoint_every_steps=4,
        eval_every_steps=100,
        warmup_proportion=0.2,
        token_budget=token_budget,
        packing_window=16,
    )

    def run(dir_, crash_at=None):
        m, feats, collate = _setup()
        calls = {"n": 0}

        def loss_fn(model, b):
            calls["n"] += 1
            if token_budget is not None:
                tokens = int(b.inputs["attention_mask"].sum())
                assert tokens <= token_budget or len(b.meta) == 1, tokens
            if crash_at is not None and calls["n"] == crash_at:
                raise Crash()
            return torch.nn.functional.cross_entropy(model("t", **b.inputs), b.targets["labels"])

        logf = dir_ / "log.jsonl"

        def log(e):
            with open(logf, "a") as f:
                f.write(json.dumps(e) + "\n")

        dir_.mkdir(exist_ok=True)
        state = train(m, Stream("t", feats, collate, loss_fn), cfg, seed=5, run_dir=dir_, evaluate=None, log=log)
        return m, state

    full_model, full_state = run(tmp_path / "full")
    with pytest.raises(Crash):
        run(tmp_path / "cut", crash_at=2 * 6 + 1)  # dies inside optimiser step 7, after the step-4 checkpoint
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    resumed_model, resumed_state = run(tmp_path / "cut")
    full = _losses(tmp_path / "full" / "log.jsonl")
    cut = _losses(tmp_path / "cut" / "log.jsonl")
    assert len(full) == 12
    # the crashed run logged steps 1-6; the resumed one drops 5-6 from the log and replays them from the
    # step-4 checkpoint: each step is logged once, with the uninterrupted run's values
    assert cut == full
    steps = [e["step"] for e in map(json.loads, open(tmp_path / "cut" / "log.jsonl")) if e["event"] == "train"]
    assert steps == list(range(1, 13))
    for (n, p), (_, q) in zip(full_model.named_parameters(), resumed_model.named_parameters()):
        assert torch.equal(p, q), n
    assert not (tmp_path / "cut" / "checkpoint.pt").exists(), "a finished run removes its checkpoint"
    assert resumed_state.step == full_state.step == 12


def test_early_stopping_reloads_the_best_checkpoint(tmp_path):
    m, feats, collate = _setup()
    cfg = TrainConfig(lr=1e-3, batch_size=4, grad_accum=1, max_steps=40, eval_every_steps=2, patience=2)
    scores = iter([10.0, 30.0, 20.0, 25.0, 5.0, 99.0])
    snapshots = {}

    def evaluate():
        s = next(scores)
        snapshots[s] = m.heads["t"].out.weight.detach().clone()
        return s

    events = []
    state = train(
        m,
        Stream(
            "t",
            feats,
            collate,
            lambda model, b: torch.nn.functional.cross_entropy(model("t", **b.inputs), b.targets["labels"]),
        ),
        cfg,
        seed=1,
        run_dir=tmp_path,
        evaluate=evaluate,
        log=events.append,
    )
    assert state.stopped_early and state.best_score == 30.0 and state.best_step == 4 and state.step == 8
    assert torch.equal(m.heads["t"].out.weight, snapshots[30.0])
    assert [e["event"] for e in events].count("eval") == 4
