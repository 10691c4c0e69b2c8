"""Executors: who places a run's supervisor. `WORKBENCH_EXECUTOR=local` (the default) starts it as a detached process
on this machine; `ray` has Ray place it on a node of an existing cluster (runner/ray_executor.py).

The executor is the only thing that changes between the two. Everything that starts, stops or judges a run goes
through the one chosen here: launch and resume (launch.py), the housekeeping pass (scheduler.py: reconcile, then
start queued runs), cancel. Forks, evaluations and study trials are launches, so they follow. The supervisor itself
(`python -m workbench.runner.supervisor RUN_ID ATTEMPT`: claim, worker or torchrun, heartbeat, cooperative cancel,
journal) is the same under both.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Engine

from workbench.settings import Settings, get_settings
from workbench.store.models import RunRead


class ExecutorError(RuntimeError):
    """The chosen executor cannot place runs (not installed, no cluster address, a store the cluster cannot share).
    The message says what to do."""


class Executor(Protocol):
    name: str

    def check_launch(self, config: dict[str, Any]) -> None:
        """Raise ExecutorError (ValueError for a config it can never place) before a run is inserted."""

    def start_queued(self, engine: Engine, settings: Settings) -> list[str]:
        """Start (local) or hand to the cluster (ray) the queued runs it may; called under the scheduler lock.
        Returns the ids of the runs it started or submitted."""

    def why_lost(self, run: RunRead, settings: Settings, now: float) -> str | None:
        """Why an active run is lost (its supervisor is gone), or None while it may be alive."""

    def reconcile(self, engine: Engine, settings: Settings) -> list[str]:
        """Executor-specific repairs under the scheduler lock (ray: queued runs whose submission died, cancels past
        their grace period). Returns the ids of the runs it ended."""

    def signal_cancel(self, run: RunRead) -> str | None:
        """Tell an active run's supervisor to stop now (the cancel flag is already set). Returns how, or None when
        no signal could be sent (the supervisor then reads the flag at its next heartbeat)."""

    def withdraw(self, run: RunRead) -> None:
        """A queued run was cancelled: forget whatever was submitted for it."""


class LocalExecutor:
    """Today's executor: a detached supervisor process on this machine, `max_concurrent_runs` at a time. The code is
    scheduler.py's and launch.py's (looked up at call time, so tests may replace scheduler.start_supervisor)."""

    name = "local"

    def check_launch(self, config: dict[str, Any]) -> None:
        """This machine only: a run spanning nodes needs the ray executor, unless its config names a rendezvous that
        the other machines join by hand (ctr_stream's `rdzv_endpoint`). `resources` is the ray executor's; ignored."""
        nnodes = int(config.get("nnodes", 1))  # configs stored before the setting existed have no key
        if nnodes > 1 and not config.get("rdzv_endpoint"):
            raise ExecutorError(
                f"nnodes: {nnodes} spans {nnodes} machines, and the local executor starts processes on this one only. "
                "Set nnodes: 1 (nproc_per_node processes on this machine), or use WORKBENCH_EXECUTOR=ray with "
                "RAY_ADDRESS of a cluster that has that many nodes (docs/cluster.md)."
            )

    def start_queued(self, engine: Engine, settings: Settings) -> list[str]:
        from workbench.runner import scheduler

        return scheduler.schedule_here(engine, settings)

    def why_lost(self, run: RunRead, settings: Settings, now: float) -> str | None:
        from workbench.runner import scheduler

        return scheduler.why_lost(run, settings, now)

    def reconcile(self, engine: Engine, settings: Settings) -> list[str]:
        return []

    def signal_cancel(self, run: RunRead) -> str | None:
        from workbench.runner import launch

        return "SIGTERM sent; the run saves a checkpoint and stops" if launch.signal_supervisor(run) else None

    def withdraw(self, run: RunRead) -> None:
        return None


_LOCAL = LocalExecutor()


def get_executor(settings: Settings | None = None) -> Executor:
    """The executor `WORKBENCH_EXECUTOR` names. `ray` connects to the cluster at RAY_ADDRESS on first use (once per
    process) and raises ExecutorError with what to do when it cannot."""
    settings = settings or get_settings()
    if settings.executor == "local":
        return _LOCAL
    try:
        from workbench.runner import ray_executor
    except ImportError as exc:  # ray itself is missing (ray_executor imports it at the top)
        raise ExecutorError(
            f"WORKBENCH_EXECUTOR=ray, but Ray is not installed here ({exc}). Install it with "
            "`pip install -e '.[ray]'` (or `pip install ray`) on this machine and on every node of the cluster."
        ) from exc
    return ray_executor.connect(settings)
