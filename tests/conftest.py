import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


FIXTURES = REPO / "tests" / "fixtures" / "data-samples"


def find_samples() -> Path:
    """The real-format samples the reader tests read.

    The contributors' samples when present (``../shared/data-samples`` beside the checkout, or
    ``$XLREPRO_SHARED``), else the shipped synthetic ones in ``tests/fixtures/data-samples`` (same
    layout, counts, ids and labels; see tests/fixtures/README.md). ``XLREPRO_SAMPLES=fixtures``
    forces the shipped ones, ``XLREPRO_SAMPLES=<dir>`` names a folder."""
    forced = os.environ.get("XLREPRO_SAMPLES")
    if forced:
        return FIXTURES if forced == "fixtures" else Path(forced)
    here = REPO.parent / "shared" / "data-samples"
    if here.is_dir():
        return here
    env = os.environ.get("XLREPRO_SHARED")
    if env:
        for cand in (Path(env) / "data-samples", Path(env)):
            if (cand / "README.md").is_file() and (cand / "xquad").is_dir():
                return cand
    return FIXTURES


SAMPLES = find_samples()
# kept for the tests that import it: the shipped fixtures make the samples always present, and a
# missing folder (a wrong XLREPRO_SAMPLES) fails through the `samples` fixture instead of skipping
needs_samples = pytest.mark.usefixtures("samples")


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), f"no samples folder {SAMPLES} (XLREPRO_SAMPLES names a missing folder?)"
    return SAMPLES


def assert_names(exc, path, line=None, field=None):
    """A DataFormatError's message names the file, and the line and field when given."""
    msg = str(exc)
    assert str(path) in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg
    if field is not None:
        assert f"field {field!r}" in msg, msg
