"""The task registry: one YAML file per task in this folder (see ``registry.py``)."""

from xlrepro.tasks.registry import TaskSpec, all_tasks, get_task

__all__ = ["TaskSpec", "all_tasks", "get_task"]
