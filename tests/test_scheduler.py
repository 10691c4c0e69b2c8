"""Housekeeping (runner/scheduler.py): hosts, the periodic pass, and the scheduler lock on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import psutil
import pytest

from tests.support import postgres
from tests.support.waiting import wait_for, wait_status
from workbench import api
from workbench.runner import scheduler
from workbench.settings import get_settings, reset_settings
from workbench.store import dispose_engines
from workbench.store import runs as run_store
from workbench.store.models import RunCreate, RunStatus, RunUpdate

OTHER_HOST = "other-machine"


def _cfg(**overrides):  # type: ignore[no-untyped-def]
    return api.validate_dict({"task": "linreg", "train_batch_size": 16, "learning_rate": 0.05, **overrides})


def _insert(host: str | None, **overrides) -> str:  # type: ignore[no-untyped-def]
    run_in = RunCreate(task="linreg", name="r", config=api.to_dict(_cfg(**overrides)), monitor_key="valid/loss", monitor_mode="min", host=host)
    run = run_store.create_run(api.engine(), run_in=run_in)
    return run.id


def _running(host: str, *, pid: int, heartbeat_age_s: float) -> str:
    """A run that some supervisor (pid `pid` on `host`) runs, last heard from `heartbeat_age_s` ago."""
    eng = api.engine()
    run_id = _insert(host)
    run_store.transition(eng, run_id=run_id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED])
    run_store.transition(eng, run_id=run_id, to=RunStatus.RUNNING, expect=[RunStatus.STARTING])
    start = psutil.Process(pid).create_time() if psutil.pid_exists(pid) else time.time() - 100
    beat = RunUpdate(supervisor_pid=pid, supervisor_start=start, heartbeat_at=time.time() - heartbeat_age_s)
    run_store.update_run(eng, run_id=run_id, run_in=beat)
    return run_id


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _be_host(monkeypatch, host: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORKBENCH_HOST", host)
    reset_settings()


def test_pid_checks_apply_only_on_the_runs_host_elsewhere_the_heartbeat_decides(home, monkeypatch):
    here = get_settings().host
    stale = get_settings().lost_after_s + 5
    dead = _dead_pid()
    # a pid means nothing on another machine: a dead pid here with a fresh heartbeat is alive there
    remote_fresh = _running(OTHER_HOST, pid=dead, heartbeat_age_s=1)
    remote_stale = _running(OTHER_HOST, pid=dead, heartbeat_age_s=stale)
    local_dead = _running(here, pid=dead, heartbeat_age_s=1)
    local_alive = _running(here, pid=os.getpid(), heartbeat_age_s=1)
    done = api.housekeeping()
    assert sorted(done.lost) == sorted([remote_stale, local_dead])
    statuses = {r.id: r.status for r in api.list_runs()}
    assert statuses[remote_fresh] == "running" and statuses[local_alive] == "running"
    assert f"no heartbeat for {stale:.0f} s from host {OTHER_HOST}" in api.get_run(remote_stale).error
    assert f"supervisor process {dead} is gone" in api.get_run(local_dead).error
    # the same store seen from the other machine (WORKBENCH_HOST): now its dead pid counts, and ours does not
    _be_host(monkeypatch, OTHER_HOST)
    assert api.housekeeping().lost == [remote_fresh]
    assert api.get_run(local_alive).status == "running"


def test_the_housekeeping_command_runs_one_pass(home):
    import sys

    lost = _running(get_settings().host, pid=_dead_pid(), heartbeat_age_s=1)
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "housekeeping"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"lost: {lost}; started: none" in out.stdout
    assert api.get_run(lost).status == "lost"


def test_a_host_starts_only_the_runs_queued_on_it(home, monkeypatch):
    theirs = _insert(OTHER_HOST, epochs=1)
    assert api.housekeeping().started == []
    assert api.get_run(theirs).status == "queued"
    _be_host(monkeypatch, OTHER_HOST)  # this process plays the other machine, and so do the processes it starts
    assert api.housekeeping().started == [theirs]
    done = wait_status(theirs, ("completed", "failed", "lost"), timeout=90)
    assert done.status == "completed", done.error
    assert done.host == OTHER_HOST


def test_a_queued_run_starts_when_a_slot_frees_even_with_no_supervisor_left(home, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_RUNS", "1")
    reset_settings()
    first = api.launch_run(_cfg(epochs=200, step_sleep_s=0.02))
    second = api.launch_run(_cfg(epochs=1))
    wait_for(lambda: (api.get_run(first.id).progress_done or 0) >= 3, 60, what="the first run to train")
    # the whole group goes: no supervisor is left to record the end or start the next run
    os.killpg(os.getpgid(api.get_run(first.id).supervisor_pid), signal.SIGKILL)
    time.sleep(1.0)
    assert (api.get_run(first.id).status, api.get_run(second.id).status) == ("running", "queued")
    periodic = scheduler.PeriodicHousekeeping(interval=0.3)  # what the UI server runs
    periodic.start()
    try:
        done = wait_status(second.id, ("completed", "failed", "lost"), timeout=90)
    finally:
        periodic.stop()
    assert done.status == "completed", done.error
    assert api.get_run(first.id).status == "lost"


def _race_schedulers(monkeypatch, schedulers: int = 4, queued: int = 6) -> None:  # type: ignore[no-untyped-def]
    """`schedulers` housekeeping passes at once over `queued` runs with 2 slots: exactly 2 start."""
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_RUNS", "2")
    reset_settings()
    eng = api.engine()
    for _ in range(queued):
        _insert(get_settings().host)
    stand_ins: list[subprocess.Popen[bytes]] = []

    def slow_supervisor(run_id: str, attempt: int, settings) -> int:  # type: ignore[no-untyped-def]
        # a process that stays alive (the reconciler checks it) in place of a supervisor: the lock is under test,
        # not the worker; the pause widens the window between counting free slots and filling them
        time.sleep(0.05)
        stand_ins.append(subprocess.Popen(["sleep", "120"]))
        return stand_ins[-1].pid

    monkeypatch.setattr(scheduler, "start_supervisor", slow_supervisor)
    barrier = threading.Barrier(schedulers)
    passes: list[scheduler.Housekeeping | None] = []
    errors: list[BaseException] = []

    def one_scheduler() -> None:
        try:
            barrier.wait()
            passes.append(scheduler.housekeeping(eng))
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=one_scheduler) for _ in range(schedulers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        started = [run_id for p in passes if p is not None for run_id in p.started]
        assert len(started) == 2 and len(set(started)) == 2, started
        assert len(run_store.active_runs(eng)) == 2
        assert len(run_store.queued_runs(eng)) == queued - 2
    finally:
        for p in stand_ins:
            p.kill()
            p.wait()


def test_schedulers_at_once_never_overfill_the_slots_sqlite(home, monkeypatch):
    _race_schedulers(monkeypatch)


def test_a_periodic_pass_skips_while_another_holds_the_lock(home):
    from workbench.store.locks import scheduler_lock

    with scheduler_lock(api.engine()) as held:
        assert held
        assert scheduler.housekeeping(api.engine(), wait=False) is None
    assert scheduler.housekeeping(api.engine(), wait=False) is not None


@pytest.fixture(scope="module")
def pg_server():  # type: ignore[no-untyped-def]
    why_not = postgres.available()
    if why_not:
        pytest.skip(why_not)
    server = postgres.PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture()
def pg_home(home, pg_server, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORKBENCH_DB_URL", pg_server.create_database())
    reset_settings()
    dispose_engines()
    yield home
    dispose_engines()


def test_schedulers_at_once_never_overfill_the_slots_postgresql(pg_home, monkeypatch):
    assert api.engine().dialect.name == "postgresql"
    _race_schedulers(monkeypatch)


def test_a_periodic_pass_skips_while_another_holds_the_lock_postgresql(pg_home):
    test_a_periodic_pass_skips_while_another_holds_the_lock(pg_home)
