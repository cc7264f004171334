"""Results on shared file systems follow the process umask: the encoder hand-off (transformers
writes model.safetensors 0600) and the smoke world (mkstemp/mkdtemp: 0600/0700)."""

from __future__ import annotations

import os
import stat

import pytest

from xlrepro import fsmode


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _modes(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.stat(p).st_mode)
    return out


def test_process_umask_is_read_without_changing_it(umask_027):
    assert fsmode.process_umask() == 0o027
    assert fsmode.file_mode() == 0o640 and fsmode.dir_mode() == 0o750
    assert fsmode.process_umask() == 0o027


def test_encoder_handoff_follows_the_umask(tmp_path, umask_027):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xlrepro.model import save_encoder

    enc = XLMRobertaModel(
        XLMRobertaConfig(
            vocab_size=20,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
            max_position_embeddings=12,
        ),
        add_pooling_layer=False,
    )
    model = type("M", (), {"encoder": enc, "heads": {}})()
    save_encoder(model, tmp_path / "encoder", {"run": "x"})
    modes = _modes(tmp_path)
    assert modes["encoder/model.safetensors"] == 0o640, {k: oct(v) for k, v in modes.items()}
    assert set(modes.values()) <= {0o640, 0o750}, {k: oct(v) for k, v in modes.items()}


def test_smoke_world_follows_the_umask(tmp_path, umask_027):
    from xlrepro.smoke.world import generate

    generate(tmp_path / "world", ["en", "tr"], seed=1, n_train=20, n_dev=10, n_test=10, n_corpus=30)
    assert stat.S_IMODE(os.stat(tmp_path / "world").st_mode) == 0o750
    modes = _modes(tmp_path / "world")
    assert modes["WORLD.json"] == 0o640
    bad = {k: oct(v) for k, v in modes.items() if v not in (0o640, 0o750)}
    assert not bad, bad
