"""The pieces moved down so that the lower layers import nothing above them (CONTRIBUTING.md):
each keeps its behaviour in its new place."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from xlrepro import config, config_checks
from xlrepro.data.types import SpanQAExample, qa_ids
from xlrepro.errors import ConfigError, DataFormatError
from xlrepro.formats import pad_sequences, squad_data
from xlrepro.optim import atomic_torch_save, safe_load
from xlrepro.tasks import all_tasks
from xlrepro.tasks.registry import check_study_fields


def test_dual_encoder_tasks_come_from_the_registry_and_match_the_dual_encoder():
    from xlrepro import dual_encoder

    assert config_checks.dual_encoder_tasks(all_tasks()) == ("lareqa", "mewslix")
    # until dual_encoder.py imports them from below, its copies must agree
    assert tuple(dual_encoder.DUAL_ENCODER_TASKS) == config_checks.dual_encoder_tasks(all_tasks())
    assert tuple(dual_encoder.ENCODER_SOURCES) == config.ENCODER_SOURCES


def test_retrieval_encoder_checks_still_name_the_dual_encoder_tasks():
    cfg = config.load_config("smoke", check=False)
    cfg.retrieval.encoder = {"lareqa": "intermediate", "tatoeba": "nonsense"}
    cfg.retrieval.dual_encoder.per_task = {"tatoeba": {}}
    found = "\n".join(config.problems(cfg))
    assert "retrieval.encoder.lareqa: the encoder choice applies to BUCC/Tatoeba-style" in found
    assert (
        "retrieval.encoder.tatoeba: 'nonsense' is not one of ['intermediate', 'squad_mrc', 'squad_dual_encoder']"
        in found
    )
    assert "retrieval.dual_encoder.per_task: 'tatoeba' is not a dual-encoder task ['lareqa', 'mewslix']" in found


def _task(recipe):
    return types.SimpleNamespace(recipe=recipe, retrieval={})


def test_recipe_keys_are_checked_against_the_training_settings():
    fields = [f.name for f in dataclasses.fields(config.TrainConfig)]
    tasks = {
        "good": _task({"xtreme_r": {"lr": 1e-5, "source": "s"}}),
        "bad": _task({"xtreme_r": {"learning_rate": 1e-5, "source": "s"}}),
    }
    (msg,) = config_checks.recipe_problems(tasks, fields)
    assert msg.startswith("xlrepro/tasks/bad.yaml: recipe.xtreme_r.learning_rate: not a training setting")
    # every shipped task's recipe names training settings
    assert config_checks.recipe_problems(all_tasks(), fields) == []


def test_config_problems_report_a_registry_recipe_key_that_is_not_a_training_setting(monkeypatch):
    tasks = dict(all_tasks())
    tasks["xnli"] = dataclasses.replace(all_tasks()["xnli"], recipe={"xtreme_r": {"lrate": 1, "source": "s"}})
    monkeypatch.setattr(config, "all_tasks", lambda: tasks)
    found = config.problems(config.load_config("smoke", check=False))
    assert any(p.startswith("xlrepro/tasks/xnli.yaml: recipe.xtreme_r.lrate: not a training setting") for p in found)


def test_the_registry_checks_the_shape_of_its_study_fields_without_the_config():
    check_study_fields(
        {
            "recipe": {"xtreme_r": {"lr": 1, "source": "x"}},
            "train_size": {"examples": 3, "source": "s"},
            "domain": {"xtreme_r": "shifted", "reason": "r"},
        },
        "t.yaml",
    )
    with pytest.raises(ConfigError, match="t.yaml: recipe.xtreme: not one of"):
        check_study_fields({"recipe": {"xtreme": {"source": "x"}}}, "t.yaml")
    with pytest.raises(ConfigError, match="recipe.jiant: expected a mapping of training settings with a 'source'"):
        check_study_fields({"recipe": {"jiant": {"lr": 1}}}, "t.yaml")
    with pytest.raises(ConfigError, match="train_size: expected"):
        check_study_fields({"train_size": {"examples": "many", "source": "x"}}, "t.yaml")
    with pytest.raises(ConfigError, match="domain.xtreme_r: 'new' is not one of"):
        check_study_fields({"domain": {"xtreme_r": "new", "reason": "r"}}, "t.yaml")


def test_train_config_for_merges_the_per_task_overrides():
    cfg = config.load_config("smoke", check=False)
    cfg.target.per_task = {"xnli": {"lr": 0.5}}
    assert config.train_config_for(cfg, "xnli").lr == 0.5
    assert config.train_config_for(cfg, "pawsx").lr == cfg.target.train.lr
    assert isinstance(config.train_config_for(cfg, "xnli"), config.TrainConfig)


def _qa(guid):
    return SpanQAExample(guid=guid, question="q?", context="c", answers=[])


def test_qa_ids_and_squad_data_live_below_formats_and_submission():
    from xlrepro import submission

    ex = [_qa("a"), _qa("b")]
    assert qa_ids(ex, None) == ["a", "b"]
    assert submission.qa_ids is qa_ids
    raw = squad_data(ex)
    assert qa_ids(ex, raw) == ["a", "b"]
    with pytest.raises(ValueError, match="occurs twice"):
        qa_ids([_qa("a"), _qa("a")], None)


def test_pad_sequences_right_pads():
    assert pad_sequences([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]


def test_checkpoints_are_written_atomically_and_loaded_tensors_only(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_torch_save({"w": torch.ones(2), "step": 3}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind
    assert safe_load(path)["step"] == 3
    torch.save({"f": types.SimpleNamespace(a=1)}, tmp_path / "bad.pt")
    with pytest.raises(DataFormatError, match="refused to load this checkpoint"):
        safe_load(tmp_path / "bad.pt")


def test_ops_status_is_public_in_the_ops_package():
    from xlrepro import info, ops

    status = ops.status()
    assert {"extension_loaded", "reason", "build", "ops", "screens"} <= set(status)
    assert set(status["ops"]) == set(ops.families())
    assert info.ops_status()["ops"].keys() == status["ops"].keys()


def test_the_metric_mode_lives_with_the_metrics_and_the_phases_and_items_score_in_it():
    from xlrepro import items, metrics, phases
    from xlrepro.phases import context

    assert metrics.METRIC_MODE == "official"
    assert phases.METRIC_MODE is context.METRIC_MODE is items.METRIC_MODE is metrics.METRIC_MODE


def test_statistics_and_the_smoke_contrast_sit_below_the_study():
    from xlrepro import contrast, items, report, stats

    assert items.detect_collapse is stats.detect_collapse
    assert report.contrast is contrast.contrast and report.section is contrast.section
    assert contrast.chance_level("xnli") == 100 / 3
