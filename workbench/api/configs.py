"""Tasks and configs: schemas, presets, validation, YAML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workbench.config.io import commented_yaml, config_to_dict, config_to_yaml, default_yaml, load_config_file, parse_config, parse_yaml_text
from workbench.tasks import TASKS, TaskSpec


def tasks() -> dict[str, TaskSpec]:
    return dict(TASKS)


def config_class(task: str) -> type[BaseModel]:
    return TASKS[task].config_cls


def common_setting_names() -> set[str]:
    """Names of the training settings every task shares (the form shows them in their own section)."""
    from workbench.config.common import CommonTrainingSettings

    return set(CommonTrainingSettings.model_fields)


def not_used_settings(task: str) -> dict[str, str]:
    """The shared settings this task has no use for: name -> why (the form shows them apart)."""
    return dict(getattr(TASKS[task].config_cls, "not_used", {}))


def ignored_settings(cfg: BaseModel) -> list[str]:
    """A line for each setting the config's task does not use that is set away from its default."""
    from workbench.config.common import CommonTrainingSettings, ignored_settings as ignored

    return ignored(cfg) if isinstance(cfg, CommonTrainingSettings) else []


def default_config(task: str) -> BaseModel:
    return TASKS[task].config_cls()


def presets(task: str) -> dict[str, Path]:
    return TASKS[task].presets()


def load_preset(task: str, name: str) -> BaseModel:
    return load_config_file(presets(task)[name])


def validate_yaml(text: str, *, source: str | None = None, overrides: list[str] | None = None) -> BaseModel:
    """Parse and validate YAML text; raises ConfigError listing every problem with its field path and line."""
    return parse_yaml_text(text, source=source, overrides=overrides)


def validate_file(path: str | Path, overrides: list[str] | None = None) -> BaseModel:
    return load_config_file(path, overrides)


def validate_dict(data: dict[str, Any]) -> BaseModel:
    return parse_config(data)


def to_yaml(cfg: BaseModel, *, commented: bool = False) -> str:
    return commented_yaml(cfg) if commented else config_to_yaml(cfg)


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    return config_to_dict(cfg)


def data_commands() -> dict[str, Callable[..., Any]]:
    """`workbench data <name>` commands of every task: name -> function with typer-annotated parameters.

    A task whose command cannot be imported is skipped with a warning, so one broken task never hides the rest.
    """
    import warnings

    from workbench.tasks.spec import load_target

    out: dict[str, Callable[..., Any]] = {}
    for spec in TASKS.values():
        for name, target in spec.data_commands.items():
            try:
                out[name] = load_target(target)
            except (ImportError, AttributeError) as exc:
                warnings.warn(f"data command {name} ({target}) unavailable: {exc}", stacklevel=2)
    return out


def default_config_yaml(task: str) -> str:
    return default_yaml(task)


