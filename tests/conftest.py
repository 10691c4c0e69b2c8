"""Every test gets a fresh WORKBENCH_HOME (and so a fresh SQLite store); the linreg test task is registered.

Modules marked `both_backends` (store, runner, CLI end to end) run each test twice: on SQLite and on a fresh
database of a throwaway PostgreSQL server (one per test session; WORKBENCH_DB_URL is set for the test and the
processes it starts). Without PostgreSQL those runs are skipped, or fail when CI is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WORKBENCH_TASK_MODULES", "tests.support.linreg_task")
# Tests run a worker beside Streamlit, Chromium or another worker: one torch thread each avoids contention
os.environ.setdefault("WORKBENCH_CPU_THREADS", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BACKENDS = ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_backends") and "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    from tests.support.postgres import PostgresServer, require

    require()
    server = PostgresServer()
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.root / "server.log"
        said = log.read_text()[-500:] if log.exists() else ""
        server.destroy()
        message = f"PostgreSQL tests cannot run: the throwaway server did not start ({exc}): {exc.stdout!r}; its log ended with: {said}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield server
    server.destroy()


@pytest.fixture()
def store_backend(request: pytest.FixtureRequest) -> str:
    """'sqlite' unless the module is marked both_backends (then each test runs once per backend)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture()
def database_url(store_backend: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL database's URL on the postgresql backend; None (SQLite in WORKBENCH_HOME) otherwise."""
    if store_backend == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture()
def home(tmp_path, monkeypatch, database_url):
    from workbench.settings import reset_settings
    from workbench.store import dispose_engines

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WORKBENCH_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("WORKBENCH_CANCEL_GRACE_S", "10")
    if database_url is None:
        monkeypatch.delenv("WORKBENCH_DB_URL", raising=False)
    else:
        monkeypatch.setenv("WORKBENCH_DB_URL", database_url)
    reset_settings()
    dispose_engines()
    yield tmp_path / "home"
    from workbench.runner.scheduler import stop_background_housekeeping

    stop_background_housekeeping()  # started by app.py under AppTest, or a test: it must not outlive this store
    dispose_engines()
    reset_settings()
