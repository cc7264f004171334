import json
import subprocess
import sys
from pathlib import Path

import pytest


def xlrepro(*args, check=True):
    return subprocess.run([sys.executable, "-m", "xlrepro", *args], capture_output=True, text=True, check=check)


def test_info_json_explains_the_build():
    d = json.loads(xlrepro("info", "--json").stdout)
    assert d["extension_loaded"] is True
    assert d["build"]["extension"] in ("cpu", "cuda") and d["build"]["torch_version"] == d["torch"]
    cpu = d["ops"]["masked_mean_pool"]["cpu"]
    assert cpu["selected"] == "cpp"
    assert cpu["backends"]["cuda"]["reasons"] == ["device cpu not supported"]
    text = xlrepro("info").stdout
    assert "extension xlrepro._C: loaded" in text and "masked_mean_pool" in text


def test_info_reports_deepspeed_and_its_compiled_ops(tmp_path, monkeypatch):
    from importlib import metadata

    from xlrepro import info as info_mod

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda n: "0.19.8" if n == "deepspeed" else real(n))
    for folder in (
        "deepspeed_shm_comm",
        "py311_cpu/cpu_adam",
    ):  # $TORCH_EXTENSIONS_DIR/<op>/ (or torch's default layout)
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / f"{Path(folder).name}.so").write_bytes(b"")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    ds = info_mod.deepspeed_status()
    assert ds == {
        "version": "0.19.8",
        "torch_extensions_dir": str(tmp_path),
        "compiled_ops": ["cpu_adam", "deepspeed_shm_comm"],
    }
    text = info_mod.format_info({**info_mod.info(), "deepspeed": ds})
    assert f"deepspeed 0.19.8: compiled ops cpu_adam, deepspeed_shm_comm in TORCH_EXTENSIONS_DIR={tmp_path}" in text
    monkeypatch.setattr(metadata, "version", lambda n: (_ for _ in ()).throw(metadata.PackageNotFoundError(n)))
    assert info_mod.deepspeed_status() == {"version": None}


def test_the_deepspeed_launchers_local_rank_argument_is_accepted_and_checked(monkeypatch, capsys):
    from xlrepro.cli import main

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["--local_rank=1", "tasks", "--json"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--local_rank=0", "tasks", "--json"])
    assert "--local_rank=0 disagrees with LOCAL_RANK=1" in capsys.readouterr().err


def test_tasks_json_lists_the_registry():
    rows = {r["name"]: r for r in json.loads(xlrepro("tasks", "--json").stdout)}
    assert rows["xnli"]["english_training_source"] == "mnli" and len(rows["xnli"]["languages"]["test"]) == 15
    assert rows["xquad"]["english_training_source"] == "squad"
    assert rows["tatoeba"]["format"] == "retrieval"


def test_config_errors_exit_2_with_a_message():
    r = xlrepro("config", "validate", "smoke", "target.train.lrr=1", check=False)
    assert r.returncode == 2 and "did you mean 'lr'" in r.stderr
    r = xlrepro("config", "validate", "smok", check=False)
    assert r.returncode == 2 and "did you mean 'smoke'" in r.stderr
    assert xlrepro("config", "validate", "smoke").stdout.strip() == "smoke: valid"


def test_score_reads_the_submission_layout(tmp_path):
    from xlrepro.tasks import get_task

    langs = get_task("xnli").languages("xtreme")
    for folder, first in (("pred", "entailment"), ("gold", "entailment")):
        (tmp_path / folder / "xnli").mkdir(parents=True)
        for i, lang in enumerate(langs):
            # predictions: one of 2 right for the first language, both right elsewhere
            second = "neutral" if (folder == "gold" or i > 0) else "contradiction"
            (tmp_path / folder / "xnli" / f"test-{lang}.tsv").write_text(f"{first}\n{second}\n")
    out = json.loads(
        xlrepro(
            "score", "--predictions", str(tmp_path / "pred"), "--labels", str(tmp_path / "gold"), "--version", "xtreme"
        ).stdout
    )
    text = json.dumps(out)
    assert "xnli" in text
    # mean over the 15 languages: (50 + 14 x 100) / 15
    assert f"{(50 + 14 * 100) / 15:.6f}"[:7] in text


def test_config_list_names_every_shipped_config_and_spec():
    from xlrepro.config import shipped_configs
    from xlrepro.study.spec import shipped_specs

    r = xlrepro("config", "list")
    rows = [line.split(None, 2) for line in r.stdout.splitlines()]
    assert all(len(row) == 3 and row[2].strip() for row in rows), r.stdout  # kind, name, a description
    assert {row[1] for row in rows if row[0] == "config"} == set(shipped_configs()) >= {"smoke"}
    assert {row[1] for row in rows if row[0] == "spec"} == set(shipped_specs()) >= {"scaling-smoke"}
    by_name = {row[1]: row[2] for row in rows}
    assert by_name["smoke"].startswith("Smoke-scale run of the whole pipeline")  # its description: field
    assert by_name["xstilts-multitask"].startswith("Phang et al. 2020, multi-task")  # first comment sentence
    # every listed name is one that `xlrepro reproduce <name>` (whose help points at the list) loads
    from xlrepro.config import load_config
    from xlrepro.study.spec import load_spec

    for kind, name, _ in rows:
        assert (load_config(name) if kind == "config" else load_spec(name)).name == name
    bad = xlrepro("config", "show", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("xlrepro: error:") and "config list" in bad.stderr
    assert "Traceback" not in bad.stderr
