"""A Streamlit form generated from a pydantic config schema.

Sections: the task's own settings first (grouped as the config's `sections` ClassVar says, if it has one), then
the common training settings; nested models are expanders
(optional ones get an "enabled" checkbox); enums are selects; dicts and lists are YAML text areas; floats are text
inputs so that 1e-8 stays 1e-8. No widget enforces a range: pydantic does, so the user sees every real error at
once with its field path, instead of a widget silently reverting a value.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

import streamlit as st
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from workbench import api

UNSET = ""  # what an empty text input means for an optional field: None


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is_optional) for `X | None`."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _yaml_inline(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip().removesuffix("...").strip()


def _parse_yaml_value(text: str) -> Any:
    """Text of a dict/list/float widget -> Python value; unparsable text is passed on for pydantic to report."""
    if text.strip() == UNSET:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class SchemaForm:
    """Renders widgets for a config class inside the caller's `st.form` and collects the values back.

    `errors` (dotted field path -> messages, from the last submit) are drawn under the widgets they belong to, and
    every section holding one opens, so a problem is seen where it is, not only in the list below the form.
    """

    def __init__(self, cls: type[BaseModel], values: dict[str, Any], key_prefix: str, errors: dict[str, list[str]] | None = None):
        self.cls = cls
        self.values = values
        self.prefix = key_prefix
        self.errors = errors or {}

    def render(self) -> dict[str, Any]:
        """Draw all sections; return the nested dict of raw values (validate it with the task's config class)."""
        fields = self.cls.model_fields
        common = api.common_setting_names()
        not_used: dict[str, str] = dict(getattr(self.cls, "not_used", {}))
        sections: dict[str, tuple[str, ...]] = dict(getattr(self.cls, "sections", {}))
        in_sections = {n for names in sections.values() for n in names}
        own = [n for n in fields if n not in common and n != "task" and n not in in_sections]
        shared = [n for n in fields if n in common and n not in not_used and n not in in_sections]
        out: dict[str, Any] = {"task": self.values.get("task", fields["task"].default if "task" in fields else None)}
        if own:
            st.markdown("**Task settings**")
            out.update(self._fields(self.cls, own, self.values, "", columns=2))
        for i, (title, names) in enumerate(sections.items()):
            # the first section is open: a form of closed boxes hides where to start
            with st.expander(title, expanded=i == 0 or self._has_errors(names)):
                out.update(self._section(list(names)))
        with st.expander("Training settings (common to every task)", expanded=self._has_errors(shared)):
            out.update(self._fields(self.cls, shared, self.values, "", columns=2))
        if not_used:
            names = [n for n in fields if n in not_used]
            with st.expander(f"Shared settings this task does not use ({len(not_used)})", expanded=self._has_errors(names)):
                st.caption("Every task's config accepts the shared training settings; these have no effect on this task.")
                out.update(self._fields(self.cls, names, self.values, "", columns=2))
        return out

    def _has_errors(self, names: list[str] | tuple[str, ...]) -> bool:
        return any(path == n or path.startswith(n + ".") for path in self.errors for n in names)

    def _show_errors(self, path: str, *, below: bool) -> None:
        """Messages for `path` (and, under a widget, for its list items such as `topk.0`)."""
        for err_path, messages in self.errors.items():
            if err_path == path or (below and err_path.startswith(path + ".")):
                where = "" if err_path == path else f"`{err_path}`: "
                for message in messages:
                    st.error(where + message)

    def _section(self, names: list[str]) -> dict[str, Any]:
        """A declared section; one that is a single nested model (embed_sgd_param) shows its fields directly."""
        if len(names) == 1 and _is_model(_unwrap_optional(self.cls.model_fields[names[0]].annotation)[0]):
            name = names[0]
            return {name: self._nested(self.cls.model_fields[name], name, self.values.get(name), name, boxed=False)}
        return self._fields(self.cls, names, self.values, "", columns=2)

    def _fields(self, cls: type[BaseModel], names: list[str], values: dict[str, Any], path: str, columns: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        simple = [n for n in names if not _is_model(_unwrap_optional(cls.model_fields[n].annotation)[0])]
        nested = [n for n in names if n not in simple]
        cols = st.columns(columns) if columns > 1 else [st.container()]
        for i, name in enumerate(simple):
            with cols[i % len(cols)]:
                out[name] = self._widget(cls.model_fields[name], name, values.get(name), f"{path}{name}")
                self._show_errors(f"{path}{name}", below=True)
        for name in nested:
            out[name] = self._nested(cls.model_fields[name], name, values.get(name), f"{path}{name}")
        return out

    def _nested(self, field: FieldInfo, name: str, value: Any, path: str, boxed: bool = True) -> dict[str, Any] | None:
        inner, optional = _unwrap_optional(field.annotation)
        has_errors = any(p == path or p.startswith(path + ".") for p in self.errors)
        with st.expander(f"{path}", expanded=has_errors) if boxed else st.container():
            if field.description:
                st.caption(field.description)
            self._show_errors(path, below=False)
            enabled = True
            if optional:
                enabled = st.checkbox(f"{path} enabled", value=value is not None, key=self._key(path + ".__enabled"), help=field.description)
            current = value if isinstance(value, dict) else inner().model_dump(mode="json")
            sub = self._fields(inner, list(inner.model_fields), current, f"{path}.", columns=2)
        return sub if enabled else None

    def _key(self, path: str) -> str:
        return f"{self.prefix}:{path}"

    def _widget(self, field: FieldInfo, name: str, value: Any, path: str) -> Any:
        tp, optional = _unwrap_optional(field.annotation)
        help_text = field.description or None
        key = self._key(path)
        label = path  # nested fields by their dotted path: ctr_stream's three learning_rates stay apart
        if get_origin(tp) is Literal:
            options = list(get_args(tp))
            if optional:
                options = [None, *options]
            index = options.index(value) if value in options else 0
            return st.selectbox(label, options, index=index, key=key, help=help_text, format_func=lambda o: "(none)" if o is None else str(o))
        if tp is bool:
            return st.checkbox(label, value=bool(value), key=key, help=help_text)
        if tp is int and not optional:
            return st.number_input(label, value=int(value) if value is not None else 0, step=1, key=key, help=help_text)
        if tp is str and not optional:
            return st.text_input(label, value="" if value is None else str(value), key=key, help=help_text)
        # floats, optionals, lists, dicts, paths: a text input holding YAML, parsed on submit
        text = UNSET if value is None else (_yaml_inline(value) if not isinstance(value, str) else value)
        if isinstance(value, float):
            text = repr(value)
        raw = st.text_input(label, value=text, key=key, help=(help_text or "") + ("  (leave empty for none)" if optional else ""))
        if tp is str:
            return None if raw.strip() == UNSET else raw
        return _parse_yaml_value(raw)


def render_config_form(
    cls: type[BaseModel], values: dict[str, Any], key_prefix: str, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Draw the form (with `errors` under their fields); return its raw values for the config parser."""
    return SchemaForm(cls, values, key_prefix, errors).render()
