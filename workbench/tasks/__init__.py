"""Task registry. Adding a task = one folder + one line here + configs/<task>/*.yaml."""

from __future__ import annotations

import os

from workbench.tasks.spec import TaskSpec

TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> None:
    TASKS[spec.name] = spec


def _register_builtin() -> None:
    import importlib

    for module in ("workbench.tasks.recommendation", "workbench.tasks.ctr_stream", "workbench.tasks.spleeter"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a task folder not written yet must not break the others
            if exc.name and exc.name.startswith(module):
                continue
            raise
        if getattr(mod, "__file__", None) is None:  # a bare folder (namespace package) is not a task yet
            continue
        register(mod.SPEC)
    # plug-in tasks: WORKBENCH_TASK_MODULES="pkg.mod,other.mod", each module defining SPEC (inherited by workers)
    for module in filter(None, os.environ.get("WORKBENCH_TASK_MODULES", "").split(",")):
        register(importlib.import_module(module.strip()).SPEC)


_register_builtin()

__all__ = ["TASKS", "TaskSpec", "register"]
