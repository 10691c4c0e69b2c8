"""Every test gets a fresh WORKBENCH_HOME (and so a fresh SQLite store); the linreg test task is registered."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WORKBENCH_TASK_MODULES", "tests.support.linreg_task")
# Tests run a worker beside Streamlit, Chromium or another worker: one torch thread each avoids contention
os.environ.setdefault("WORKBENCH_CPU_THREADS", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture()
def home(tmp_path, monkeypatch):
    from workbench.settings import reset_settings
    from workbench.store import dispose_engines

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WORKBENCH_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("WORKBENCH_CANCEL_GRACE_S", "10")
    reset_settings()
    dispose_engines()
    yield tmp_path / "home"
    from workbench.runner.scheduler import stop_background_housekeeping

    stop_background_housekeeping()  # started by app.py under AppTest, or a test: it must not outlive this store
    dispose_engines()
    reset_settings()
