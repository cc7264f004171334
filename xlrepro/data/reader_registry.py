"""The table of readers and the decorator that fills it.

Each reader module registers its readers with ``@reader(name)`` when it is imported. This module
sits below them and imports none of them; the lookup, ``xlrepro.data.all_readers.get_reader``, lives in
the module that imports every reader module, so a name is looked up only in the complete table.
"""

from __future__ import annotations

from collections.abc import Callable

from xlrepro.data.types import ReadResult

READERS: dict[str, Callable[..., ReadResult]] = {}


def reader(name: str):
    def deco(fn):
        if name in READERS:
            raise ValueError(f"reader {name!r} registered twice")
        READERS[name] = fn
        return fn

    return deco
