"""Pinning Hub sources: resolution rules, the in-place edit of task files, the CLI's dry run."""

import json
import shutil
from types import SimpleNamespace

import pytest
import yaml

from xlrepro.cli import main
from xlrepro.data import pin as pinmod
from xlrepro.errors import ConfigError
from xlrepro.tasks import all_tasks
from xlrepro.tasks.registry import _parse

MAIN = "a" * 40
CONV = "b" * 40


class FakeApi:
    """Answers like huggingface_hub.HfApi for three kinds of repository."""

    def __init__(self):
        self.calls = []
        self.repos = {
            "org/parquet": (["README.md", "data/train-00000.parquet", "data/test-00000.parquet"], None),
            "org/script": (["README.md", "script.py"], CONV),
            "org/empty": (["README.md", ".gitattributes"], None),
        }

    def dataset_info(self, repo):
        self.calls.append(("info", repo))
        return SimpleNamespace(sha=MAIN)

    def list_repo_files(self, repo, repo_type, revision):
        assert repo_type == "dataset" and revision == MAIN
        return self.repos[repo][0]

    def list_repo_refs(self, repo, repo_type):
        conv = self.repos[repo][1]
        converts = [SimpleNamespace(name="parquet", ref=pinmod.PARQUET_REF, target_commit=conv)] if conv else []
        return SimpleNamespace(converts=converts, branches=[])


def test_main_with_data_files_is_pinned_to_its_commit():
    assert pinmod.resolve_repo(FakeApi(), "org/parquet")[:2] == (MAIN, "main")


def test_a_script_only_repo_is_pinned_to_its_parquet_conversion():
    rev, ref, note = pinmod.resolve_repo(FakeApi(), "org/script")
    assert (rev, ref) == (CONV, pinmod.PARQUET_REF) and "script.py" in note


def test_a_repo_without_data_or_conversion_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="org/empty.*no data files.*refs/convert/parquet"):
        pinmod.resolve_repo(FakeApi(), "org/empty")


def _spec(repo, revision=None, name="t"):
    return SimpleNamespace(name=name, hub=SimpleNamespace(repo=repo, revision=revision))


def test_plan_resolves_each_repo_once_and_skips_pinned_unless_repin():
    api = FakeApi()
    tasks = {
        "a": _spec("org/parquet"),
        "b": _spec("org/parquet"),
        "c": _spec("org/script", "c" * 40),
        "d": SimpleNamespace(name="d", hub=None),
    }
    pins = pinmod.plan(tasks, api)
    assert [(p.task, p.revision) for p in pins] == [("a", MAIN), ("b", MAIN)]
    assert api.calls == [("info", "org/parquet")]
    pins = pinmod.plan(tasks, FakeApi(), repin=True)
    assert [(p.task, p.revision, p.current) for p in pins][-1] == ("c", CONV, "c" * 40)
    with pytest.raises(ConfigError, match="unknown task"):
        pinmod.plan(tasks, api, only=["nope"])


def test_write_pin_edits_only_the_revision_line_and_keeps_comments(tmp_path):
    src = pinmod.task_file("xnli")
    path = tmp_path / "xnli.yaml"
    shutil.copy(src, path)
    before = path.read_text().splitlines()
    pinmod.write_pin(path, pinmod.Pin("xnli", "facebook/xnli", None, MAIN, "main"), today="2026-11-25")
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1
    assert changed[0][1].strip() == f'revision: "{MAIN}"  # main on 2026-11-25'
    data = yaml.safe_load(path.read_text())
    assert data["hub"]["revision"] == MAIN
    assert _parse(data, str(path)).hub.revision == MAIN  # the registry accepts it
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_pin_refuses_a_file_without_a_hub_revision_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nhub:\n  repo: org/x\nlayouts: []\n")
    with pytest.raises(ConfigError, match="x.yaml: no 'revision:' line"):
        pinmod.write_pin(path, pinmod.Pin("x", "org/x", None, MAIN, "main"))
    assert path.read_text() == "name: x\nhub:\n  repo: org/x\nlayouts: []\n"


def test_registry_rejects_a_revision_that_is_not_a_commit():
    data = yaml.safe_load(pinmod.task_file("xnli").read_text())
    data["hub"]["revision"] = "main"
    with pytest.raises(ConfigError, match="hub.revision: expected a 40-hex commit SHA.*'main'"):
        _parse(data, "xlrepro/tasks/xnli.yaml")


def test_status_lists_every_hub_source_and_strict_fails_while_any_is_unpinned(capsys):
    rows = {r["task"]: r for r in pinmod.status(all_tasks())}
    assert rows["anli_plus"]["pinned"] is None  # composite: read through its components
    assert main(["data", "status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["task"] for r in out} == set(all_tasks())
    unpinned = [r for r in out if r["pinned"] is False]
    assert main(["data", "status", "--strict"]) == (1 if unpinned else 0)


def test_pin_refuses_to_run_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "pin"]) == 2
    assert "needs the Hub" in capsys.readouterr().err


def test_pin_reports_an_unreachable_hub_in_one_line(monkeypatch, capsys):
    import huggingface_hub

    class Down:
        def dataset_info(self, repo):
            raise RuntimeError("Name or service not known")  # stands in for httpx.ConnectError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", Down)
    assert main(["data", "pin", "--task", "xnli"]) == 2
    err = capsys.readouterr().err
    assert "did not answer a revision query" in err and "RuntimeError" in err
