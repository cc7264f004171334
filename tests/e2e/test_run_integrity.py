"""Runs keyed on the content they read, one writer per run folder, phases that finish atomically,
no hang on an empty training set, no unpickling of planted files, the keep policy and the model's
identity. On a miniature smoke world (seconds per experiment)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mini import MINI as BASE

from xlrepro.config import ModelConfig, load_config
from xlrepro.errors import ConfigError, DataFormatError, XlreproError
from xlrepro.phases import Context
from xlrepro.phases.graph import build_graph
from xlrepro.phases.orchestrator import run_experiment

pytestmark = pytest.mark.slow  # every test here trains (tests/README.md)

REPO = Path(__file__).resolve().parents[2]
MINI = BASE + [
    "target.train.eval_every_steps=2",
    "target.tasks=[xnli]",
    "retrieval.tasks=[]",
    "target.per_task={}",
    "target.eval_splits=[test]",
]


def run(out, *overrides):
    return run_experiment(load_config("smoke", MINI + list(overrides)), out)


def _cli(out, *overrides, env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "xlrepro", "reproduce", "smoke", "--out", str(out), *MINI, *overrides],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "XLREPRO_PROGRESS": "0", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted miniature experiment (default keep policy), shared by the tests below."""
    out = tmp_path_factory.mktemp("reference")
    return out, run(out)


def _runs(res, kind):
    return [v for v in res["runs"].values() if v["kind"] == kind]


def _events(run_dir):
    return [json.loads(l) for l in open(Path(run_dir) / "log.jsonl")]


def _scores(res):
    return sorted((r["task"], r["language"], r["split"], r["metric"], r["value"]) for r in res["records"])


# ---------------------------------------------------------------------- 1. keyed on content


def test_an_edited_test_file_makes_a_new_run_and_moving_the_data_does_not(tmp_path):
    first = run(tmp_path)
    (target,) = _runs(first, "target")
    world = next(tmp_path.glob("world-*"))
    # the same files elsewhere (data.task_dirs): the same content, the same run, reused
    import shutil

    shutil.copytree(world / "xnli", tmp_path / "elsewhere" / "xnli")
    moved = run(tmp_path, f"data.task_dirs={{xnli: {tmp_path / 'elsewhere' / 'xnli'}}}")
    assert [v["dir"] for v in _runs(moved, "target")] == [target["dir"]]
    # edit one test line there (flip a label): a new run, scored on the new data, never the old scores
    f = tmp_path / "elsewhere" / "xnli" / "test-tr.tsv"
    lines = f.read_text().splitlines()
    a, b, label = lines[0].split("\t")
    lines[0] = "\t".join([a, b, "neutral" if label != "neutral" else "entailment"])
    f.write_text("\n".join(lines) + "\n")
    edited = run(tmp_path, f"data.task_dirs={{xnli: {tmp_path / 'elsewhere' / 'xnli'}}}")
    (new,) = _runs(edited, "target")
    assert new["dir"] != target["dir"]
    old_sha = {r["data_sha256"] for r in first["records"] if r["language"] == "tr"}
    new_sha = {r["data_sha256"] for r in edited["records"] if r["language"] == "tr"}
    assert old_sha and new_sha and old_sha.isdisjoint(new_sha)
    assert any(e["event"] == "train" for e in _events(new["dir"])), "the new run trains"
    # the encoder runs upstream did not read XNLI: they are reused
    assert _runs(edited, "intermediate")[0]["dir"] == _runs(first, "intermediate")[0]["dir"]


def test_file_hashes_are_cached_per_path_mtime_and_size(tmp_path, monkeypatch):
    from xlrepro import runs
    from xlrepro.data import io

    f = tmp_path / "a.txt"
    f.write_text("one\n")
    calls = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p: calls.append(p) or real(p))
    h1 = runs.file_sha256(f)
    assert runs.file_sha256(f) == h1 and len(calls) == 1
    f.write_text("two, longer\n")
    assert runs.file_sha256(f) != h1 and len(calls) == 2


def test_checkpoint_intervals_are_not_part_of_the_key(tmp_path):
    a = Context(load_config("smoke", MINI), tmp_path)
    a.prepare()
    b = Context(
        load_config(
            "smoke",
            MINI
            + [
                "target.train.checkpoint_every_steps=1",
                "target.train.checkpoint_every_seconds=5",
                "pretrain.checkpoint_every_seconds=1",
            ],
        ),
        tmp_path,
    )
    b.prepare()
    ga, gb = build_graph(a), build_graph(b)
    assert ga.find("pretrain", "mlm").spec == gb.find("pretrain", "mlm").spec
    assert ga.find("target", "xnli").spec == gb.find("target", "xnli").spec


# ---------------------------------------------------------------------- 2. no hang on empty training data


@pytest.mark.parametrize("content", ["", "header-only"])
def test_an_empty_training_set_is_an_error_before_training(tmp_path, content):
    cfg = load_config("smoke", MINI + ["intermediate.tasks=[mnli]", "pretrain.steps=0"])
    exp = Context(cfg, tmp_path)
    exp.prepare()
    f = exp.data_root / "mnli" / "train.tsv"
    f.write_text(f.read_text().splitlines()[0] + "\n" if content else "")
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("hang: no error after 60 s")))
    signal.alarm(60)
    try:
        with pytest.raises(XlreproError) as e:
            run_experiment(cfg, tmp_path)
    finally:
        signal.alarm(0)
    assert str(f) in str(e.value) or "no training examples" in str(e.value)
    inter = next((tmp_path / "runs").glob("intermediate-*"))
    assert not any(ev["event"] == "train" for ev in _events(inter)) if (inter / "log.jsonl").exists() else True


def test_the_cli_reports_an_empty_training_set_without_a_traceback(tmp_path):
    exp = Context(load_config("smoke", MINI), tmp_path)
    exp.prepare()
    (exp.data_root / "mnli" / "train.tsv").write_text("")
    p = _cli(tmp_path, "intermediate.tasks=[mnli]", "pretrain.steps=0")
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2, out
    assert "xlrepro: error:" in out and "train.tsv" in out and "Traceback" not in out


# ---------------------------------------------------------------------- 3. no unpickling of planted files


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_checkpoint_is_refused(tmp_path):
    from xlrepro.config import TrainConfig
    from xlrepro.train import TorchEngine, safe_load

    marker = tmp_path / "pwned"
    torch.save({"model": _Planted(marker)}, tmp_path / "checkpoint.pt")
    eng = TorchEngine(torch.nn.Linear(2, 2), TrainConfig(), 10)
    with pytest.raises(DataFormatError, match=r"checkpoint\.pt.*refused"):
        eng.load_checkpoint(tmp_path)
    torch.save(_Planted(marker), tmp_path / "best_model.pt")
    with pytest.raises(DataFormatError, match="best_model.pt"):
        safe_load(tmp_path / "best_model.pt")
    assert not marker.exists(), "the planted code ran"


def test_deepspeed_checkpoint_files_load_without_unpickling_code(tmp_path):
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    from xlrepro.ds_engine import safe_checkpoint_engine

    marker = tmp_path / "pwned"
    torch.save({"module": _Planted(marker)}, tmp_path / "mp_rank_00_model_states.pt")
    eng = safe_checkpoint_engine(TorchCheckpointEngine())
    with pytest.raises(DataFormatError, match="mp_rank_00_model_states.pt"):
        eng.load(str(tmp_path / "mp_rank_00_model_states.pt"))
    assert not marker.exists()
    torch.save({"module": {"w": torch.ones(2)}, "global_steps": 3}, tmp_path / "ok.pt")
    assert eng.load(str(tmp_path / "ok.pt"))["global_steps"] == 3


def test_rng_states_round_trip_as_plain_values(tmp_path):
    import random

    import numpy as np

    from xlrepro.train import _rng_state, _set_rng_state, safe_load

    torch.save(_rng_state(), tmp_path / "rng.pt")
    expect = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    _set_rng_state(safe_load(tmp_path / "rng.pt"))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expect


# ---------------------------------------------------------------------- 8. one writer per run folder


def test_two_processes_on_one_output_folder_train_each_run_once(tmp_path, reference):
    _, ref = reference
    a = _cli(tmp_path / "shared")
    time.sleep(1.0)
    b = _cli(tmp_path / "shared")
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    res = json.loads((tmp_path / "shared" / "results.json").read_text())
    assert _scores(res) == _scores(ref)
    for d in (tmp_path / "shared" / "runs").iterdir():
        events = _events(d)
        steps = [e["step"] for e in events if e["event"] == "train"]
        assert steps == sorted(set(steps)) and steps[0] == 1, (d.name, steps)  # trained once, not interleaved
        assert [e["event"] for e in events].count("resume") == 0
    assert not list((tmp_path / "shared").rglob("*.tmp*")), "no temporary file left behind"


def test_a_locked_run_folder_names_its_holder(tmp_path):
    from xlrepro.runs import FolderLock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from xlrepro.runs import FolderLock
        FolderLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.environ["XLREPRO_LOCK_TIMEOUT"] = "0.5"
        try:
            with pytest.raises(ConfigError, match=rf"in use by pid {holder.pid} on "):
                FolderLock(tmp_path).acquire()
        finally:
            del os.environ["XLREPRO_LOCK_TIMEOUT"]
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(tmp_path):  # released when its process died
        pass


# ---------------------------------------------------------------------- 9. phases finish atomically


KILL_BEFORE_DONE = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import xlrepro.runs as runs
real = runs.Run.finish
def finish(self, summary):
    if self.kind == {kind!r}:
        os.kill(os.getpid(), signal.SIGKILL)  # outputs written, done.json not yet
    return real(self, summary)
runs.Run.finish = finish
from xlrepro.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("kind", ["target", "pretrain"])
def test_a_kill_between_training_and_done_json_resumes_without_training_again(tmp_path, kind, reference):
    _, ref = reference
    out = tmp_path / "cut"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_BEFORE_DONE.format(repo=str(REPO), kind=kind),
            "reproduce",
            "smoke",
            "--out",
            str(out),
            *MINI,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLREPRO_PROGRESS": "0"},
    )
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    (killed,) = (out / "runs").glob(f"{kind}-*")
    assert not (killed / "done.json").exists()
    assert (killed / "checkpoint.pt").exists(), "the final state is kept until done.json is written"
    res = run(out)
    events = _events(killed)
    steps = [e["step"] for e in events if e["event"] == "train"]
    assert steps == list(range(1, steps[-1] + 1)), "each step logged once; none trained again"
    resume = [e for e in events if e["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["step"] == steps[-1]
    assert (killed / "done.json").exists() and not (killed / "checkpoint.pt").exists()
    assert _scores(res) == _scores(ref)


def test_a_time_based_interval_checkpoints_between_step_intervals(tmp_path):
    from test_train import Crash, _setup

    from xlrepro.config import TrainConfig
    from xlrepro.train import Stream, train

    m, feats, collate = _setup()
    cfg = TrainConfig(
        lr=1e-3,
        batch_size=4,
        grad_accum=1,
        max_steps=10,
        checkpoint_every_steps=1000,
        checkpoint_every_seconds=0.0,
        eval_every_steps=100,
    )
    n = {"calls": 0}

    def loss_fn(model, b):
        n["calls"] += 1
        if n["calls"] == 4:
            raise Crash()
        return torch.nn.functional.cross_entropy(model("t", **b.inputs), b.targets["labels"])

    with pytest.raises(Crash):
        train(m, Stream("t", feats, collate, loss_fn), cfg, seed=1, run_dir=tmp_path, evaluate=None, log=lambda e: None)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["loop"]["step"] == 3


# ---------------------------------------------------------------------- keep policy, model identity


def test_keep_policy_drops_full_state_dicts_unless_asked(tmp_path, reference):
    default, _ = reference
    assert not list((default / "runs").rglob("best_model.pt"))
    assert list((default / "runs").glob("intermediate-*/encoder/model.safetensors"))
    assert list((default / "runs").glob("target-*/predictions/xnli/test-*"))
    run(tmp_path / "all", "keep=all")
    assert {p.parent.name.split("-")[0] for p in (tmp_path / "all" / "runs").rglob("best_model.pt")} == {
        "intermediate",
        "target",
    }
    with pytest.raises(ConfigError, match="keep: 'some' is not one of"):
        load_config("smoke", ["keep=some"])


def _hf_folder(path, seed=0, layers=1, positions=20):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=positions,
    )
    model = XLMRobertaModel(cfg, add_pooling_layer=False)
    model.save_pretrained(str(path), safe_serialization=True)
    return model


def test_a_local_model_is_identified_by_its_weights_not_its_path(tmp_path):
    import shutil

    from xlrepro.model import model_identity

    _hf_folder(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ia, ib = (
        model_identity(ModelConfig(name_or_path=str(tmp_path / "a"))),
        model_identity(ModelConfig(name_or_path=str(tmp_path / "b"))),
    )
    assert ia["kind"] == "local" and ia == ib and "model.safetensors" in ia["files"]
    _hf_folder(tmp_path / "b", seed=1)
    assert model_identity(ModelConfig(name_or_path=str(tmp_path / "b")))["weights_sha256"] != ia["weights_sha256"]
    with pytest.raises(ConfigError, match="no weight file"):
        (tmp_path / "empty").mkdir()
        model_identity(ModelConfig(name_or_path=str(tmp_path / "empty")))


def test_a_hub_model_is_identified_by_its_commit(monkeypatch):
    from xlrepro.model import model_identity

    assert ModelConfig().name_or_path == "FacebookAI/xlm-roberta-large"
    pinned = model_identity(ModelConfig(revision="a" * 40))
    assert pinned["commit"] == "a" * 40 and pinned["resolved_by"] == "pinned"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unresolved = model_identity(ModelConfig(name_or_path="nobody/not-a-model-xlrepro", revision="v9"))
    assert unresolved["commit"] is None and unresolved["revision"] == "v9"


def test_results_record_the_model_identity_and_the_key_includes_it(tmp_path, reference):
    _, res = reference
    assert res["model_identity"] == {"kind": "init_config"}
    assert json.loads((reference[0] / "results.json").read_text())["model_identity"] == {"kind": "init_config"}
    run_results = sorted((reference[0] / "runs").glob("*/results.json"))
    assert run_results and all(
        json.loads(p.read_text())["model_identity"] == {"kind": "init_config"} for p in run_results
    )  # every run's own results name the model too
    exp = Context(load_config("smoke", MINI), tmp_path)
    _hf_folder(tmp_path / "m")
    exp.cfg.model = ModelConfig(name_or_path=str(tmp_path / "m"))
    spec = exp.base_encoder_spec()
    assert spec["identity"]["kind"] == "local" and str(tmp_path) not in json.dumps(spec["model"])


def test_parameter_counts_come_from_the_model_folders_config(tmp_path, capsys):
    from xlrepro.cli import main
    from xlrepro.estimate import param_count
    from xlrepro.plan import encoder_params

    model = _hf_folder(tmp_path / "m", layers=24, positions=514)  # deep and long enough for the recipe's checks
    n = sum(p.numel() for p in model.parameters())
    cfg = ModelConfig(name_or_path=str(tmp_path / "m"))
    assert param_count(cfg) == n
    exp_cfg = load_config("xstilts-squad", [f"model.name_or_path={tmp_path / 'm'}"])
    assert encoder_params(exp_cfg)[0] == n
    assert (
        main(
            [
                "reproduce",
                "xstilts-table",
                "--dry-run",
                "--out",
                str(tmp_path / "o"),
                f"model.name_or_path={tmp_path / 'm'}",
            ]
        )
        == 0
    )
    assert "estimated GPU-hours" in capsys.readouterr().out
    with pytest.raises(KeyError, match="parameter count unknown"):
        param_count(ModelConfig(name_or_path="nobody/unknown-model"))
