"""Config validation lists every problem at once: ranges and types of every field, languages, QA
windows, the retrieval layer against the encoder's depth, the training engine's packages."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing

import pytest

from xlrepro import config as config_mod, config_checks
from xlrepro.cli import main
from xlrepro.config import load_config, problems
from xlrepro.errors import ConfigError


def _problems_of(overrides):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides)
    return e.value.problems


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("target.train.lr=-1e-5", "target.train.lr", "a number in (0, 1]"),
        ("target.train.batch_size=0", "target.train.batch_size", "an integer in [1, inf)"),
        ("target.train.grad_accum=0", "target.train.grad_accum", "an integer in [1, inf)"),
        ("target.eval_batch_size=0", "target.eval_batch_size", "an integer in [1, inf)"),
        ("target.train.eval_batch_size=0", "target.train.eval_batch_size", "an integer in [1, inf) or null"),
        ("target.train.epochs=-3", "target.train.epochs", "a number in (0, inf)"),
        ("pretrain.steps=-5", "pretrain.steps", "an integer in [0, inf)"),
        ("target.train.warmup_proportion=7", "target.train.warmup_proportion", "a number in [0, 1]"),
        ("intermediate.train.lr=.nan", "intermediate.train.lr", "a number in (0, 1]"),
        ("target.per_task.xnli.epochs=0", "target.per_task.xnli.epochs", "a number in (0, inf)"),
        (
            "retrieval.dual_encoder.per_task.mewslix.patience=0",
            "retrieval.dual_encoder.per_task.mewslix.patience",
            "an integer in [1, inf)",
        ),
        ("smoke.code_switch=1.5", "smoke.code_switch", "a number in [0, 1]"),
        ("seed=-1", "seed", "an integer in [0, 4294967295]"),
        ("retrieval.dual_encoder.logit_scale=0", "retrieval.dual_encoder.logit_scale", "a number in (0, inf)"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_allowed_range(override, key, allowed):
    found = _problems_of([override])
    assert len(found) == 1, found
    assert f": {key}: expected {allowed}, got" in found[0]


def test_every_numeric_field_has_a_range():
    """A new numeric field without a range would be accepted unchecked."""
    for cls in (
        config_mod.ExperimentConfig,
        config_mod.ModelConfig,
        config_mod.TrainConfig,
        config_mod.IntermediateConfig,
        config_mod.TargetConfig,
        config_mod.DualEncoderConfig,
        config_mod.RetrievalConfig,
        config_mod.PretrainConfig,
        config_mod.SmokeConfig,
    ):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            args = set(typing.get_args(hints[f.name])) or {hints[f.name]}
            if args & {int, float}:
                assert f.name in config_checks.RANGES[cls.__name__], f"{cls.__name__}.{f.name} has no range"


def test_all_problems_are_listed_at_once_types_included():
    found = _problems_of(
        [
            "target.train.lr=-1",
            "target.train.batch_size=0",
            "seed=one",
            "pretrain.steps=-5",
            "target.train.trian=1",
            "retrieval.pooling=sum",
        ]
    )
    text = "\n".join(found)
    for needle in (
        "target.train.lr: expected",
        "target.train.batch_size: expected",
        "seed: expected an integer",
        "pretrain.steps: expected",
        "target.train.trian: unknown key",
        "retrieval.pooling: 'sum'",
    ):
        assert needle in text, text
    assert len(found) == 6


def test_problems_is_empty_for_a_valid_config_and_lists_without_raising():
    cfg = load_config("smoke")
    assert problems(cfg) == []
    bad = dataclasses.replace(cfg, target=dataclasses.replace(cfg.target, eval_batch_size=0))
    assert problems(bad) == ["target.eval_batch_size: expected an integer in [1, inf), got 0"]


def test_a_language_no_task_has_is_an_error_naming_the_valid_ones():
    found = _problems_of(["data.languages=[trr]"])
    assert len(found) == 1
    assert "data.languages: 'trr' is not evaluated by any task of this config" in found[0]
    assert "did you mean 'tr'" in found[0] and "(valid: en, tr, vi, zh)" in found[0]
    # a real language that none of the config's tasks evaluates (the smoke world has en tr vi zh)
    assert "'de' is not evaluated" in _problems_of(["data.languages=[en, de]"])[0]
    assert "at least one language" in _problems_of(["data.languages=[]"])[0]
    assert load_config("smoke", ["data.languages=[en, tr]"]).data.languages == ["en", "tr"]


def test_language_validity_follows_the_recipe_benchmark(tmp_path):
    """Romanian is in XQuAD for XTREME-R only; an XTREME recipe does not evaluate it."""
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nseed: 1\ntarget: {tasks: [xquad]}\ndata: {languages: [ro]}\n")
    with pytest.raises(ConfigError, match="'ro' is not evaluated"):
        load_config(str(p))
    assert load_config(str(p), ["retrieval.benchmark=xtreme_r"]).data.languages == ["ro"]


def test_qa_window_must_hold_the_question_and_the_stride():
    found = _problems_of(["target.per_task.xquad.doc_stride=100"])
    assert (
        found == [found[0]]
        and "target.per_task.xquad: xquad: doc_stride = 100 must be smaller than "
        "max_seq_length - max_query_length - 4 = 128 - 32 - 4 = 92"
        in found[0]
    )
    assert "doc_stride" in _problems_of(["target.per_task.mlqa.max_query_length=124"])[0]


def test_retrieval_layer_beyond_the_depth_of_the_smoke_model():
    found = _problems_of(["retrieval.layer=4"])
    assert len(found) == 1 and "retrieval.layer: 4 is beyond the encoder's depth" in found[0]
    assert "0..3" in found[0] and "model.init_config" in found[0]
    assert load_config("smoke", ["retrieval.layer=3"]).retrieval.layer == 3


def test_retrieval_layer_and_lengths_from_a_local_model_folder(tmp_path):
    model = tmp_path / "xlmr"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 24, "max_position_embeddings": 514}))
    p = tmp_path / "c.yaml"
    p.write_text(
        f"name: x\nseed: 1\nmodel: {{name_or_path: {model}}}\nretrieval: {{tasks: [tatoeba], layer: 25, "
        f"max_seq_length: 600}}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    text = "\n".join(e.value.problems)
    assert "retrieval.layer: 25 is beyond the encoder's depth: hidden_states has layers 0..24" in text
    assert f"{model}/config.json" in text
    assert "retrieval.max_seq_length: 600 tokens exceed the encoder's 512 positions" in text
    assert load_config(str(p), ["retrieval.layer=14", "retrieval.max_seq_length=512"]).retrieval.layer == 14


def test_a_missing_deepspeed_is_caught_at_validation(monkeypatch):
    config_checks.import_problem.cache_clear()
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import deepspeed -> ImportError
    try:
        found = _problems_of(["target.train.engine=deepspeed", "target.train.deepspeed=zero2"])
    finally:
        config_checks.import_problem.cache_clear()
    assert len(found) == 1
    assert "target.train.engine: 'deepspeed' needs the deepspeed package, which does not import here" in found[0]
    assert "set target.train.engine=torch" in found[0]


def test_cli_prints_every_problem_as_an_error_line_exit_2(capsys):
    code = main(
        ["config", "validate", "smoke", "target.train.lr=-1", "target.train.batch_size=0", "data.languages=[trr]"]
    )
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(l.startswith("xlrepro: error: ") for l in lines), err
    assert "Traceback" not in err
