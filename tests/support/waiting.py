"""Small polling helpers for tests that watch background runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> T:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_status(run_id: str, statuses: tuple[str, ...], timeout: float = 90.0):  # type: ignore[no-untyped-def]
    from workbench import api

    def check():  # type: ignore[no-untyped-def]
        run = api.get_run(run_id)
        return run if run.status in statuses else None

    return wait_for(check, timeout, what=f"run {run_id} to reach {statuses}")
