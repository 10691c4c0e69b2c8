"""YAML <-> validated task configs, with errors that name the field path and the file line."""

from __future__ import annotations

import copy
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from workbench.config.rules import INVALID_FIELDS

MAX_RULE_PASSES = 4  # validations after the first: enough for rules three models deep


@dataclass(frozen=True)
class FieldError:
    path: str  # dotted field path, e.g. "train_neg_sample_args.sample_num"; "" for the whole config
    message: str
    line: int | None = None  # 1-based line in the YAML source, when known

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """Every problem found in one config, each with its field path (and line, when parsed from YAML)."""

    def __init__(self, errors: list[FieldError], source: str | None = None):
        self.errors = errors
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{head}{len(errors)} problem(s) in the config:\n{lines}")


def _key_lines(text: str) -> dict[str, int]:
    """Map dotted key paths of a YAML mapping to the 1-based line where each key is written."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}.{i}"
                lines[path] = item.start_mark.line + 1
                walk(item, path)

    if root is not None:
        walk(root, "")
    return lines


def _errors_from_validation(exc: ValidationError, key_lines: dict[str, int], skip_types: tuple[str, ...] = ()) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors():
        if err["type"] in skip_types:
            continue
        loc = [str(p) for p in err["loc"]]
        # discriminated unions put the tag first ("recommendation"); it is not part of the user's path
        if loc and loc[0] in _task_names():
            loc = loc[1:]
        path = ".".join(loc)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (not part of this task's config; check the spelling)"
        line = _nearest_line(path, key_lines)
        out.append(FieldError(".".join(loc), msg, line))
    return out


def _nearest_line(path: str, key_lines: dict[str, int]) -> int | None:
    """Line of the deepest written key on `path` (a missing field points at its parent section)."""
    parts = path.split(".") if path else []
    while parts:
        line = key_lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


def _task_names() -> set[str]:
    from workbench.tasks import TASKS

    return set(TASKS)


def parse_config(data: dict[str, Any], *, source: str | None = None, text: str | None = None) -> BaseModel:
    """Validate a plain dict (must contain `task`) into its task's config model; raises ConfigError."""
    from workbench.tasks import TASKS

    key_lines = _key_lines(text) if text else {}
    if not isinstance(data, dict):
        raise ConfigError([FieldError("", "the config must be a mapping of setting: value")], source)
    task = data.get("task")
    if task not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise ConfigError([FieldError("task", f"unknown or missing task {task!r}; expected one of: {known}", key_lines.get("task"))], source)
    cls = TASKS[task].config_cls
    for name, target in getattr(cls, "PATH_ALIASES", {}).items():  # `maxlen: 0` is reported as data.maxlen
        if name in key_lines:
            key_lines.setdefault(target, key_lines[name])
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc
    errors = _errors_from_validation(first, key_lines)
    for extra in _cross_field_errors(cls, data, first, key_lines):
        if extra not in errors:
            errors.append(extra)
    raise ConfigError(errors, source)


def _cross_field_errors(cls: type[BaseModel], data: dict[str, Any], exc: ValidationError, key_lines: dict[str, int]) -> list[FieldError]:
    """The cross-field rules pydantic skipped because some field failed (see workbench/config/rules.py).

    Validate again without the failed keys, so that defaults stand in for them, telling every rule which fields
    failed: a rule that reads one of them stays silent, the others report what they find. A nested model's rule
    that fires on this pass still hides its parent's rules (pydantic again), so repeat, one level per pass.
    """
    found: list[FieldError] = []
    failed: list[tuple[str, ...]] = []
    for _ in range(MAX_RULE_PASSES):
        new = [loc for loc in map(_stand_in_loc, exc.errors()) if loc and loc not in failed]
        if not new:
            break
        failed += new
        trimmed = copy.deepcopy(data)
        for loc in failed:
            _remove(trimmed, loc)
            for name, target in getattr(cls, "PATH_ALIASES", {}).items():  # written as `maxlen`, failed as data.maxlen
                if ".".join(loc) == target:
                    trimmed.pop(name, None)
        invalid = sorted({_canonical_path(cls, loc) for loc in failed})
        try:
            cls.model_validate(trimmed, context={INVALID_FIELDS: invalid})
            break
        except ValidationError as again:
            exc = again
            found += _errors_from_validation(again, key_lines, skip_types=("missing",))
    return found


def _stand_in_loc(err: Any) -> tuple[str, ...]:
    """What the next pass replaces by its default: a failed field, or the whole nested model whose rule failed.

    Not the field a rule complained about: a sibling model of the same class (embed_sgd_param, embedx_sgd_param)
    would read that relative name as its own and skip the rule. A top-level rule's complaint needs no stand-in.
    """
    loc = _written_loc(err["loc"])
    return loc[:-1] if err["type"] == "config_rule" else loc


def _written_loc(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The keys as written in the config, up to the first list index (a bad list item stands for its whole list)."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        out.append(str(part))
    return tuple(out)


def _remove(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    node: Any = data
    for part in loc[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if loc and isinstance(node, dict):
        node.pop(loc[-1], None)


def _canonical_path(cls: type[BaseModel], loc: tuple[str, ...]) -> str:
    """`lr` -> `learning_rate`: the field names the rules read, whatever alias the config used."""
    names: list[str] = []
    model: Any = cls
    for part in loc:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        name = next((n for n, f in fields.items() if part == n or part in _alias_names(f)), part)
        names.append(name)
        model = _model_of(fields[name]) if name in fields else None
    return ".".join(names)


def _alias_names(field: Any) -> tuple[str, ...]:
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return tuple(c for c in choices if isinstance(c, str))
    return (alias,) if isinstance(alias, str) else ()


def _model_of(field: Any) -> type[BaseModel] | None:
    """The model class inside `Model` or `Model | None`, else None."""
    candidates = typing.get_args(field.annotation) or (field.annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def parse_yaml_text(text: str, *, source: str | None = None, overrides: list[str] | None = None) -> BaseModel:
    """Parse YAML text into a validated config. `overrides` are `dotted.key=value` strings applied on top."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([FieldError("", f"not valid YAML: {getattr(exc, 'problem', exc)}", line)], source) from None
    if not isinstance(data, dict):
        raise ConfigError([FieldError("", "the config must be a mapping of setting: value")], source)
    for item in overrides or []:
        apply_override(data, item)
    return parse_config(data, source=source, text=text)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to a nested dict in place."""
    if "=" not in item:
        raise ConfigError([FieldError(item, "an override must look like key=value (e.g. epochs=5)")])
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def load_config_file(path: str | Path, overrides: list[str] | None = None) -> BaseModel:
    p = Path(path)
    if not p.is_file():
        raise ConfigError([FieldError("", f"config file not found: {p}")], str(p))
    return parse_yaml_text(p.read_text(), source=str(p), overrides=overrides)


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain JSON-able dict under canonical field names (what the store keeps)."""
    return cfg.model_dump(mode="json", by_alias=False)


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def default_yaml(task: str) -> str:
    """The task's full default config as YAML, each setting preceded by its help text as a comment."""
    from workbench.tasks import TASKS

    cfg = TASKS[task].config_cls()
    return commented_yaml(cfg)


def commented_yaml(cfg: BaseModel) -> str:
    data = config_to_dict(cfg)
    lines: list[str] = []
    fields = type(cfg).model_fields
    ordered = ["task", *(n for n in fields if n != "task")] if "task" in fields else list(fields)
    for name in ordered:
        field = fields[name]
        if field.description:
            for chunk in _wrap(field.description, 110):
                lines.append(f"# {chunk}")
        lines.append(yaml.safe_dump({name: data[name]}, sort_keys=False, allow_unicode=True).rstrip())
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
