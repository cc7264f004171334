"""Encoder families: what differs between XLM-R, mBERT and any other encoder the pipeline runs.

``model.family`` (config) names one of ``FAMILIES``; each family module (``xlmr``, ``bert``)
holds one ``xlrepro.models.base.Family``: build (from ``model.init_config``), load (a local
folder or Hub id), the masked-LM model and head, the positions of packed tokens (the packed
forward itself is ``xlrepro.packing``, shared by the post-LN families), the pooling of the
classification heads, and the parameter count of a config. docs/models.md says how to add one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the family modules import torch; the names below must stay cheap (config.py)
    from xlrepro.models.base import Family

FAMILY_MODULES = {"xlmr": "xlrepro.models.xlmr", "bert": "xlrepro.models.bert"}
FAMILIES = tuple(FAMILY_MODULES)
AUTO = "auto"  # model.family: auto = from the model folder's config.json model_type


def get_family(name: str, key: str = "model.family") -> Family:
    """The family called ``name``; a ``ConfigError`` naming ``key`` otherwise."""
    import importlib

    if name not in FAMILY_MODULES:
        from xlrepro.errors import ConfigError, did_you_mean

        raise ConfigError(f"{key}: {name!r} is not one of {list(FAMILIES)}{did_you_mean(str(name), FAMILIES)}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def families() -> list[Family]:
    return [get_family(n) for n in FAMILIES]


def family_for_model_type(model_type, where: str = "config.json") -> Family:
    """The family whose models have this config.json ``model_type``."""
    for fam in families():
        if model_type in fam.model_types:
            return fam
    from xlrepro.errors import ConfigError

    known = {t: f.name for f in families() for t in f.model_types}
    raise ConfigError(
        f"{where}: model_type {model_type!r} belongs to no encoder family of xlrepro (known model types: {known})"
    )


def family_of(encoder) -> Family:
    """The family of a built or loaded encoder (by its config's ``model_type``)."""
    return family_for_model_type(getattr(encoder.config, "model_type", None), type(encoder).__name__ + ".config")


def family_of_folder(path: str | Path) -> Family:
    """The family of a saved model folder, by the ``model_type`` of its config.json."""
    import json

    p = Path(path) / "config.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        from xlrepro.errors import DataFormatError

        raise DataFormatError(p, f"not a readable JSON model config ({e})") from None
    return family_for_model_type(data.get("model_type") if isinstance(data, dict) else None, str(p))


def published_config(name_or_path: str) -> tuple[Family, dict] | None:
    """(family, published config) of a Hub id some family knows by name (the part after the
    organisation: FacebookAI/xlm-roberta-large -> xlm-roberta-large), else None."""
    name = str(name_or_path).rstrip("/").split("/")[-1]
    for fam in families():
        if name in fam.published_configs:
            return fam, dict(fam.published_configs[name])
    return None


def resolve_family(model_cfg) -> Family:
    """The family of ``model.family``; ``auto`` reads the ``model_type`` of the model's
    config.json (a local folder, or the Hugging Face cache of a Hub id), else the published
    config of a known Hub id."""
    name = getattr(model_cfg, "family", "xlmr")
    if name != AUTO:
        return get_family(name)
    from xlrepro.errors import ConfigError

    if model_cfg.init_config is not None:
        raise ConfigError(
            "model.family: 'auto' needs a model to read config.json from; a model built from "
            f"model.init_config names its family: one of {list(FAMILIES)}"
        )
    from xlrepro.models.config_json import model_config_json

    config = model_config_json(model_cfg)
    if config is not None:
        return family_for_model_type(config.get("model_type"), f"{model_cfg.name_or_path}/config.json")
    known = published_config(model_cfg.name_or_path)
    if known is not None:
        return known[0]
    raise ConfigError(
        f"model.family: 'auto' found no config.json for {model_cfg.name_or_path!r} (not a local "
        f"folder, not in the Hugging Face cache); name the family: one of {list(FAMILIES)}"
    )


def config_dict(model_cfg, vocab_size: int | None = None) -> tuple[Family, dict]:
    """(family, the encoder's full config as a dict) without the network: ``model.init_config``
    over the family's defaults (``vocab_size`` if given), a local folder's or the Hugging Face
    cache's config.json, or a known Hub id's published config. ``KeyError`` if none is known."""
    fam = resolve_family(model_cfg)
    if model_cfg.init_config is not None:
        c = {**fam.default_config(), **model_cfg.init_config}
        if vocab_size:
            c["vocab_size"] = vocab_size
        return fam, c
    from xlrepro.models.config_json import model_config_json

    config = model_config_json(model_cfg)
    if config is not None:
        return fam, config
    known = published_config(model_cfg.name_or_path)
    if known is not None and known[0] is fam:
        return fam, known[1]
    raise KeyError(
        f"model {model_cfg.name_or_path!r}: parameter count unknown (no config.json in a local folder "
        f"or the Hugging Face cache, and not a published config of the {fam.name} family: "
        f"{sorted(fam.published_configs)}); give a local model folder"
    )


def param_count(model_cfg, vocab_size: int | None = None) -> tuple[int, int]:
    """(encoder parameters, largest tensor) of the configured model, from its config (``config_dict``)."""
    fam, c = config_dict(model_cfg, vocab_size)
    where = "model.init_config" if model_cfg.init_config is not None else f"{model_cfg.name_or_path}/config.json"
    return fam.param_count(c, where)
