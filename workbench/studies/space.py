"""A study's search space: which settings to search, over what, checked against the task's config schema.

SPACE.yaml maps setting paths (nested ones dotted, e.g. `data.maxlen`, `embedx_sgd_param.learning_rate`; the seeds'
aliases such as `lr` or `batch_size` name their canonical setting) to one of
- a range: `{low, high}` with optional `log: true` and `step` (an int setting gives an int range), or
- a list of choices: `{choices: [...]}`.

`parse_space` reports every problem at once with its path (`space.learning_rate.low`), and checks each bound and
choice with the setting's own validation, so a study never samples a value a hand-made run would reject.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import yaml
from pydantic import BaseModel

from workbench.config.common import ALIASES, canonical_setting_path
from workbench.config.io import ConfigError, FieldError, config_to_dict, parse_config


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False  # the setting is an int: sample whole numbers

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Choices:
    choices: tuple[Any, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


Param = Range | Choices
SearchSpace = dict[str, Param]  # canonical dotted setting path -> what to search

# The ranges the hyper-parameter guide (seed 002) recommends, for the settings it covers. `learning_rate` is "around
# 0.01 or 0.001": a log range over both; `epochs` 50-200 is the guide's advice for full trainings.
GUIDE_RANGES: dict[str, Param] = {
    "train_batch_size": Range(32, 512, log=True, integer=True),
    "learning_rate": Range(1e-3, 1e-2, log=True),
    "epochs": Range(50, 200, step=10, integer=True),
    "epochs_warmup": Range(1, 2, integer=True),
    "epochs_ending": Range(1, 2, integer=True),
    "stopping_step": Range(5, 10, integer=True),
    "scheduler_patience": Range(2, 10, integer=True),
    "scheduler_factor": Range(0.1, 0.5),
    "train_ratio": Range(0.7, 0.99),
    "min_std": Range(1e-9, 1e-8, log=True),
}


def canonical_path(path: str, cls: type[BaseModel] | None = None) -> str:
    """`lr` -> `learning_rate`, `batch_size` -> `train_batch_size`: the seeds' other names for a setting; with the
    config class also its top-level seed names for nested settings (recommendation's `maxlen` -> `data.maxlen`)."""
    if cls is not None:
        return canonical_setting_path(cls, path)
    parts = path.split(".")
    for canonical, others in ALIASES.items():
        if parts[-1] in others:
            parts[-1] = canonical
    return ".".join(parts)


def _field_annotation(cls: type[BaseModel], path: str) -> Any | None:
    """The annotation of the setting at `path` in the config class, None if there is no such setting."""
    node: Any = cls
    annotation: Any = None
    for part in path.split("."):
        model = _model_in(node)
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        node = annotation
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (`Model`, `Model | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _is_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args == [int]
    return False


def _is_number(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    return False


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted setting path in a nested config dict (a missing or null section becomes a mapping)."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def get_path(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node[part]
    return node


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The base config dict with the sampled values set (a deep copy; the base is not changed)."""
    import copy

    out = copy.deepcopy(dict(base))
    for path, value in params.items():
        set_path(out, path, value)
    return out


def parse_space(data: Any, base: BaseModel, *, source: str | None = None) -> SearchSpace:
    """Validate a space mapping against the base config's task; raises ConfigError with every problem."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError([FieldError("space", "the search space must map setting paths to {low, high} or {choices: [...]}")], source)
    cls = type(base)
    base_dict = config_to_dict(base)
    errors: list[FieldError] = []
    space: SearchSpace = {}
    for raw_path, spec in data.items():
        path = canonical_path(str(raw_path), cls)
        where = f"space.{raw_path}"
        annotation = _field_annotation(cls, path)
        if path == "task" or annotation is None or _model_in(annotation) is not None:
            errors.append(FieldError(where, f"no setting {raw_path!r} in the {getattr(base, 'task', '?')} config to search over"))
            continue
        if path in space:
            errors.append(FieldError(where, f"{path} is searched twice (under its name and an alias)"))
            continue
        param, problems = _parse_param(spec, annotation, where)
        errors.extend(problems)
        if param is None:
            continue
        errors.extend(_check_values(param, path, base_dict, where))
        space[path] = param
    if errors:
        raise ConfigError(errors, source)
    return space


def _parse_param(spec: Any, annotation: Any, where: str) -> tuple[Param | None, list[FieldError]]:
    if not isinstance(spec, Mapping):
        return None, [FieldError(where, "expected {low, high[, log, step]} or {choices: [...]}")]
    keys = set(spec)
    if "choices" in keys:
        extra = keys - {"choices"}
        choices = spec["choices"]
        problems = [FieldError(f"{where}.{k}", "not allowed beside choices") for k in sorted(extra)]
        if not isinstance(choices, list) or not choices:
            problems.append(FieldError(f"{where}.choices", "expected a non-empty list of values"))
            return None, problems
        return (Choices(tuple(choices)) if not problems else None), problems
    problems = [FieldError(f"{where}.{k}", "unknown key (expected low, high, log, step or choices)") for k in sorted(keys - {"low", "high", "log", "step"})]
    for k in ("low", "high"):
        if k not in spec:
            problems.append(FieldError(f"{where}.{k}", "missing"))
    if problems:
        return None, problems
    if not _is_number(annotation):
        return None, [FieldError(where, "a range needs a number setting; use {choices: [...]} for this one")]
    integer = _is_int(annotation)
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for k, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            problems.append(FieldError(f"{where}.{k}", f"expected a number, got {v!r}"))
        elif integer and v is not None and float(v) != int(v):
            problems.append(FieldError(f"{where}.{k}", f"this setting is a whole number; got {v!r}"))
    if not isinstance(log, bool):
        problems.append(FieldError(f"{where}.log", f"expected true or false, got {log!r}"))
    if problems:
        return None, problems
    if low > high:
        problems.append(FieldError(where, f"low ({low}) is greater than high ({high})"))
    if log and low <= 0:
        problems.append(FieldError(f"{where}.low", f"a log range needs low > 0 (got {low})"))
    if step is not None and step <= 0:
        problems.append(FieldError(f"{where}.step", f"step must be > 0 (got {step})"))
    if log and step is not None:
        problems.append(FieldError(f"{where}.step", "Optuna samples either on a log scale or with a step, not both"))
    if problems:
        return None, problems
    if integer:
        return Range(int(low), int(high), log, int(step) if step is not None else None, True), []
    return Range(float(low), float(high), log, float(step) if step is not None else None), []


def _check_values(param: Param, path: str, base_dict: dict[str, Any], where: str) -> list[FieldError]:
    """Each bound or choice must pass the setting's own validation (e.g. learning_rate > 0, a Literal's values)."""
    if isinstance(param, Range):
        candidates = [("low", param.low), ("high", param.high)]
    else:
        candidates = [(f"choices.{i}", v) for i, v in enumerate(param.choices)]
    problems: list[FieldError] = []
    for label, value in candidates:
        trial = apply_params(base_dict, {path: value})
        try:
            parse_config(trial)
        except ConfigError as exc:
            own = [e for e in exc.errors if e.path == path or e.path.startswith(path + ".")]
            for e in own:
                problems.append(FieldError(f"{where}.{label}", f"{value!r}: {e.message}"))
    return problems


def space_from_yaml(text: str, base: BaseModel, *, source: str | None = None) -> SearchSpace:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError([FieldError("space", f"not valid YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None)], source) from None
    return parse_space(data, base, source=source)


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    return {path: param.as_dict() for path, param in space.items()}


def suggested_space(base: BaseModel, paths: list[str] | None = None) -> SearchSpace:
    """The guide's recommended ranges for the settings of this config it covers (all of them, or `paths`)."""
    cls = type(base)
    not_used = set(getattr(cls, "not_used", {}))  # settings this task ignores: searching them would waste trials
    wanted = [canonical_path(p, cls) for p in paths] if paths is not None else [p for p in GUIDE_RANGES if p not in not_used]
    out: SearchSpace = {}
    for path in wanted:
        param = GUIDE_RANGES.get(path)
        if param is not None and _field_annotation(cls, path) is not None:
            out[path] = param
    return out


def example_space_yaml(base: BaseModel) -> str:
    """A commented SPACE.yaml with the guide's ranges for this task (what `workbench study space TASK` prints)."""
    space = suggested_space(base)
    lines = [
        f"# Search space for a {getattr(base, 'task', '')} study: setting path -> range or choices.",
        "# A range: {low, high} with optional `log: true` (sample on a log scale) or `step` (a grid step).",
        "# Choices: {choices: [a, b, c]}. Nested settings use dots, e.g. data.maxlen. Delete what you don't search.",
        "# The ranges below are the hyper-parameter guide's recommendations.",
    ]
    for path, param in space.items():
        lines.append(yaml.safe_dump({path: param.as_dict()}, default_flow_style=None, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"


def to_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions for the space (imported here: only the study driver and trials need Optuna)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for path, p in space.items():
        if isinstance(p, Choices):
            out[path] = CategoricalDistribution(list(p.choices))
        elif p.integer:
            out[path] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            out[path] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def searchable_paths(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """Every setting a study can search: numbers (ranges or choices), enums and booleans (choices), nested ones
    dotted. Sections (nested models) are walked, not offered; free-form dicts and lists are not offered."""
    out: list[str] = []
    for name, field in cls.model_fields.items():
        if name == "task":
            continue
        path = f"{prefix}{name}"
        model = _model_in(field.annotation)
        if model is not None:
            out.extend(searchable_paths(model, f"{path}."))
        elif _is_number(field.annotation) or _is_choice(field.annotation):
            out.append(path)
    return out


def _is_choice(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_origin(annotation) in (Union, types.UnionType) else [annotation]
    return all(a is bool or typing.get_origin(a) is typing.Literal for a in args) and bool(args)
