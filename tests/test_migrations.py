"""Schema versioning: the migrated schema is the models' schema, an old store is refused with the command to run,
and `workbench db upgrade` keeps every row, on SQLite (a store made by c1f55c2, tests/fixtures/) and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, create_engine, insert, inspect, select, text

from workbench.settings import get_settings
from workbench.store import StoreSchemaError, dispose_engines, get_engine, schema

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "workbench_c1f55c2.db"
TABLES = ["run", "metric", "metric_summary", "metric_rollup", "checkpoint", "event"]
ORDER = {"run": "id", "metric": "id", "metric_summary": "run_id, key", "metric_rollup": "run_id, key, level, bucket", "checkpoint": "id", "event": "id"}

pytestmark = pytest.mark.both_backends


def _rows(conn, table: str, columns: list[str] | None = None) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every row of a table as the database's own column types read it (JSON parsed, booleans as bool)."""
    t = Table(table, MetaData(), autoload_with=conn)
    rows = conn.execute(select(t).order_by(*[t.c[c.strip()] for c in ORDER[table].split(",")])).mappings()
    return [{k: r[k] for k in columns} if columns else dict(r) for r in rows]


def _fixture_rows() -> dict[str, list[dict]]:
    eng = create_engine(f"sqlite:///{FIXTURE}")
    try:
        with eng.connect() as conn:
            return {t: _rows(conn, t) for t in TABLES}
    finally:
        eng.dispose()


def _wb(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def _old_store(home: Path, store_backend: str) -> str:
    """A store as a workbench before Alembic left it, holding the fixture's rows; returns its URL."""
    url = get_settings().database_url
    if store_backend == "sqlite":
        shutil.copy(FIXTURE, home / "workbench.db")
        return url
    # PostgreSQL: the baseline schema (revision 0001 is exactly what create_all made), the fixture's rows, and no
    # alembic_version table, as create_all would have left it
    schema.upgrade(url, "0001")
    eng = create_engine(url)
    with eng.begin() as conn:
        for table, rows in _fixture_rows().items():
            if rows:
                conn.execute(insert(Table(table, MetaData(), autoload_with=conn)), rows)
        conn.execute(text("DROP TABLE alembic_version"))
        # serial columns continue after the copied ids, as they would in a store that made those rows
        for table in ("metric", "checkpoint", "event"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))
    eng.dispose()
    return url


def test_head_is_the_newest_revision_and_history_is_linear():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(schema.MIGRATIONS))
    assert script.get_heads() == [schema.HEAD]
    assert [s.revision for s in reversed(list(script.walk_revisions()))] == ["0001", "0002", "0003"]


def test_a_new_store_is_created_at_head_and_matches_the_models(home):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    eng = get_engine(get_settings().database_url)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == schema.HEAD
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"the models and the migrations disagree; add a revision: {diff}"


def test_an_old_store_is_refused_then_upgraded_with_every_row_kept(home, store_backend):
    home.mkdir(parents=True, exist_ok=True)
    url = _old_store(home, store_backend)
    before = _fixture_rows()
    assert len(before["run"]) == 2 and len(before["metric"]) == 174 and len(before["checkpoint"]) == 3

    with pytest.raises(StoreSchemaError, match="workbench db upgrade") as refused:
        get_engine(url)
    assert "before the schema was versioned" in str(refused.value)
    # the CLI says the same, with no traceback, and exits 2
    listed = _wb("list", home=home)
    assert listed.returncode == 2 and "workbench db upgrade" in listed.stderr and "Traceback" not in listed.stderr
    assert "revision 0001 (made before the schema was versioned)" in _wb("db", "current", home=home).stdout

    upgraded = _wb("db", "upgrade", home=home)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from revision 0001 (made before the schema was versioned) to 0003" in upgraded.stdout
    assert "already at revision 0003" in _wb("db", "upgrade", home=home).stdout

    dispose_engines()
    eng = get_engine(url)
    with eng.connect() as conn:
        for table in TABLES:
            assert _rows(conn, table, list(before[table][0]) if before[table] else None) == before[table], table
        runs = _rows(conn, "run")
    assert [(r["host"], r["journal_seq"]) for r in runs] == [(None, 0), (None, 0)]

    # the upgraded store works: reads through the api, `pruned` allowed, new rows get new ids
    from workbench import api
    from workbench.store import runs as run_store
    from workbench.store.models import RunStatus, RunUpdate

    lin = next(r for r in api.list_runs() if r.name == "fixture-lin")
    assert lin.status == RunStatus.COMPLETED and lin.best_value == pytest.approx(min(c.metrics["valid/loss"] for c in api.checkpoints(lin.id)))
    assert api.series(lin.id, "train/loss").total_points == 60
    assert [e.kind for e in api.events(lin.id)] == ["queued", "starting", "running", "completed"]
    run_store.update_run(eng, run_id=lin.id, run_in=RunUpdate(host="node-1", journal_seq=3))
    with eng.begin() as conn:
        conn.execute(text("UPDATE run SET status = 'pruned' WHERE id = :id"), {"id": lin.id})
    from workbench.store.events import add_event
    from workbench.store.models import EventCreate

    add_event(eng, run_id=lin.id, event_in=EventCreate(kind="note", message="after the upgrade"))
    assert api.events(lin.id)[-1].id == max(e["id"] for e in before["event"]) + 1


def test_a_store_at_an_older_revision_is_refused(home):
    url = get_settings().database_url
    schema.upgrade(url, "0001")
    with pytest.raises(StoreSchemaError, match=r"is at schema revision 0001; this workbench needs revision 0003.*workbench db upgrade"):
        get_engine(url)
    before, after = schema.upgrade(url)
    assert (before.revision, after.revision) == ("0001", "0003")
    get_engine(url)


def test_a_store_from_a_newer_workbench_is_refused(home):
    url = get_settings().database_url
    get_engine(url)
    dispose_engines()
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    eng.dispose()
    with pytest.raises(StoreSchemaError, match="revision 0099, which this workbench does not know"):
        get_engine(url)
    with pytest.raises(StoreSchemaError, match="does not know"):
        schema.upgrade(url)


def test_the_app_shows_the_upgrade_message_for_an_old_store(home, store_backend):
    if store_backend != "sqlite":
        pytest.skip("the page is the same on both backends")
    from streamlit.testing.v1 import AppTest

    home.mkdir(parents=True, exist_ok=True)
    _old_store(home, store_backend)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and "workbench db upgrade" in at.error[0].value


def test_a_failed_upgrade_leaves_the_store_as_it_was(home, store_backend):
    """The stamp and every revision run in one transaction: a revision that fails undoes all of it."""
    home.mkdir(parents=True, exist_ok=True)
    url = _old_store(home, store_backend)
    eng = create_engine(url)
    with eng.begin() as conn:
        if store_backend == "sqlite":
            conn.execute(text("CREATE TABLE _alembic_tmp_run (x INTEGER)"))  # the batch copy of `run` cannot be made
        else:
            conn.execute(text("ALTER TABLE run ADD COLUMN host VARCHAR"))  # 0002's add_column fails
    with pytest.raises(Exception, match="_alembic_tmp_run|host"):
        schema.upgrade(url)
    with eng.connect() as conn:
        assert not inspect(conn).has_table("alembic_version")
        assert "journal_seq" not in {c["name"] for c in inspect(conn).get_columns("run")}
        assert len(_rows(conn, "metric")) == 174
    eng.dispose()
    assert not schema.current(url).versioned
