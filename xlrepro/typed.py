"""Typed dataclasses from plain mappings (parsed YAML or JSON) and back.

``from_dict(cls, data)`` builds dataclass ``cls`` with every value type-checked and unknown keys
rejected with a did-you-mean; ``to_dict`` is the inverse. The config (``xlrepro.config``) and
the config checks (``xlrepro.config_checks``) both build on it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from xlrepro.errors import ConfigError, did_you_mean


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(tp, value, where: str, problems: list | None = None):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where, problems)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {[_type_name(a) for a in args]}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a dataclass type (hints are types)
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where, problems)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is list or origin is list:
        if isinstance(value, list):
            return list(value)
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls, data: dict, where: str = "", problems: list | None = None):
    """Build dataclass ``cls`` from a dict; unknown keys and bad types raise ``ConfigError``.

    With ``problems`` (a list), every problem is appended to it instead, and a field with a bad
    value keeps its default, so that one pass finds them all."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]

    def bad(msg: str) -> None:
        if problems is None:
            raise ConfigError(msg)
        problems.append(msg)

    for k in data:
        if k not in names:
            bad(f"{where + '.' if where else ''}{k}: unknown key{did_you_mean(k, names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            try:
                kwargs[f.name] = _coerce(hints[f.name], data[f.name], key, problems)
            except ConfigError as e:
                bad(str(e))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            bad(f"{key}: required (no default)")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in missing:  # only when collecting: a placeholder, so that the other checks still run
        if hints[name] not in (int, str):  # (the caller raises with the problems; it never uses the value)
            return None
        kwargs[name] = hints[name]()
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
