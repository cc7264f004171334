"""Shared helpers for :mod:`xlrepro.metrics` (mode checking, source strings, metric-key rules).

Nothing here is part of the public API; the public names are re-exported by
``xlrepro/metrics/__init__.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The google-research/xtreme commit whose scorers the ``official`` mode reproduces.
OFFICIAL_COMMIT = "838c13b6"
OFFICIAL_REPO = "google-research/xtreme"

OFFICIAL = "official"
CORRECTED = "corrected"
SEQEVAL_1X = "seqeval_1x"
DEFAULT_MODES = (OFFICIAL, CORRECTED)

#: Keys that the official ``evaluate.py`` averages over languages (``avg_<key>``).
_PLAIN_METRIC_KEYS = frozenset({"accuracy", "f1", "precision", "recall", "exact_match"})
_MAP_KEY = re.compile(r"map(@\d+)?")


def official_source(path: str) -> str:
    """Return a citation string for a file of the official repository at the pinned commit."""
    return f"{OFFICIAL_REPO}@{OFFICIAL_COMMIT}:{path}"


def check_mode(mode: str, func: str, allowed: Iterable[str] = DEFAULT_MODES) -> str:
    """Raise ``ValueError`` unless ``mode`` is one of ``allowed``; return it."""
    allowed = tuple(allowed)
    if mode not in allowed:
        raise ValueError(f"{func}: unknown mode {mode!r}; expected one of {', '.join(map(repr, allowed))}")
    return mode


def is_metric_key(name: str) -> bool:
    """True for the per-language keys that ``evaluate.py`` averages (accuracy, f1, precision,
    recall, exact_match, map / map@k). Bookkeeping keys (``mode``, ``note``, ``n_*``) are not."""
    return name in _PLAIN_METRIC_KEYS or _MAP_KEY.fullmatch(name) is not None


def add_note(result: dict, note: str) -> None:
    """Append ``note`` to ``result['note']`` (a list of strings, created on first use)."""
    result.setdefault("note", []).append(note)
