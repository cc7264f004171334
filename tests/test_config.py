import pytest

from xlrepro.config import (
    ExperimentConfig,
    config_hash,
    from_dict,
    load_config,
    shipped_configs,
    to_dict,
    train_config_for,
)
from xlrepro.errors import ConfigError


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_every_shipped_config_is_valid(name):
    cfg = load_config(name)
    assert isinstance(cfg, ExperimentConfig)
    assert isinstance(cfg.seed, int)
    # round trip: the resolved config rebuilds the same config (and hash)
    again = from_dict(ExperimentConfig, to_dict(cfg))
    assert config_hash(again) == config_hash(cfg)


def test_unknown_keys_are_rejected_with_a_suggestion(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nseed: 1\ntarget:\n  trian: {lr: 1.0e-5}\n")
    with pytest.raises(ConfigError, match=r"target.trian: unknown key \(did you mean 'train'\?\)"):
        load_config(str(p))
    with pytest.raises(ConfigError, match=r"unknown key 'lrr' \(did you mean 'lr'\?\)"):
        load_config("smoke", ["target.train.lrr=1"])
    with pytest.raises(ConfigError, match="unknown task 'xnl'.*did you mean 'xnli'"):
        load_config("smoke", ["target.tasks=[xnl]"])


def test_seed_is_required(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\n")
    with pytest.raises(ConfigError, match="seed: required"):
        load_config(str(p))


def test_dotted_overrides_are_typed():
    cfg = load_config(
        "smoke",
        [
            "target.train.lr=2e-5",
            "target.train.volume=100",
            "seed=7",
            "target.per_task.xnli.epochs=1",
            "data.languages=[en, tr]",
        ],
    )
    assert cfg.target.train.lr == 2e-5 and cfg.target.train.volume == 100 and cfg.seed == 7
    assert train_config_for(cfg, "xnli").epochs == 1.0
    assert train_config_for(cfg, "mnli").epochs == cfg.target.train.epochs  # no per_task entry
    assert cfg.data.languages == ["en", "tr"]
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("smoke", ["seed=one"])
    with pytest.raises(ConfigError, match="expected a number"):
        load_config("smoke", ["target.train.lr=fast"])
    with pytest.raises(ConfigError, match="expected an integer or 'all'"):
        load_config("smoke", ["target.train.volume=most"])
    with pytest.raises(ConfigError, match=r"per_task.xnli.epoch: unknown key \(did you mean 'epochs'\?\)"):
        load_config("smoke", ["target.per_task.xnli.epoch=1"])


def test_enums_and_task_formats_are_checked():
    with pytest.raises(ConfigError, match="'sum' is not one of"):
        load_config("smoke", ["retrieval.pooling=sum"])
    with pytest.raises(ConfigError, match="is a retrieval task"):
        load_config("smoke", ["target.tasks=[tatoeba]", "controls=[]"])
    with pytest.raises(ConfigError, match="multiple-choice or tagging task; 'xquad' is span_qa"):
        load_config("smoke", ["controls=[xquad]"])
    with pytest.raises(ConfigError, match="is not one of target.tasks"):
        load_config("smoke", ["controls=[udpos]", "target.tasks=[xnli]"])
    load_config("smoke", ["controls=[udpos]"])  # a tagging task's labels can be shuffled (across tokens)


def test_hash_changes_with_any_value():
    a = load_config("smoke")
    b = load_config("smoke", ["target.train.lr=5e-5"])
    assert config_hash(a) != config_hash(b)
    assert config_hash(a) == config_hash(load_config("smoke"))
