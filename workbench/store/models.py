"""Tables of the store. Times are UNIX seconds (float); JSON columns hold plain dicts/lists.

Per entity a table class and a plain read model: callers get read models, never live ORM rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

RUN_STATUSES = ("queued", "starting", "running", "completed", "failed", "cancelled", "lost")
ACTIVE_STATUSES = ("queued", "starting", "running")
TERMINAL_STATUSES = ("completed", "failed", "cancelled", "lost")


class RunBase(SQLModel):
    name: str
    task: str = Field(index=True)
    status: str = Field(default="queued", index=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
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


class Run(RunBase, table=True):
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES}", name="ck_run_status"),
        CheckConstraint("kind IN ('train', 'evaluate', 'import')", name="ck_run_kind"),
        Index("ix_run_created", "created_at"),
    )
    id: str = Field(primary_key=True)


class RunRead(RunBase):
    id: str
    best_value: float | None = None  # of monitor_key, from metric_summary

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        import time

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


class EventRead(EventBase):
    id: int
