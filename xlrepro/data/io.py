"""File access shared by the readers: hashing, decoding and line splitting with exact locations."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from xlrepro.errors import DataFormatError


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_text(path: str | os.PathLike) -> tuple[str, str]:
    """(text, sha256) of a UTF-8 file; a BOM is dropped; CRLF and LF are both accepted."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})", line=line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, digest


def lines(text: str, path: str | os.PathLike | None = None) -> list[str]:
    """Lines without their terminator (LF or CRLF); a final terminator adds no empty line.

    With ``path``: a text with carriage returns but no line feed at all (lone-CR line ends, as
    classic Mac OS wrote them) is a ``DataFormatError``: split on LF it would be one line, and a
    line-based reader would read it as one malformed record or as none.
    """
    if path is not None and "\r" in text.rstrip("\r") and "\n" not in text:
        raise DataFormatError(
            path,
            "line ends are lone carriage returns (CR); expected LF or CRLF line ends "
            "(convert the file, e.g. `tr '\\r' '\\n'`)",
            line=1,
        )
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    return [l[:-1] if l.endswith("\r") else l for l in out]


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> tuple[list[tuple[int, dict]], str]:
    """[(line_number, object)] of a JSON-lines file; blank lines are allowed and skipped."""
    text, digest = read_text(path)
    out = []
    for i, line in enumerate(lines(text, path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(
                path, f"invalid JSON ({e.msg} at column {e.colno}); expected one JSON object per line", line=i
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, f"expected a JSON object, got {type(obj).__name__}", line=i)
        for k in required:
            if k not in obj:
                raise DataFormatError(path, f"missing required field (have: {sorted(obj)})", line=i, field=k)
        out.append((i, obj))
    return out, digest


def read_json(path: str | os.PathLike):
    text, digest = read_text(path)
    try:
        return json.loads(text), digest
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"invalid JSON ({e.msg} at column {e.colno})", line=e.lineno) from None


def tsv_rows(path: str | os.PathLike) -> tuple[Iterator[tuple[int, list[str]]], str]:
    """(line_number, fields) of a tab-separated file, no quoting (XTREME/GLUE files are unquoted)."""
    text, digest = read_text(path)
    return ((i, l.split("\t")) for i, l in enumerate(lines(text, path), 1)), digest


def require(obj: dict, key: str, typ, path, line: int | None, where: str | None = None):
    """``obj[key]``, checked to be of ``typ`` (a bool is never taken for an int); ``where`` names the
    object in the message's field (``where.key``), e.g. a JSON path."""
    field = f"{where}.{key}" if where else key
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected an object, got {type(obj).__name__} {obj!r:.60}", line=line, field=where)
    if key not in obj:
        raise DataFormatError(path, f"missing required field (have: {sorted(obj)})", line=line, field=field)
    v = obj[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    if not isinstance(v, typ) or (isinstance(v, bool) and bool not in types):  # True is an int to Python
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise DataFormatError(path, f"expected {names}, got {type(v).__name__} {v!r:.60}", line=line, field=field)
    return v


def offset(v, path, line: int | None, field: str, limit: int | None = None) -> int:
    """A character offset: a non-negative int (not a bool, not a float), at most ``limit`` when given."""
    if not isinstance(v, int) or isinstance(v, bool):
        raise DataFormatError(
            path, f"expected a non-negative integer offset, got {type(v).__name__} {v!r:.40}", line=line, field=field
        )
    if v < 0 or (limit is not None and v > limit):
        raise DataFormatError(
            path,
            f"offset {v} is outside the text (length {limit}, Unicode code points)"
            if limit is not None
            else f"expected a non-negative offset, got {v}",
            line=line,
            field=field,
        )
    return v
