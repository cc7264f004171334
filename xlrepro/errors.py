"""Errors that say where the problem is and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class XlreproError(Exception):
    """Base class of xlrepro's user-facing errors."""


class ConfigError(XlreproError):
    """A bad config. ``problems``: every problem found (one line each) when a check lists them all."""

    def __init__(self, message: str = "", problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class DataFormatError(XlreproError, ValueError):
    """A data file does not have the expected format.

    The message names the file, the line (1-based, when known), the field, and what was expected.
    """

    def __init__(self, path, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")
