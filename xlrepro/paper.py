"""The paper's numbers as data (``xlrepro/data/paper_numbers.yaml``): loaded, validated, gaps expanded.

Each entry: ``system, task, metric, value`` (None for a gap), ``tag`` (C/S/R/D), ``source`` (a key
of ``sources``), ``tolerance`` (points), optional ``language`` and ``note``; ``status`` is
``known`` or ``gap``. ``gap_grid`` blocks expand to gap entries, so what is not known stays a
visible row of the comparison table instead of disappearing.
"""

from __future__ import annotations

import functools
import importlib.resources
import math

import yaml

from xlrepro.errors import ConfigError
from xlrepro.tasks import all_tasks

TAGS = ("C", "S", "R", "D")
ENTRY_KEYS = {"system", "task", "metric", "value", "tag", "source", "tolerance", "language", "note", "status"}
TABLE_KEYS = {"title", "split", "rows", "entries", "gap_grid", "smoke", "benchmark"}
BENCHMARKS = ("xtreme", "xtreme_r")


def _path():
    return importlib.resources.files("xlrepro").joinpath("data", "paper_numbers.yaml")


def parse_paper_numbers(data: dict, where: str) -> dict:
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        raise ConfigError(f"{where}: expected a mapping with 'sources' and 'tables'")
    sources = data.get("sources") or {}
    out = {"sources": dict(sources), "tables": {}}
    for tid, t in data["tables"].items():
        w = f"{where}: tables.{tid}"
        if not isinstance(t, dict):
            raise ConfigError(f"{w}: expected a mapping")
        unknown = set(t) - TABLE_KEYS
        if unknown:
            raise ConfigError(f"{w}: unknown keys {sorted(unknown)} (expected {sorted(TABLE_KEYS)})")
        for k in ("title", "split", "rows"):
            if k not in t:
                raise ConfigError(f"{w}: {k}: required")
        if t["split"] not in ("dev", "test"):
            raise ConfigError(f"{w}.split: expected dev or test, got {t['split']!r}")
        if t.get("benchmark") not in (None, *BENCHMARKS):
            raise ConfigError(f"{w}.benchmark: expected one of {list(BENCHMARKS)} or absent, got {t['benchmark']!r}")
        entries = []
        for i, e in enumerate(t.get("entries") or []):
            entries.append(_entry(e, f"{w}.entries[{i}]", sources, t["rows"]))
        grid = t.get("gap_grid")
        if grid is not None:
            for s in grid.get("systems", []):
                for cell in grid.get("cells", []):
                    if not (isinstance(cell, list) and len(cell) == 2):
                        raise ConfigError(f"{w}.gap_grid.cells: expected [task, metric] pairs, got {cell!r}")
                    entries.append(
                        _entry(
                            {"system": s, "task": cell[0], "metric": cell[1], "value": None, "status": "gap"},
                            f"{w}.gap_grid",
                            sources,
                            t["rows"],
                        )
                    )
        out["tables"][tid] = {
            "title": t["title"],
            "split": t["split"],
            "rows": dict(t["rows"]),
            "smoke": bool(t.get("smoke", False)),
            "entries": entries,
            "benchmark": t.get("benchmark"),
        }
    return out


def _entry(e, where: str, sources: dict, rows: dict) -> dict:
    if not isinstance(e, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(e) - ENTRY_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (expected {sorted(ENTRY_KEYS)})")
    for k in ("system", "task", "metric"):
        if not isinstance(e.get(k), str):
            raise ConfigError(f"{where}.{k}: required string")
    if e["system"] not in rows:
        raise ConfigError(f"{where}.system: {e['system']!r} is not one of the table's rows {sorted(rows)}")
    value = e.get("value")
    status = e.get("status", "gap" if value is None else "known")
    if status not in ("known", "gap"):
        raise ConfigError(f"{where}.status: expected known or gap, got {status!r}")
    if value is None:
        if status != "gap":
            raise ConfigError(f"{where}: value null needs status gap")
        return {
            "system": e["system"],
            "task": e["task"],
            "metric": e["metric"],
            "language": e.get("language"),
            "value": None,
            "status": "gap",
            "tag": None,
            "source": None,
            "tolerance": None,
            "note": e.get("note", "not known: no published source"),
        }
    if status == "gap":
        raise ConfigError(f"{where}: a gap must have value null, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}.value: expected a number or null, got {value!r}")
    if e.get("tag") not in TAGS:
        raise ConfigError(f"{where}.tag: expected one of {list(TAGS)}, got {e.get('tag')!r}")
    if e.get("source") not in sources:
        raise ConfigError(f"{where}.source: {e.get('source')!r} is not a key of sources {sorted(sources)}")
    tol = e.get("tolerance")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
        raise ConfigError(f"{where}.tolerance: expected a number >= 0 for a known value, got {tol!r}")
    return {
        "system": e["system"],
        "task": e["task"],
        "metric": e["metric"],
        "language": e.get("language"),
        "value": float(value),
        "status": "known",
        "tag": e["tag"],
        "source": e["source"],
        "tolerance": float(tol),
        "note": e.get("note"),
    }


@functools.lru_cache(maxsize=1)
def load_paper_numbers() -> dict:
    path = _path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return parse_paper_numbers(data, str(path))


def paper_languages(benchmark: str | None, task: str, split: str) -> list[str] | None:
    """The languages a paper table's mean over ``task`` runs over: the task's ``split`` languages in
    the table's benchmark (a task outside it: its own benchmark's). None = no fixed set (a table
    without a benchmark, or a name that is not a registry task, such as ``xtreme_score``)."""
    if benchmark is None:
        return None
    spec = all_tasks().get(task)
    if spec is None:
        return None
    bench = spec.benchmark_for(benchmark)
    return None if bench is None else spec.split_languages(split, bench)


def mark(ours: float | None, entry: dict) -> str:
    """'pass' within tolerance, 'deviation' outside it, 'no reference' for a gap, 'not run' without ours."""
    if entry["value"] is None:
        return "no reference"
    if ours is None:
        return "not run"
    return "pass" if abs(ours - entry["value"]) <= entry["tolerance"] + 1e-9 else "deviation"
