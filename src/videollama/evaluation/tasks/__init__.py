"""The benchmark registry: task name -> Task (one small module per benchmark family)."""

from __future__ import annotations

from videollama.errors import ConfigError
from videollama.evaluation.tasks import generative, mcq, openqa, world
from videollama.evaluation.tasks.base import EvalItem, LoadedData, MediaResolver, Task

TASKS: dict[str, Task] = {t.name: t for module in (openqa, generative, mcq, world) for t in module.TASKS}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "get_task", "Task", "EvalItem", "LoadedData", "MediaResolver"]
