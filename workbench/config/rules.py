"""Cross-field rules that are reported together with the field errors, in one pass.

pydantic runs a model's `mode="after"` validators only when every field validated, so a config with one bad field
and one broken cross-field rule used to show the rule only after the field was fixed. `parse_config` therefore
validates twice when fields fail: the second time without the failed keys (their defaults stand in) and with the
failed paths in the validation context. Each rule says which fields it reads (`Problems.readable`); a rule that
reads a failed field is skipped on that second pass, so no rule ever judges a default the user did not write.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

INVALID_FIELDS = "invalid_fields"  # validation-context key: canonical dotted paths that failed their own checks


def _overlaps(failed: str, read: str) -> bool:
    """Does a rule that reads `read` (relative to its model) depend on the failed path `failed` (from the root)?

    A nested model does not know where it sits, so `weight_bounds` also matches `embed_sgd_param.weight_bounds`
    when the rule belongs to `embedx_sgd_param`: a rule may be skipped needlessly, never run on a stand-in default.
    """
    return (
        failed == read
        or failed.startswith(read + ".")
        or read.startswith(failed + ".")
        or failed.endswith("." + read)
        or f".{read}." in failed
    )


class Problems:
    """The cross-field problems of one model, raised together, each under its own field path."""

    def __init__(self, model: BaseModel, info: ValidationInfo | None = None):
        context = info.context if info is not None else None
        self.invalid: tuple[str, ...] = tuple(context.get(INVALID_FIELDS, ())) if isinstance(context, dict) else ()
        self.model = model
        self.found: list[InitErrorDetails] = []

    def readable(self, *fields: str) -> bool:
        """True if none of these fields (dotted, relative to the model) failed its own validation."""
        return not any(_overlaps(failed, read) for failed in self.invalid for read in fields)

    def add(self, field: str, message: str) -> None:
        loc = tuple(field.split("."))
        self.found.append(
            # the message goes through the context, so that braces in it are not read as format fields
            InitErrorDetails(
                type=PydanticCustomError("config_rule", "{message}", {"message": message}),
                loc=loc,
                input=_value_at(self.model, loc),
            )
        )

    def raise_if_any(self) -> None:
        if self.found:
            raise ValidationError.from_exception_data(type(self.model).__name__, self.found)


def _value_at(model: object, loc: tuple[str, ...]) -> Any:
    value: Any = model
    for part in loc:
        value = getattr(value, part, None)
    return value.model_dump() if isinstance(value, BaseModel) else value
