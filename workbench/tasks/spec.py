"""The task contract: a config model, a run function, and what the platform needs to know about it.

A task is not a base class. It is a folder with config.py / data.py / model.py / train.py and one `TaskSpec`
registered in workbench/tasks/__init__.py. `run` is imported lazily so that listing tasks or validating a config
never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from workbench.runner.context import RunContext

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class TaskSpec:
    name: str  # registry key and the config's `task` value, e.g. "recommendation"
    title: str  # shown in the task picker, e.g. "Session recommendation"
    description: str
    config_cls: type[BaseModel]
    run_target: str  # "module:function" called as function(cfg, ctx) in the worker process
    # the metric that decides "best" (checkpoint retention, early stopping display): key and direction
    monitor: Callable[[Any], tuple[str, Literal["max", "min"]]]
    # extra `workbench data <name>` commands: plain functions with typer-style annotated parameters
    data_commands: dict[str, str] = field(default_factory=dict)  # name -> "module:function"
    # optional "module:function" evaluate(cfg, checkpoint_state, data_path|None, ctx) -> dict[str, float]
    evaluate_target: str | None = None
    # optional "module:function" check_state(cfg, state) -> list[str]: why an uploaded checkpoint does not fit
    # this task's model (empty list: it fits). See runner.checkpoints.state_mismatches.
    check_target: str | None = None
    # optional "module:function" infer(state, cfg_dict, input_path, out_dir) -> {file name: path}: what the
    # checkpoints page's "Try it" shows (.wav as players, .png as pictures, anything else as downloads)
    infer_target: str | None = None
    infer_input: str = "input file"  # what infer_target reads, e.g. "a song (WAV)"
    # charts the dashboard draws first, several metrics on one chart: title -> metric keys
    overlays: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def run(self, cfg: BaseModel, ctx: RunContext) -> None:
        _load(self.run_target)(cfg, ctx)

    def presets(self) -> dict[str, Path]:
        """Shipped YAML presets for this task: name -> path (configs/<task>/*.yaml)."""
        folder = CONFIGS_DIR / self.name
        return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_target(target: str) -> Callable[..., Any]:
    return _load(target)
