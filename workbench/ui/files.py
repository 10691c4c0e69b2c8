"""HTTP routes that stream run files from disk, mounted beside Streamlit by `workbench ui` (serve.py).

    GET /files/runs/{run_id}/checkpoints/{checkpoint_id}   a checkpoint file (a folder output comes as a zip)
    GET /files/runs/{run_id}/bundle.zip                    config, every metric point, log, best + latest checkpoints
    GET /files/runs/{run_id}/metrics.csv | metrics.parquet every metric point; ?keys=GLOB keeps matching keys
    GET /files/runs/{run_id}/inference/{path}              an output of the Try-it inference preview
    GET /files/runs/{run_id}/profile/trace.json            the profiler's Chrome trace (`profiling: true`)

Starlette's FileResponse reads 64 KB at a time and answers Range requests (206, Content-Range), so the server's
memory does not grow with the file and an interrupted download can resume. Every path goes through the api's
download guard (nothing outside WORKBENCH_HOME, no `..`, no symlink out). A missing run, checkpoint or file answers
404 with a plain sentence. Endpoints are plain functions: Starlette runs them in a worker thread, so building a zip
never stalls the event loop that also carries every Streamlit session.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from workbench import api

PREFIX = "/files/runs"


def checkpoint_url(run_id: str, checkpoint_id: int) -> str:
    return f"{PREFIX}/{quote(run_id, safe='')}/checkpoints/{checkpoint_id}"


def bundle_url(run_id: str) -> str:
    return f"{PREFIX}/{quote(run_id, safe='')}/bundle.zip"


def inference_url(run_id: str, relative: str) -> str:
    return f"{PREFIX}/{quote(run_id, safe='')}/inference/{quote(relative)}"


def profile_trace_url(run_id: str) -> str:
    return f"{PREFIX}/{quote(run_id, safe='')}/profile/trace.json"


def metrics_url(run_id: str, fmt: str = "csv", keys: str | None = None) -> str:
    query = f"?{urlencode({'keys': keys})}" if keys else ""
    return f"{PREFIX}/{quote(run_id, safe='')}/metrics.{fmt}{query}"


class _TempFileResponse(FileResponse):
    """A FileResponse that deletes its file afterwards, also when the client goes away mid-download (Starlette
    skips a response's background task then)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            Path(self.path).unlink(missing_ok=True)


def _send(make: Callable[[], api.Download]) -> Response:
    try:
        download = make()
    except (FileNotFoundError, api.RunNotFound) as exc:
        return PlainTextResponse(f"Not found: {exc}\n", status_code=404)
    except api.UnsafePath as exc:
        return PlainTextResponse(f"Refused: {exc}\n", status_code=403)
    except ValueError as exc:
        return PlainTextResponse(f"Bad request: {exc}\n", status_code=400)
    response = _TempFileResponse if download.temporary else FileResponse
    return response(download.path, media_type=download.media_type, filename=download.name)


def _checkpoint(request: Request) -> Response:
    p = request.path_params
    return _send(lambda: api.checkpoint_download(p["run_id"], p["checkpoint_id"]))


def _bundle(request: Request) -> Response:
    return _send(lambda: api.bundle_download(request.path_params["run_id"]))


def _metrics(request: Request) -> Response:
    p = request.path_params
    keys = request.query_params.get("keys") or None
    return _send(lambda: api.metrics_download(p["run_id"], p["fmt"], keys))


def _inference(request: Request) -> Response:
    p = request.path_params
    return _send(lambda: api.inference_download(p["run_id"], p["path"]))


def _profile_trace(request: Request) -> Response:
    return _send(lambda: api.profile_trace_download(request.path_params["run_id"]))


def routes() -> list[Route]:
    return [
        Route(PREFIX + "/{run_id}/checkpoints/{checkpoint_id:int}", _checkpoint, methods=["GET"]),
        Route(PREFIX + "/{run_id}/bundle.zip", _bundle, methods=["GET"]),
        Route(PREFIX + "/{run_id}/metrics.{fmt}", _metrics, methods=["GET"]),
        Route(PREFIX + "/{run_id}/inference/{path:path}", _inference, methods=["GET"]),
        Route(PREFIX + "/{run_id}/profile/trace.json", _profile_trace, methods=["GET"]),
    ]
