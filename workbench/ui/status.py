"""A run's status line as text (status, duration, best, ETA, progress), apart from how it is drawn: Streamlit's
metrics draw it for an ended run (common.status_line), the live view draws it from its poll while the run is active
(live_data.py), so watching a run needs no Streamlit fragment redrawing it every few seconds."""

from __future__ import annotations

from typing import Any

from workbench import api


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def status_fields(run: api.RunRead) -> dict[str, Any]:
    """{"metrics": [[label, value] x 4], "progress": {"fraction", "text"} or None, "phase", "started_ms"}."""
    p = api.progress(run)
    best = "-" if run.best_value is None else f"{run.best_value:.4f}"
    metrics = [
        ["Status", str(run.status)],
        ["Duration", fmt_duration(run.duration_s)],
        [f"Best {run.monitor_key or ''}".strip(), best],
        ["ETA", fmt_duration(p.eta_s)],
    ]
    progress = None
    if p.fraction is not None:
        text = f"{p.done:g} / {p.total:g} {p.unit}"
        if p.rate:
            text += f" · {p.rate:.2f} {p.unit}/s"
        if run.phase:
            text += f" · {run.phase}"
        progress = {"fraction": min(max(p.fraction, 0.0), 1.0), "text": text}
    return {
        "metrics": metrics,
        "progress": progress,
        "phase": run.phase if progress is None and run.phase else None,
        "started_ms": run.started_at * 1000 if run.started_at else None,
    }
