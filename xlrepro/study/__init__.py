"""The study layer: experiment specs, the scaling study's design, its statistics and the sweep report.

* ``xlrepro.study.spec``: experiment specs as data (``xlrepro/experiments/*.yaml``) and their
  expansion into cells (was ``xlrepro.experiments``).
* ``xlrepro.study.design``: the scaling study's design as code: volumes, arms, model selection,
  recipes, overlap, the dry-run table and the power table (was ``xlrepro.study``).
* ``xlrepro.study.primary``: the pre-registered primary analysis of a finished sweep, per arm, with
  and without the re-seeded runs.
* ``xlrepro.study.controls``: positive and negative controls of that analysis on a sweep's design.
* ``xlrepro.study.report``: the report of a sweep's finished runs (was ``xlrepro.sweep_report``).

The pre-registration is ``docs/scaling-study.md``. Nothing is imported here, so importing one
module does not load the others (statsmodels and matplotlib load only where they are used).
"""
