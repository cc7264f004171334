"""Fuzz every reader with random corruptions of the real samples (``reader_cases``): the outcome is
a ``DataFormatError`` naming one of the files read, or a parsed result -- never another exception,
never an error that does not say which file. Bounded and derandomized: a few seconds in all."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from conftest import SAMPLES, needs_samples  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st
from reader_cases import Case, cases, corrupt_case, outcome  # noqa: E402

CASES = cases(SAMPLES) if SAMPLES is not None else []
EXAMPLES = 25  # per reader case


@needs_samples
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_uncorrupted_sample_parses(case: Case):
    with tempfile.TemporaryDirectory() as d:
        paths = case.materialise(Path(d))
        kind, err = outcome(case, paths)
        assert kind == "parsed", err
        assert len(case.run(paths).examples) > 0


@needs_samples
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_corrupted_sample_is_an_error_naming_the_file_or_parses(case: Case, seed: int):
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        paths = case.materialise(Path(d))
        what = corrupt_case(case, paths, rnd)
        for _ in range(rnd.randrange(2)):  # sometimes a second corruption
            what += "; " + corrupt_case(case, paths, rnd)
        kind, err = outcome(case, paths)
        assert kind in ("parsed", "error_located", "error_file"), f"{what}: {kind}: {type(err).__name__}: {err}"
