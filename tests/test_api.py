"""The notebook API: the README's example runs as written; phases, read-back and errors."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import xlrepro
from xlrepro.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("### Python API (notebooks)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    pytest.importorskip("pandas")
    cwd = tmp_path_factory.mktemp("nb")
    ns: dict = {}
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        exec(compile(readme_example(), str(README), "exec"), ns)
    finally:
        os.chdir(old)
    return cwd, ns


@pytest.mark.slow
def test_the_readme_example_runs_and_reads_results_back(notebook):
    cwd, ns = notebook
    out = cwd / "results" / "notebook"
    assert (out / "results.json").exists() and (out / "results.csv").exists() and (out / "report.md").exists()
    df = ns["df"]
    xnli = df[(df.task == "xnli") & (df.metric == "accuracy")]
    assert sorted(xnli.language) == ["en", "tr", "vi", "zh"]
    assert set(df.task) == {"xnli", "tatoeba"} and (df.seed == ns["cfg"].seed).all()
    import pandas as pd

    csv = pd.read_csv(out / "results.csv")
    key = ["task", "language", "split", "metric", "run", "run_hash", "value", "seed", "config_hash"]
    assert sorted(map(tuple, csv[key].values.tolist())) == sorted(map(tuple, df[key].values.tolist()))
    # the phase call skipped the finished run and returned exactly its records
    phase = ns["xnli"]
    assert phase.records and {r["task"] for r in phase.records} == {"xnli"}
    assert sorted((r["language"], r["metric"], r["value"]) for r in phase.records) == sorted(
        (r["language"], r["metric"], r["value"]) for r in ns["results"].records if r["task"] == "xnli"
    )
    assert len(phase.runs) == 1 and next(iter(phase.runs.values()))["kind"] == "target"
    assert isinstance(ns["later"], list) and len(ns["later"]) == len(df) and isinstance(ns["later"][0], dict)


@pytest.mark.slow
def test_one_phase_alone_and_errors(notebook, tmp_path):
    cwd, ns = notebook
    cfg = ns["cfg"]
    pre = xlrepro.run_phase(cfg, "pretrain", out=cwd / "results" / "notebook")
    assert [v["kind"] for v in pre.runs.values()] == ["pretrain"] and pre.records == []
    with pytest.raises(ConfigError, match="phase 'finetune' is not one of"):
        xlrepro.run_phase(cfg, "finetune", out=tmp_path)
    with pytest.raises(ConfigError, match="needs task="):
        xlrepro.run_phase(cfg, "target", out=tmp_path)
    with pytest.raises(ConfigError, match="unknown task 'xnlii'.*xnli"):
        xlrepro.run_phase(cfg, "target", task="xnlii", out=tmp_path)
    with pytest.raises(ConfigError, match="results.json: missing"):
        xlrepro.load_results(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="unknown key"):
        xlrepro.load_config("smoke", {"target.trian.lr": 1e-5})


def test_overrides_as_python_values_keep_their_types():
    cfg = xlrepro.load_config(
        "smoke", {"target.train.lr": 2e-5, "target.tasks": ["xnli"], "description": "1e-5", "model.tokenizer": None}
    )
    assert cfg.target.train.lr == 2e-5 and cfg.target.tasks == ["xnli"] and cfg.description == "1e-5"
    assert cfg.model.tokenizer is None
    assert xlrepro.load_config("smoke", ["target.train.lr=3e-5"]).target.train.lr == 3e-5


def test_importing_xlrepro_stays_light():
    code = (
        "import sys, xlrepro; xlrepro.load_config; "
        "print(sorted(m for m in ('torch', 'pandas', 'tensorboard', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
