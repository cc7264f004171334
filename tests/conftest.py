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


def gpu_unavailable_reason() -> str | None:
    """Why the ``gpu`` tests cannot run here, or None: they need a CUDA GPU that torch sees and
    xlrepro._C built with its CUDA kernels (``nox -s gpu_tests`` builds it so). torch is imported
    only when a gpu test was collected (``nox -s lint`` runs tests without torch installed)."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    from xlrepro.ops import _lib

    if not _lib.load():
        return f"xlrepro._C not loaded: {_lib.unavailable_reason()}"
    if _lib.build_info().get("extension") != "cuda":
        return "xlrepro._C was built without CUDA kernels (build it with XLREPRO_USE_CUDA=1)"
    return None


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: only the selected gpu tests count
def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``gpu`` where they cannot run, with the reason; with
    XLREPRO_REQUIRE_GPU=1 (``nox -s gpu_tests``) that is an error instead of a skip."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    why = gpu_unavailable_reason()
    if why is None:
        return
    if os.environ.get("XLREPRO_REQUIRE_GPU") == "1":
        raise pytest.UsageError(f"XLREPRO_REQUIRE_GPU=1 but {len(gpu)} gpu tests cannot run: {why}")
    skip = pytest.mark.skip(reason=f"gpu test: {why}")
    for item in gpu:
        item.add_marker(skip)
