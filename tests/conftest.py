import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    for cand in (REPO.parent / "shared", Path(os.environ.get("XLREPRO_SHARED", "/nonexistent"))):
        if (cand / "data-samples").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def samples() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("the real-format samples (../shared/data-samples beside the checkout, or $XLREPRO_SHARED) are absent")
    return d / "data-samples"
