"""Acceptance of the sweep (CPU): the smoke-scale scaling study end to end, killed and resumed.

``scaling-smoke`` is 3 intermediate volumes x 2 intermediate tasks x 2 seeds (+ the baseline per
seed), and the two trained analysis controls (CCG and CCG with shuffled labels, 3 volumes x 2
seeds each, UD-POS only) on a small generated world: 64 runs sharing one pre-trained encoder. The sweep runs as a
subprocess (``xlrepro reproduce scaling-smoke``) and is SIGKILLed after some runs finished;
started again it must finish the remaining runs only (checked on the run log and on the finished
runs' files, which must not be rewritten), and the report must show the curves, CIs, paired tests
and the paper-comparison table, marked as smoke-scale. A report built while runs are missing
uses the finished ones only. The SLURM path is exercised through submitit's LocalExecutor and
DebugExecutor, and the several-GPU path (one subprocess per run) on a two-run spec.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xlrepro.sweep import build_graph, run_local, run_submitit

pytestmark = pytest.mark.slow  # every test here trains (tests/README.md)

KILL_AFTER = 8  # finished runs before the SIGKILL


def _events(out: Path) -> list[dict]:
    path = out / "sweep-log.jsonl"
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "xlrepro", "reproduce", "scaling-smoke", "--out", str(out), "--device", "cpu"]


def _fingerprint(run_dir: Path) -> dict:
    return {
        p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(run_dir.iterdir())
        if p.is_file() and p.suffix == ".json"
    }


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling-smoke")
    env = {**os.environ, "XLREPRO_PROGRESS": "0"}
    t0 = time.time()
    proc = subprocess.Popen(_cmd(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while sum(e["event"] == "finish" for e in _events(out)) < KILL_AFTER:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before it could be killed:\n{proc.stdout.read().decode()[-3000:]}")
        if time.time() - t0 > 900:
            proc.kill()
            raise AssertionError("the sweep did not finish 8 runs in 15 minutes")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    first = _events(out)
    graph = build_graph("scaling-smoke", out)
    finished = {k: _fingerprint(out / n.run_dir) for k, n in graph.nodes.items() if n.state(out) == "done"}
    # a report now: finished runs only
    partial = subprocess.run(
        [sys.executable, "-m", "xlrepro", "report", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert partial.returncode == 0, partial.stderr
    partial_md = (out / "report-scaling-smoke" / "report.md").read_text()
    second = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {
        "out": out,
        "graph": graph,
        "first": first,
        "all": _events(out),
        "finished": finished,
        "partial_md": partial_md,
        "seconds": time.time() - t0,
        "stdout": second.stdout,
    }


def test_the_killed_sweep_finishes_only_the_remaining_runs(killed_and_resumed):
    k = killed_and_resumed
    out, graph = k["out"], k["graph"]
    done_first = {e["node"] for e in k["first"] if e["event"] == "finish"}
    assert len(done_first) >= KILL_AFTER and len(k["finished"]) >= KILL_AFTER
    later = k["all"][len(k["first"]) :]
    started_again = {e["node"] for e in later if e["event"] == "start"}
    assert not started_again & {key[:12] for key in k["finished"]}, "a finished run was started again"
    assert {e["node"] for e in later if e["event"] == "skip"} >= {key[:12] for key in k["finished"]}
    # every run of the graph is finished now, and the first invocation's files are untouched
    assert all(n.state(out) == "done" for n in graph.nodes.values())
    for key, fp in k["finished"].items():
        now = _fingerprint(out / graph.nodes[key].run_dir)
        for name, before in fp.items():
            assert now[name] == before, f"{graph.nodes[key].run_dir}/{name} was rewritten"
    ran_second = {e["node"] for e in later if e["event"] == "finish"}
    assert len(ran_second) + len(k["finished"]) == len(graph.nodes)
    # the pre-trained encoder is one run shared by all 26 cells; each intermediate checkpoint is one run
    pre = [n for n in graph.nodes.values() if n.kind == "pretrain"]
    assert len(pre) == 1 and len(pre[0].cells) == len(graph.cells) == 2 + 4 * 3 * 2
    inter = [n for n in graph.nodes.values() if n.kind == "intermediate"]
    assert len(inter) == 4 * 3 * 2
    assert f"{len(ran_second)} runs executed, {len(k['finished'])} already finished" in k["stdout"]


def test_a_report_of_an_unfinished_sweep_uses_finished_runs_only(killed_and_resumed):
    md = killed_and_resumed["partial_md"]
    assert "**Incomplete:**" in md and "this report uses finished runs only" in md


def test_the_report_shows_curves_cis_tests_and_the_paper_table(killed_and_resumed):
    out = killed_and_resumed["out"]
    folder = out / "report-scaling-smoke"
    md = (folder / "report.md").read_text()
    assert "**Smoke scale.**" in md and "**Incomplete:**" not in md
    assert "## The paper's numbers beside ours" in md
    assert "| chance | baseline | tatoeba | accuracy | mean | 1.0 | D | derived |" in md
    assert "| chance | baseline | udpos | f1 | mean | — | — | — |" in md and "no reference" in md
    assert "[CI ±" in md and "## Paired tests against the baseline" in md and "p (Holm)" in md
    assert "## Scaling: score vs. intermediate volume" in md
    for name in ("scaling-udpos.png", "scaling-udpos-groups.png", "scaling-tatoeba.png", "heatmap-udpos.png"):
        assert (folder / name).stat().st_size > 5000, name
        assert f"]({name})" in md
    html = (folder / "report.html").read_text()
    assert "<table>" in html and "scaling-udpos.png" in html and "Smoke scale" in html
    a = json.loads((folder / "analysis.json").read_text())
    assert a["smoke_scale"] is True
    fits = {(f["task"], f["variant"], f["group"]): f for f in a["scaling"]}
    for variant in ("hellaswag", "mnli"):
        f = fits[("udpos", variant, "all languages")]
        assert len(f["points"]) == 3 * 2 and f["fit"]["slope_low"] <= f["fit"]["slope"] <= f["fit"]["slope_high"]
        # resource groups of the smoke languages: tr high, mr under-resourced, yo unseen (never pooled)
        assert {("udpos", variant, g) for g in ("high", "under-resourced", "unseen")} <= set(fits)
    tests = [t for t in a["paired"] if t["task"] == "udpos"]
    assert len(tests) == 4 * 3 * 4 and all(t["n_seeds"] == 2 and 0 < t["p_value"] <= 1 for t in tests)
    assert "Too small" in md or "too small" in md
    # the pre-registered model is fitted (or said to be unfittable) with and without re-seeds, without
    # the control variants; the analysis controls (synthetic scores on this sweep's design) pass
    assert "## Primary analysis: the pre-registered mixed model" in md and "first attempts (collapsed runs kept)" in md
    assert set(a["primary"]["fixed-epochs"]["fits"]) == {"accepted", "first", "no-reseeded"}
    assert a["primary"]["fixed-epochs"]["left_out"]["analysis-control variant (fitted apart)"] == 2 * 3 * 2 * 3
    assert "## Controls of the analysis" in md and a["controls"]["passed"] and "Both controls passed." in md
    # the trained controls: more CCG data helps UD-POS (slope detected), shuffled CCG labels do not
    trained = a["controls"]["trained"]["fixed-epochs"]
    pos, neg = trained["positive"], trained["negative"]
    assert (pos["variant"], neg["variant"]) == ("ccg", "ccg-shuffled") and pos["n"] == neg["n"] == 3 * 3 * 2
    assert pos["status"] == "fitted" and pos["slope"]["ci"][0] > 0 and pos["passed"], pos
    assert neg["status"] == "fitted" and neg["slope"]["ci"][0] <= 0 <= neg["slope"]["ci"][1] and neg["passed"], neg
    assert "### Trained controls" in md and "Both trained controls passed." in md
    # the CCG task has no fixed tag set: its head takes the 5 supertags of the training split
    ccg = [n for n in killed_and_resumed["graph"].nodes.values() if n.kind == "intermediate" and n.task == "ccg"]
    done = json.loads((out / ccg[0].run_dir / "done.json").read_text())
    assert len(ccg) == 2 * 3 * 2 and done["tasks"]["ccg"]["labels_from_training_data"] == 5
    prov = a["provenance"]
    assert prov["commits"] and prov["hardware"] and "none (not run in the image)" in prov["images"][0]


TINY = """
name: tiny
result: "two runs: a few MLM steps, then retrieval from that encoder"
kind: table
config: smoke
overrides: ["smoke.languages=[en, tr]", "smoke.n_train=50", "smoke.n_dev=20", "smoke.n_test=20", "smoke.n_corpus=300",
            "model.init_config.hidden_size=32", "model.init_config.num_hidden_layers=1",
            "model.init_config.num_attention_heads=2", "model.init_config.intermediate_size=64",
            "pretrain.steps=3", "pretrain.batch_size=4", "pretrain.max_seq_length=32",
            "intermediate.tasks=[]", "target.tasks=[]", "retrieval.tasks=[tatoeba]", "controls=[]"]
variants: [{label: baseline}]
seeds: [1]
"""


@pytest.fixture
def tiny_spec(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


@pytest.mark.parametrize("executor", ["submitit-local", "submitit-debug"])
def test_submitit_executors_walk_the_graph(tiny_spec, tmp_path, executor, monkeypatch):
    pytest.importorskip("submitit", reason="requirements/cluster.txt (in requirements/test.txt) installs submitit")
    monkeypatch.setenv("XLREPRO_PROGRESS", "0")
    out = tmp_path / "out"
    graph = build_graph(tiny_spec, out)
    assert [n.kind for n in graph.nodes.values()] == ["pretrain", "retrieval"]
    counts = run_submitit(graph, executor, poll_s=0.5, timeout_min=20)
    assert counts == {"ran": 2, "skipped": 0}
    assert all(n.state(out) == "done" for n in graph.nodes.values())
    if executor == "submitit-local":
        assert list((out / "submitit").glob("*_result.pkl")), "the runs were not submitit jobs"
    again = run_submitit(build_graph(tiny_spec, out), executor, poll_s=0.5)
    assert again == {"ran": 0, "skipped": 2}


def test_local_executor_runs_one_subprocess_per_gpu(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("XLREPRO_PROGRESS", "0")
    out = tmp_path / "out"
    counts = run_local(build_graph(tiny_spec, out), device="cpu", gpus=2)
    assert counts == {"ran": 2, "skipped": 0}
    pids = {e["pid"] for e in _events(out) if e["event"] == "finish"}
    assert len(pids) == 2 and os.getpid() not in pids  # each run in its own process
