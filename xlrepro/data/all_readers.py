"""Every reader of the tasks' original file formats, looked up by name.

Importing this module imports every module that registers readers (``@reader`` from
``xlrepro.data.reader_registry``), so ``get_reader`` and ``READERS`` always see the complete table:
the formats several tasks share (``readers``), the intermediate tasks'
(``readers_intermediate``), XTREME / XTREME-R's (``readers_xtreme``), the dual-encoder retrieval
files (``readers_retrieval``) and the prepared Hub splits (``hub``). A reader is called as
``fn(paths: dict[str, Path], **options) -> ReadResult`` (``xlrepro.tasks.registry`` says with which
options).
"""

from __future__ import annotations

from collections.abc import Callable

from xlrepro.data import (  # noqa: F401  (imported to register their readers)
    hub,
    readers,
    readers_intermediate,
    readers_retrieval,
    readers_xtreme,
)
from xlrepro.data.reader_registry import READERS
from xlrepro.data.types import ReadResult
from xlrepro.errors import did_you_mean

__all__ = ["READERS", "get_reader"]


def get_reader(name: str) -> Callable[..., ReadResult]:
    if name not in READERS:
        raise KeyError(f"unknown reader {name!r}{did_you_mean(name, READERS)}")
    return READERS[name]
