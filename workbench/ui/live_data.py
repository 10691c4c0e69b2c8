"""JSON routes that feed the Dashboard's live view (workbench/ui/live/), mounted beside Streamlit by serve.py.

    GET /live/runs/{run_id}/series.json?key=K&key=...          each key's series (bucketed past 2,000 points)
    GET /live/runs/{run_id}/poll.json?key=K&after=STEP&...     what arrived since: points after each key's step,
        &log=BYTES&events=LAST_ID                              the log tail if the log grew, new events, the
                                                               status line and the chart plan's token
    GET /live/static/{name}                                    the vendored vega and vega-lite (versioned names),
                                                               cached by the browser for a year

The live view asks poll.json about once a second while the run is active. An answer is a handful of index seeks,
the run's row and summaries, and a stat of the log file: no chart spec, no Streamlit rerun. The view asks the page
to rerun only when the plan token differs from the one it was drawn with (a new key, a series passing the
few-points mark) or the run ended. What this replaced and what it saves is in docs/dashboard.md.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from workbench import api
from workbench.ui.live_charts import Shape
from workbench.ui.status import status_fields

PREFIX = "/live/runs"
STATIC = "/live/static"
VENDOR = Path(__file__).parent / "live" / "vendor"
VENDORED = {p.name for p in VENDOR.glob("*.min.js")}  # the names carry the version, so a year's caching is safe
MAX_POINTS = 2000  # per series on first load: the browser redraws this many smoothly every second
POLL_LIMIT = 5000  # new points per key per poll; past it the view loads the key's series again (bucketed)
LOG_BYTES = 6000


def _number(x: float | None) -> float | None:
    """JSON has no NaN or infinity: a gap in the line."""
    return x if x is not None and math.isfinite(x) else None


def plan_signature(run: api.RunRead, summaries: pd.DataFrame) -> tuple:
    """What the Dashboard's chart plan depends on besides the user's controls: the keys, which are one-value
    results, each series' Shape (its spec), and whether a profile summary is there to show."""
    shapes = tuple(
        (key, count == 1, Shape.of(int(count), float(lo), float(hi)))
        for key, count, lo, hi in summaries[["key", "count", "min", "max"]].itertuples(index=False)
    )
    return shapes, bool(run.config.get("profiling")) and api.has_profile_summary(run.id)


def plan_token(run: api.RunRead, summaries: pd.DataFrame) -> str:
    return hashlib.sha1(repr(plan_signature(run, summaries)).encode()).hexdigest()[:16]


def _args(request: Request, name: str) -> list[str]:
    return request.query_params.getlist(name)


def _series(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    try:
        api.get_run(run_id)
    except api.RunNotFound as exc:
        return PlainTextResponse(f"Not found: {exc}\n", status_code=404)
    out: dict[str, Any] = {}
    for key in _args(request, "key"):
        s = api.series(run_id, key, max_points=MAX_POINTS)
        f = s.frame
        rows = [
            [int(step), _number(v), _number(lo), _number(hi), float(w)]
            for step, v, lo, hi, w in zip(f["step"], f["value"], f["vmin"], f["vmax"], f["wall"], strict=True)
        ]
        out[key] = {"rows": rows, "total": s.total_points, "down": s.downsampled}
    return JSONResponse({"series": out})


def _poll(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    try:
        run = api.get_run(run_id)
    except api.RunNotFound as exc:
        return PlainTextResponse(f"Not found: {exc}\n", status_code=404)
    keys, afters = _args(request, "key"), _args(request, "after")
    try:
        after = {k: int(a) for k, a in zip(keys, afters, strict=True)}
        log_seen, events_seen = int(request.query_params.get("log", -1)), int(request.query_params.get("events", -1))
    except ValueError as exc:
        return PlainTextResponse(f"Bad request: key/after pairs and log/events must be integers ({exc})\n", status_code=400)
    new = api.points_after(run_id, after, limit=POLL_LIMIT)
    points = {k: [[int(s), _number(v), float(w)] for s, v, w in rows] for k, rows in new.items() if rows}
    answer: dict[str, Any] = {
        "status": run.status,
        "ended": run.status in api.ENDED,
        "run": status_fields(run),
        "plan": plan_token(run, api.metric_summaries([run_id])),
        "points": points,
        "more": [k for k, rows in new.items() if len(rows) >= POLL_LIMIT],
    }
    log = api.run_dir(run_id) / "train.log"
    size = os.stat(log).st_size if log.exists() else 0
    if size != log_seen:
        answer["log"] = {"size": size, "text": api.log_tail(run_id, LOG_BYTES)}
    events = api.events(run_id)
    last_event = events[-1].id if events else 0
    if last_event != events_seen:
        rows = [{"time": e.time * 1000, "event": e.kind, "message": e.message} for e in events]  # drawn in local time
        answer["events"] = {"last": last_event, "rows": rows}
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


def _static(request: Request) -> Response:
    """vega and vega-lite for the live view. Streamlit's component route sends them with `Cache-Control: public`
    and no lifetime or validator, so every Dashboard load downloaded (767 kB) and compiled them again."""
    name = request.path_params["name"]
    if name not in VENDORED:
        return PlainTextResponse(f"Not found: {name}\n", status_code=404)
    return FileResponse(VENDOR / name, media_type="text/javascript", headers={"Cache-Control": "public, max-age=31536000, immutable"})


def routes() -> list[Route]:
    return [
        Route(PREFIX + "/{run_id}/series.json", _series, methods=["GET"]),
        Route(PREFIX + "/{run_id}/poll.json", _poll, methods=["GET"]),
        Route(STATIC + "/{name}", _static, methods=["GET"]),
    ]


def base_url(run_id: str) -> str:
    return f"{PREFIX}/{quote(run_id, safe='')}"
