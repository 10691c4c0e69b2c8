"""A Streamlit form generated from a pydantic config schema.

Sections: the task's own settings first, then the common training settings; nested models are expanders
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


def _label(name: str) -> str:
    return name


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
    """Renders widgets for a config class inside the caller's `st.form` and collects the values back."""

    def __init__(self, cls: type[BaseModel], values: dict[str, Any], key_prefix: str):
        self.cls = cls
        self.values = values
        self.prefix = key_prefix

    def render(self) -> dict[str, Any]:
        """Draw all sections; return the nested dict of raw values (validate it with the task's config class)."""
        fields = self.cls.model_fields
        common = api.common_setting_names()
        not_used: dict[str, str] = dict(getattr(self.cls, "not_used", {}))
        own = [n for n in fields if n not in common and n != "task"]
        shared = [n for n in fields if n in common and n not in not_used]
        out: dict[str, Any] = {"task": self.values.get("task", fields["task"].default if "task" in fields else None)}
        if own:
            st.markdown("**Task settings**")
            out.update(self._fields(self.cls, own, self.values, "", columns=2))
        with st.expander("Training settings (common to every task)", expanded=False):
            out.update(self._fields(self.cls, shared, self.values, "", columns=2))
        if not_used:
            with st.expander(f"Shared settings this task does not use ({len(not_used)})", expanded=False):
                st.caption("Every config accepts them (the seeds name them for every task); they have no effect here.")
                out.update(self._fields(self.cls, [n for n in fields if n in not_used], self.values, "", columns=2))
        return out

    def _fields(self, cls: type[BaseModel], names: list[str], values: dict[str, Any], path: str, columns: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        simple = [n for n in names if not _is_model(_unwrap_optional(cls.model_fields[n].annotation)[0])]
        nested = [n for n in names if n not in simple]
        cols = st.columns(columns) if columns > 1 else [st.container()]
        for i, name in enumerate(simple):
            with cols[i % len(cols)]:
                out[name] = self._widget(cls.model_fields[name], name, values.get(name), f"{path}{name}")
        for name in nested:
            out[name] = self._nested(cls.model_fields[name], name, values.get(name), f"{path}{name}")
        return out

    def _nested(self, field: FieldInfo, name: str, value: Any, path: str) -> dict[str, Any] | None:
        inner, optional = _unwrap_optional(field.annotation)
        with st.expander(f"{name}", expanded=False):
            if field.description:
                st.caption(field.description)
            enabled = True
            if optional:
                enabled = st.checkbox(f"{name} enabled", value=value is not None, key=self._key(path + ".__enabled"), help=field.description)
            current = value if isinstance(value, dict) else inner().model_dump(mode="json")
            sub = self._fields(inner, list(inner.model_fields), current, f"{path}.", columns=2)
        return sub if enabled else None

    def _key(self, path: str) -> str:
        return f"{self.prefix}:{path}"

    def _widget(self, field: FieldInfo, name: str, value: Any, path: str) -> Any:
        tp, optional = _unwrap_optional(field.annotation)
        help_text = field.description or None
        key = self._key(path)
        label = _label(name)
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


def render_config_form(cls: type[BaseModel], values: dict[str, Any], key_prefix: str) -> dict[str, Any]:
    return SchemaForm(cls, values, key_prefix).render()
