import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_samples() -> Path | None:
    """The real-format samples: ../shared/data-samples beside the checkout, or $XLREPRO_SHARED."""
    here = REPO.parent / "shared" / "data-samples"
    if here.is_dir():
        return here
    env = os.environ.get("XLREPRO_SHARED")
    if env:
        for cand in (Path(env) / "data-samples", Path(env)):
            if (cand / "README.md").is_file() and (cand / "xquad").is_dir():
                return cand
    return None


SAMPLES = find_samples()
needs_samples = pytest.mark.skipif(
    SAMPLES is None, reason="real data samples not found: expected ../shared/data-samples beside the checkout, "
                            "or XLREPRO_SHARED pointing at shared/ (or at shared/data-samples/)")


@pytest.fixture(scope="session")
def samples() -> Path:
    if SAMPLES is None:
        pytest.skip("the real-format samples (../shared/data-samples beside the checkout, or $XLREPRO_SHARED) are absent")
    return SAMPLES
