"""logging.tensorboard: per-run event files with the training curves, read back here."""

import json
import subprocess
import sys

import pytest
from mini import WORLD

from xlrepro.config import load_config
from xlrepro.errors import ConfigError
from xlrepro.phases.orchestrator import run_experiment

MINI = WORLD + [
    "pretrain.steps=4",
    "intermediate.train.max_steps=4",
    "intermediate.train.eval_every_steps=2",
    "target.train.max_steps=4",
    "target.train.eval_every_steps=2",
    "target.tasks=[xnli]",
    "controls=[]",
    "retrieval.tasks=[]",
    "target.per_task={}",
    "target.eval_splits=[test]",
    "intermediate.tasks=[hellaswag, mnli]",
]


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_curves_per_phase_match_the_log(tmp_path):
    pytest.importorskip("tensorboard")
    res = run_experiment(load_config("smoke", MINI + ["logging.tensorboard=true"]), tmp_path)
    dirs = {v["kind"]: tmp_path / "runs" / v["dir"].split("/runs/")[1] for v in res["runs"].values()}
    assert {"pretrain", "intermediate", "target"} <= set(dirs)
    for kind in ("pretrain", "intermediate", "target"):
        run_dir = dirs[kind]
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*")), kind
        sc = _scalars(run_dir / "tensorboard")
        events = [json.loads(l) for l in open(run_dir / "log.jsonl")]
        train = [e for e in events if e["event"] == "train"]
        assert [s for s, _ in sc["train/loss"]] == [e["step"] for e in train]
        for (_, v), e in zip(sc["train/loss"], train):
            assert v == pytest.approx(e["loss"], rel=1e-6)
        for (_, v), e in zip(sc["train/lr"], train):
            assert v == pytest.approx(e["lr"], rel=1e-6)
        for (_, v), e in zip(sc["train/grad_norm"], train):
            assert v == pytest.approx(e["grad_norm"], rel=1e-5)
        assert len(sc["train/tokens_per_s"]) == len(train) and all(v > 0 for _, v in sc["train/tokens_per_s"])
        for (_, v), e in zip(sc["train/tokens_per_s"], train):
            assert e["tokens"] > 0 and v == pytest.approx(e["tokens"] / e["step_s"], rel=1e-5)
        evals = [e for e in events if e["event"] == "eval"]
        if kind == "pretrain":
            assert "eval/score" not in sc and not evals
        else:
            assert [(s, pytest.approx(v, rel=1e-6)) for s, v in sc["eval/score"]] == [
                (e["step"], e["score"]) for e in evals
            ]
    # multi-task intermediate: one loss curve per task
    assert {"train/loss/hellaswag", "train/loss/mnli"} <= set(_scalars(dirs["intermediate"] / "tensorboard"))


@pytest.mark.slow
def test_no_event_files_unless_asked(tmp_path):
    res = run_experiment(load_config("smoke", MINI + ["intermediate.tasks=[]", "pretrain.steps=2"]), tmp_path)
    for v in res["runs"].values():
        assert not (tmp_path / "runs" / v["dir"].split("/runs/")[1] / "tensorboard").exists()


def test_missing_tensorboard_is_a_config_error_before_training(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = load_config("smoke", MINI + ["logging.tensorboard=true"])
    with pytest.raises(ConfigError, match="logging.tensorboard.*pip install"):
        run_experiment(cfg, tmp_path)
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("world-*")), "failed before any work"


def test_importing_the_training_loop_does_not_import_tensorboard():
    code = (
        "import sys, xlrepro, xlrepro.train, xlrepro.phases.orchestrator; "
        "print('tensorboard' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
