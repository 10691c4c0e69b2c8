"""Plain-text formatting of times, durations and numbers for people (the CLI's tables; pages may use it too)."""

from __future__ import annotations

import math
import time

MISSING = "-"


def local_time(ts: float | None) -> str:
    """Unix seconds as local time to the minute, e.g. `2026-11-25 16:30`."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else MISSING


def duration(seconds: float | None) -> str:
    """`45s`, `1m05s`, `2h03m00s`."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def number(value: float | None) -> str:
    """Four significant digits: 0.8123, 1.234e-05, 1235."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:.4g}"


def table(rows: list[dict[str, str]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def size(n_bytes: int) -> str:
    """`812 B`, `2.2 kB`, `236.0 MB`, `1.20 GB` (decimal units, as file managers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}" if unit == "GB" else f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"
