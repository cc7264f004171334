"""xlrepro: English intermediate-task training for zero-shot cross-lingual transfer, reproduced.

Reproduces Phang et al. 2020 (arXiv 2005.13013) and runs a data-volume scaling study on
XTREME and XTREME-R. See README.md and ARTIFACT.md.

The notebook API (``xlrepro.api``) is reachable from here without importing torch up front:
``xlrepro.load_config``, ``run_experiment``, ``run_phase``, ``load_results``, ``export_models``.
"""

__version__ = "0.1.0"

_API = ("load_config", "run_experiment", "run_phase", "load_results", "export_models", "Results")


def __getattr__(name):
    if name in _API:  # imported on first use, so `import xlrepro` stays light
        from xlrepro import api

        return getattr(api, name)
    raise AttributeError(f"module 'xlrepro' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
