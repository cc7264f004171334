"""Intermediate-training variants on a miniature smoke world: multi-task, continued MLM,
translated data, data volume; each intermediate checkpoint feeds a target-task run."""

import json
import shutil

import pytest
from mini import XNLI_TATOEBA

from xlrepro.config import load_config
from xlrepro.phases.orchestrator import run_experiment

pytestmark = pytest.mark.slow  # every test here trains (tests/README.md)

MINI = XNLI_TATOEBA


def run(out, *overrides):
    return run_experiment(load_config("smoke", MINI + list(overrides)), out)


def _log(run_dir):
    return [json.loads(l) for l in open(run_dir / "log.jsonl")]


def _inter(results):
    return next(v for v in results["runs"].values() if v["kind"] == "intermediate")


def test_multitask_intermediate_feeds_a_target_run(tmp_path):
    res = run(tmp_path, "intermediate.tasks=[hellaswag, mnli]", "intermediate.sampler=uniform")
    inter = _inter(res)
    assert set(inter["tasks"]) == {"hellaswag", "mnli"}
    events = _log(tmp_path / "runs" / inter["dir"].split("/runs/")[1])
    sampler = next(e for e in events if e["event"] == "sampler")
    assert sampler["method"] == "uniform" and sampler["probabilities"] == {"hellaswag": 0.5, "mnli": 0.5}
    steps = [e for e in events if e["event"] == "train"]
    assert all(set(e["task_loss"]) <= {"hellaswag", "mnli"} for e in steps)
    assert {k for e in steps for k in e["task_loss"]} == {"hellaswag", "mnli"}, "per-task losses are logged"
    target = next(v for v in res["runs"].values() if v["kind"] == "target")
    spec = json.loads((tmp_path / "runs" / target["dir"].split("/runs/")[1] / "spec.json").read_text())
    assert spec["upstream"] == {
        "kind": "intermediate",
        "run": [h for h, v in res["runs"].items() if v["kind"] == "intermediate"][0],
    }
    assert any(r["task"] == "xnli" and r["intermediate"] == "hellaswag+mnli" for r in res["records"])


def test_mlm_mixed_intermediate_feeds_a_target_run(tmp_path):
    res = run(tmp_path, "intermediate.tasks=[hellaswag]", "intermediate.mlm_mix=0.5")
    inter = _inter(res)
    events = _log(tmp_path / "runs" / inter["dir"].split("/runs/")[1])
    mix = next(e for e in events if e["event"] == "mlm_mix")
    assert mix["ratio"] == 0.5 and mix["corpus"]
    seen = {k for e in events if e["event"] == "train" for k in e.get("task_loss", {})}
    assert seen == {"hellaswag", "mlm"}
    handoff = json.loads((tmp_path / "runs" / inter["dir"].split("/runs/")[1] / "encoder" / "handoff.json").read_text())
    assert "mlm" in handoff["dropped_heads"]
    assert any(r["task"] == "xnli" for r in res["records"])


def test_volume_and_translated_data_are_recorded(tmp_path):
    first = run(tmp_path / "a", "intermediate.tasks=[mnli]", "intermediate.train.volume=50")
    world = next((tmp_path / "a").glob("world-*"))
    # a "translated" copy of MNLI supplied by the user: same layout, here the English file itself
    tr = tmp_path / "mnli-de"
    shutil.copytree(world / "mnli", tr)
    res = run(
        tmp_path / "a",
        "intermediate.tasks=[mnli]",
        "intermediate.train.volume=50",
        f"intermediate.translated={{mnli: {{de: {tr}}}}}",
    )
    a, b = _inter(first)["tasks"]["mnli"], _inter(res)["tasks"]["mnli"]
    assert a["n_examples"] == 50 and a["volume"] == 50 and a["language_mix"] == {"en": 50}
    assert b["language_mix"] == {"en": 50, "de": 120} and b["n_examples"] == 170
    assert a["subset_sha256"] != b["subset_sha256"]
    with pytest.raises(ValueError, match="exceeds the 120"):
        run(tmp_path / "b", "intermediate.tasks=[mnli]", "intermediate.train.volume=121")


def test_packed_attention_trains_like_padded(tmp_path):
    """model.attention=packed runs every phase; with dropout off its loss trajectory is the padded one's."""
    nodrop = [
        "model.init_config.hidden_dropout_prob=0.0",
        "model.init_config.attention_probs_dropout_prob=0.0",
        "model.classifier_dropout=0.0",
        "intermediate.tasks=[hellaswag]",
    ]
    losses = {}
    for mode in ("padded", "packed"):
        res = run(tmp_path / mode, *nodrop, f"model.attention={mode}")
        target = next(v for v in res["runs"].values() if v["kind"] == "target")
        events = _log(tmp_path / mode / "runs" / target["dir"].split("/runs/")[1])
        losses[mode] = [e["loss"] for e in events if e["event"] == "train"]
        assert any(r["task"] == "xnli" for r in res["records"])
    assert len(losses["packed"]) == len(losses["padded"]) == 4
    assert losses["packed"] == pytest.approx(losses["padded"], rel=1e-4)


def test_token_budget_batches_run_every_phase(tmp_path):
    res = run(
        tmp_path,
        "intermediate.tasks=[hellaswag]",
        "model.attention=packed",
        "intermediate.train.token_budget=600",
        "target.train.token_budget=300",
        "target.train.packing_window=64",
    )
    target = next(v for v in res["runs"].values() if v["kind"] == "target")
    spec = json.loads((tmp_path / "runs" / target["dir"].split("/runs/")[1] / "spec.json").read_text())
    assert spec["train"]["token_budget"] == 300
    assert any(r["task"] == "xnli" for r in res["records"])
