"""Study driver process: `python -m workbench.runner.study_driver STUDY_ID`, started detached (own session), so a
study goes on when the UI or the CLI that started it goes away.

Each second it runs one pass of workbench.studies.driver.StudyDriver (collect ended trials, launch new ones) and
beats the study's heartbeat. SIGTERM or the study's cancel flag: no new trials, the running trials are cancelled
(each checkpoints and stops), and the study ends `cancelled` once they have. Killed outright, the driver leaves the
study `running` with a stale heartbeat; `workbench study resume` starts a new driver that carries on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from workbench.config.io import parse_config
from workbench.settings import get_settings
from workbench.studies.driver import StudyDriver, TrialOutcome
from workbench.studies.options import StudyOptions, make_sampler
from workbench.studies.space import parse_space

POLL_S = 1.0


def studies_dir() -> Path:
    return get_settings().studies_dir


def start(engine: Any, study_id: str) -> subprocess.Popen[bytes]:
    """Start the driver of a study, detached, logging to studies/<id>/driver.log. Its pid, create time and host are
    recorded at once (the driver records them again when it runs), so a reader never mistakes a driver still
    starting up for a dead one."""
    from workbench.store import studies as study_store
    from workbench.store.studies import StudyUpdate

    settings = get_settings()
    folder = studies_dir() / study_id
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WORKBENCH_HOME": str(settings.home_dir), "PYTHONUNBUFFERED": "1"}
    if settings.db_url:
        env["WORKBENCH_DB_URL"] = settings.db_url
    with open(folder / "driver.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.runner.study_driver", study_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=os.getcwd(),
        )  # fmt: skip
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it: a long-lived UI must not collect zombies
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = None  # it already ended: the reader sees a dead driver, which is true
    study_store.update_study(
        engine, study_id=study_id, study_in=StudyUpdate(driver_pid=proc.pid, driver_start=created, host=settings.host, heartbeat_at=time.time())
    )
    return proc


def driver_alive(study: Any) -> bool:
    """The study's driver process is alive (on this host: its pid and create time; elsewhere: a fresh heartbeat)."""
    settings = get_settings()
    if study.host and study.host != settings.host:
        return study.heartbeat_at is not None and time.time() - study.heartbeat_at < settings.lost_after_s
    if study.driver_pid is None:
        return False
    try:
        proc = psutil.Process(study.driver_pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (study.driver_start is None or abs(proc.create_time() - study.driver_start) < 1.0)
    except psutil.NoSuchProcess:
        return False


class RunPlatform:
    """The driver's view of the workbench: a trial is launched like any run, with its study and trial number."""

    def __init__(self, engine: Any, study: Any) -> None:
        self.engine = engine
        self.study = study

    def launch_trial(self, config: dict[str, Any], trial_number: int) -> str:
        from workbench.runner import launch

        cfg = parse_config(config, source=f"study {self.study.id} trial {trial_number}")
        run = launch.create(
            self.engine, cfg, name=f"{self.study.name} #{trial_number}", tags=["study"],
            notes=f"trial {trial_number} of study {self.study.id}", study_id=self.study.id, trial_number=trial_number,
        )  # fmt: skip
        return run.id

    def outcome(self, run_id: str, objective: str, direction: str) -> TrialOutcome | None:
        from workbench.store import metrics, runs
        from workbench.store.models import ENDED

        run = runs.get_run(self.engine, run_id=run_id)
        if run.status not in ENDED:
            return None
        summary = metrics.summaries(self.engine, run_ids=[run.id])
        row = summary[summary["key"] == objective]
        value = None if row.empty else float(row["max"].iloc[0] if direction == "maximize" else row["min"].iloc[0])
        return TrialOutcome(str(run.status), value, run.error)

    def cancel(self, run_id: str) -> None:
        from workbench.runner import launch

        launch.cancel(self.engine, run_id)


def main(study_id: str) -> int:
    from workbench.store import get_engine
    from workbench.store import studies as study_store
    from workbench.store.studies import StudyStatus, StudyUpdate
    from workbench.studies import optuna_io

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("workbench.study")
    settings = get_settings()
    engine = get_engine(settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    study = study_store.get_study(engine, study_id=study_id)
    me = psutil.Process()
    study_store.update_study(
        engine, study_id=study.id,
        study_in=StudyUpdate(status=StudyStatus.RUNNING, host=settings.host, driver_pid=me.pid, driver_start=me.create_time(), heartbeat_at=time.time(), error=None),
    )  # fmt: skip
    try:
        base = parse_config(study.base_config, source=f"study {study.id} base config")
        space = parse_space(study.space, base)
        options = StudyOptions.model_validate(study.options)
        optuna_study = optuna_io.load(optuna_io.journal_path(studies_dir(), study.id), study.id, sampler=make_sampler(options, space))
        driver = StudyDriver(
            optuna_study, base=study.base_config, space=space, options=options, objective=study.objective,
            platform=RunPlatform(engine, study), started_at=study.created_at,
        )  # fmt: skip
        cancelling = False
        log.info("study %s: %d trials, %d at once, %s sampler, %s pruner", study.id, options.n_trials, options.parallel, options.sampler, options.pruner)
        while True:
            if not cancelling and (stop.is_set() or study_store.get_study(engine, study_id=study.id).cancel_requested):
                log.info("study %s cancelled: stopping its running trials", study.id)
                driver.cancel()
                cancelling = True
            busy = driver.step(accept_new=not cancelling)
            study_store.update_study(engine, study_id=study.id, study_in=StudyUpdate(heartbeat_at=time.time()))
            if not busy:
                break
            time.sleep(POLL_S)
        final = StudyStatus.CANCELLED if cancelling else StudyStatus.COMPLETED
        study_store.update_study(engine, study_id=study.id, study_in=StudyUpdate(status=final, ended_at=time.time(), driver_pid=None))
        log.info("study %s %s", study.id, final)
        return 0
    except Exception as exc:
        log.error("study driver failed: %s\n%s", exc, traceback.format_exc())
        study_store.update_study(
            engine, study_id=study.id, study_in=StudyUpdate(status=StudyStatus.FAILED, error=f"{type(exc).__name__}: {exc}", driver_pid=None)
        )
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
