"""Provenance of every results file: the lock files and installed packages behind a host run."""

import hashlib
import importlib.metadata
from pathlib import Path

from xlrepro.runs import installed_distributions, lock_hashes, provenance

ROOT = Path(__file__).resolve().parents[1]


def test_lock_hashes_cover_the_host_requirements_and_the_image_locks():
    locks = lock_hashes()
    for rel in (
        "requirements/host.txt",
        "requirements/test.txt",
        "docker/requirements-cpu.lock",
        "docker/requirements-gpu.lock",
        "docker/torch-cpu.lock",
    ):
        assert locks[rel] == hashlib.sha256((ROOT / rel).read_bytes()).hexdigest(), rel


def test_installed_distributions_match_importlib_metadata():
    inst = installed_distributions()
    assert inst["torch"] == importlib.metadata.version("torch")
    assert list(inst) == sorted(inst)


def test_provenance_records_locks_and_installed_packages():
    prov = provenance(seed=3)
    assert prov["seed"] == 3 and prov["locks"] == lock_hashes() and prov["installed"]["torch"]
