"""Run tags: the one place that decides what a tag is, used by every way a run gets tags."""

from __future__ import annotations

from collections.abc import Iterable


def clean_tags(tags: str | Iterable[str] | None) -> list[str]:
    """Trimmed, empty ones dropped, each once, in the order given; a string is read as comma-separated.

    `" baseline, ,baseline,lr-sweep"` -> `["baseline", "lr-sweep"]`: the tag filter compares exact strings, so a
    stored `" baseline"` would never be found.
    """
    if tags is None:
        return []
    items = tags.split(",") if isinstance(tags, str) else [part for tag in tags for part in str(tag).split(",")]
    return list(dict.fromkeys(t.strip() for t in items if t.strip()))
