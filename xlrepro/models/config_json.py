"""A model's ``config.json`` without the network: a local folder's, or the Hugging Face cache's copy."""

from __future__ import annotations

import json
from pathlib import Path


def model_config_json(model_cfg) -> dict | None:
    """The encoder's ``config.json``: from a local folder, or from the Hugging Face cache of a Hub
    id (no network); None when neither has it."""
    folder = Path(model_cfg.name_or_path)
    path = folder / "config.json" if folder.is_dir() else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model_cfg.name_or_path, "config.json", revision=model_cfg.revision)
            path = Path(hit) if isinstance(hit, str) else None
        except Exception:  # noqa: BLE001 - not a valid repo id, no cache
            path = None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        from xlrepro.errors import DataFormatError

        raise DataFormatError(path, f"not a readable JSON model config ({e})") from None
    return data if isinstance(data, dict) else None
