"""Tables of the store, and the typed models that go in and come out. Times are UNIX seconds (float); JSON columns
hold plain dicts/lists.

Per entity (as in full-stack-fastapi-template): a Base with the shared fields, the table class, a Create model (what
an insert takes), an Update model for runs (every field optional; only the fields set are written) and a Read model.
Callers get Read models, never live ORM rows.

The schema itself is owned by the Alembic revisions in store/migrations/versions/; tests/test_migrations.py checks
that these classes and the migrated schema agree, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Literal

from sqlalchemy import JSON, CheckConstraint, Column, Index, UniqueConstraint, text
from sqlmodel import AutoString, Field, SQLModel


class RunStatus(enum.StrEnum):
    """A run's lifecycle: queued -> starting -> running -> completed | failed | cancelled | lost | pruned."""

    QUEUED = "queued"
    STARTING = "starting"  # claimed for a supervisor process, which has not started the worker yet
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the supervisor vanished without reporting (power cut, SIGKILL of the whole group)
    PRUNED = "pruned"  # a study trial stopped by its pruner


# The one definition of "active": a supervisor owns the run; it takes one of `max_concurrent_runs` slots and the
# reconciler watches its process and heartbeat. A queued run is waiting, not active.
ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.STARTING, RunStatus.RUNNING})
# Where a run ends; failed, cancelled and lost ones can be resumed (back to queued).
ENDED: frozenset[RunStatus] = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST, RunStatus.PRUNED}
)

RunKind = Literal["train", "evaluate", "import"]
CheckpointKind = Literal["checkpoint", "best", "base", "delta", "batch", "inference"]
RUN_KINDS: tuple[str, ...] = ("train", "evaluate", "import")
CHECKPOINT_KINDS: tuple[str, ...] = ("checkpoint", "best", "base", "delta", "batch", "inference")


def status_check(statuses: list[str]) -> str:
    """The SQL of the run status CHECK constraint (the migrations use it with the list of their revision)."""
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


class RunBase(SQLModel):
    name: str
    task: str = Field(index=True)
    status: RunStatus = Field(default=RunStatus.QUEUED, index=True, sa_type=AutoString)  # a string column + CHECK
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    host: str | None = None  # the machine whose supervisor runs the run
    supervisor_pid: int | None = None
    supervisor_start: float | None = None  # process create time: a reused pid has another one
    host: str | None = None  # the machine that launched the run and runs its supervisor (settings.host)
    worker_pid: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    error: str | None = None
    traceback: str | None = None
    progress_done: float | None = None
    progress_total: float | None = None
    progress_unit: str | None = None
    progress_started_at: float | None = None  # when this attempt's progress began (for the ETA)
    progress_done_at_start: float | None = None
    phase: str | None = None  # e.g. "waiting for data: 20190720/0005"
    owner: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notes: str = ""
    parent_run_id: str | None = Field(default=None, index=True)
    parent_checkpoint_id: int | None = None
    attempt: int = 1
    cancel_requested: bool = False
    monitor_key: str | None = None
    monitor_mode: str | None = None
    kind: str = "train"  # "train"; "evaluate": a parent checkpoint on a data split; "import": an uploaded checkpoint
    eval_data: str | None = None  # evaluate: a data path other than the config's (None = the config's test split)
    journal_seq: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})  # last journal record applied
    study_id: str | None = Field(default=None, index=True)  # a study's trial: the study (see store/studies.py)
    trial_number: int | None = None  # ... and its Optuna trial number


class Run(RunBase, table=True):
    __table_args__ = (
        CheckConstraint(status_check([s.value for s in RunStatus]), name="ck_run_status"),
        CheckConstraint("kind IN ('train', 'evaluate', 'import')", name="ck_run_kind"),
        Index("ix_run_created", "created_at"),
    )
    id: str = Field(primary_key=True)


class RunCreate(SQLModel):
    """What a new run starts with. The store sets the id (unless given), status `queued` and created_at."""

    task: str
    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    monitor_key: str | None = None
    monitor_mode: Literal["min", "max"] | None = None
    owner: str | None = None
    tags: list[str] = Field(default_factory=list)
    notes: str = ""
    parent_run_id: str | None = None
    parent_checkpoint_id: int | None = None
    kind: RunKind = "train"
    eval_data: str | None = None
    host: str | None = None  # the machine that launched it (and whose scheduler starts it)
    study_id: str | None = None  # a study's trial: its study and Optuna trial number
    trial_number: int | None = None
    id: str | None = None  # the launcher may pick the id (it makes the run's folder first)


class RunUpdate(SQLModel):
    """Fields a caller may set on a run; only the fields set (even to None) are written. Status changes go through
    runs.transition(), which takes one of these for the fields that change with the status."""

    name: str | None = None
    tags: list[str] | None = None
    notes: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    host: str | None = None
    supervisor_pid: int | None = None
    supervisor_start: float | None = None
    worker_pid: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    error: str | None = None
    traceback: str | None = None
    progress_done: float | None = None
    progress_total: float | None = None
    progress_unit: str | None = None
    progress_started_at: float | None = None
    progress_done_at_start: float | None = None
    phase: str | None = None
    attempt: int | None = None
    cancel_requested: bool | None = None
    journal_seq: int | None = None


class RunRead(RunBase):
    id: str
    best_value: float | None = None  # of monitor_key, from metric_summary

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at


class Metric(SQLModel, table=True):
    __table_args__ = (Index("ix_metric_series", "run_id", "key", "step", "value"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", ondelete="CASCADE")
    key: str
    step: int
    value: float
    wall: float


class MetricSummary(SQLModel, table=True):
    __tablename__ = "metric_summary"
    run_id: str = Field(foreign_key="run.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(primary_key=True)
    last: float
    last_step: int
    first_step: int
    min: float
    max: float
    count: int


class MetricRollup(SQLModel, table=True):
    """Pre-aggregated step buckets of width 4**level (level >= 2), so a chart of a 1M-point series reads at
    most a few thousand rows instead of scanning the series (see store/metrics.read_series)."""

    __tablename__ = "metric_rollup"
    __table_args__ = {"sqlite_with_rowid": False}  # rows live in the primary-key b-tree: range reads, no lookups
    run_id: str = Field(foreign_key="run.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(primary_key=True)
    level: int = Field(primary_key=True)
    bucket: int = Field(primary_key=True)  # step // 4**level
    step_max: int
    total: float  # sum of values; mean = total / count
    count: int
    vmin: float
    vmax: float
    wall: float  # latest wall time in the bucket


class CheckpointBase(SQLModel):
    run_id: str = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    path: str  # relative to the run dir
    kind: str
    step: int
    epoch: int | None = None
    pass_id: int | None = None
    day: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    size_bytes: int = 0
    sha256: str | None = None
    created_at: float


class Checkpoint(CheckpointBase, table=True):
    __table_args__ = (
        CheckConstraint("kind IN ('checkpoint','best','base','delta','batch','inference')", name="ck_ckpt_kind"),
        UniqueConstraint("run_id", "path", name="uq_ckpt_path"),
    )
    id: int | None = Field(default=None, primary_key=True)


class CheckpointCreate(SQLModel):
    """A checkpoint row; the file is already written (runner/checkpoints.py writes it first)."""

    path: str
    kind: CheckpointKind
    step: int
    epoch: int | None = None
    pass_id: int | None = None
    day: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    size_bytes: int = 0
    sha256: str | None = None
    created_at: float = Field(default_factory=time.time)


class CheckpointRead(CheckpointBase):
    id: int
    is_best: bool = False


class EventBase(SQLModel):
    run_id: str = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    time: float
    kind: str
    message: str = ""


class Event(EventBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


class EventCreate(SQLModel):
    kind: str  # a status, or what happened: "cancel requested", "resumed", ...
    message: str = ""
    time: float = Field(default_factory=time.time)


class EventRead(EventBase):
    id: int


# -- studies (workbench/studies/): trials are runs with study_id and trial_number ------------------------------------
class StudyStatus(enum.StrEnum):
    RUNNING = "running"  # its driver asks for trials and collects them
    COMPLETED = "completed"  # every trial of the budget ended (or the time limit passed and the last one ended)
    CANCELLED = "cancelled"
    FAILED = "failed"  # the driver itself failed (its error is kept); `workbench study resume` goes on


class StudyBase(SQLModel):
    name: str
    task: str = Field(index=True)
    status: StudyStatus = Field(default=StudyStatus.RUNNING, sa_type=AutoString)
    base_config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    space: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    objective: str
    direction: str  # maximize | minimize
    created_at: float
    ended_at: float | None = None
    heartbeat_at: float | None = None  # the driver's
    host: str | None = None  # where the driver runs
    driver_pid: int | None = None
    driver_start: float | None = None  # the driver process's create time (pids get reused)
    cancel_requested: bool = False
    error: str | None = None


class Study(StudyBase, table=True):
    __table_args__ = (CheckConstraint("status IN ('running', 'completed', 'cancelled', 'failed')", name="ck_study_status"),)
    id: str = Field(primary_key=True)


class StudyCreate(SQLModel):
    name: str
    task: str
    base_config: dict[str, Any]
    space: dict[str, Any]
    options: dict[str, Any]
    objective: str
    direction: str


class StudyUpdate(SQLModel):
    """Only the fields set are written."""

    status: StudyStatus | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    host: str | None = None
    driver_pid: int | None = None
    driver_start: float | None = None
    cancel_requested: bool | None = None
    error: str | None = None


class StudyRead(StudyBase):
    id: str
    trials: int = 0  # runs of the study so far
    best_value: float | None = None  # the best objective value over its completed trials
