"""The Dashboard's live view: a Streamlit component (workbench/ui/live/) that draws the run's charts, log tail and
events, and follows the run by itself.

Streamlit tells it what to draw: the sections of charts (pinned, overview, groups) with their Vega-Lite specs and
how the user wants them drawn. The component loads each chart's points once, then asks live_data.py's poll route
about once a second for what arrived since and inserts those points into the Vega views it has. So watching a run
costs a small JSON answer a second, not a Streamlit rerun that re-sends and re-styles every element of the page
(docs/dashboard.md has the profile that showed where the time went). A hidden tab does not poll. The page reruns
when the view asks it to: the chart plan changed (new keys) or the run ended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

from workbench import api
from workbench.ui.live_data import MAX_POINTS, base_url
from workbench.ui.charts import FEW_POINTS
from workbench.ui.live_charts import ChartView

POLL_S = 1.0  # while points arrive; 2 s after ten quiet polls
_component = components.declare_component("workbench_live", path=str(Path(__file__).parent / "live"))


def live_view(
    run: api.RunRead,
    sections: list[dict[str, Any]],
    view: ChartView,
    *,
    live: bool,
    key: str,
    results: list[list] | None = None,
    message: str | None = None,
    status: dict[str, Any] | None = None,
    plan: str = "",
) -> None:
    """sections: [{"title", "note", "charts": [{"id", "title", "keys", "spec", "caption"}]}]; results: [[key, value,
    step]] of the one-value metrics; message: why there is nothing to draw; status: status.status_fields() while the
    run is active (the poll keeps it current); plan: live_data.plan_token() of what the page drew. The view sets the
    component's value (which reruns the page) when the poll's token differs or the run ended."""
    _component(
        run=run.id,
        base=base_url(run.id),
        live=live,
        poll_ms=int(POLL_S * 1000),
        started_ms=run.started_at * 1000 if run.started_at else None,
        x=view.x,
        smoothing=view.smoothing,
        max_points=MAX_POINTS,
        few=FEW_POINTS,
        sections=sections,
        results=results or [],
        message=message,
        status=status,
        plan=plan,
        key=key,
        default=None,
    )
