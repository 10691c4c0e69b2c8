"""Process-wide settings, read from the environment (WORKBENCH_HOME, WORKBENCH_DB_URL, WORKBENCH_MAX_CONCURRENT_RUNS,
WORKBENCH_HOST, ...)."""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKBENCH_", extra="ignore")

    home: Path = Field(Path(".workbench"), description="Folder holding workbench.db and runs/<run_id>/.")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the store; default: SQLite in `home`.")
    max_concurrent_runs: int = Field(2, ge=1, description="Runs that may train at the same time; more wait queued.")
    cancel_grace_s: float = Field(30.0, gt=0, description="Seconds a cancelled run gets to checkpoint before SIGKILL.")
    heartbeat_s: float = Field(5.0, gt=0, description="Seconds between supervisor heartbeats.")
    lost_after_s: float = Field(30.0, gt=0, description="A running run whose heartbeat is older than this is lost.")
    store_outage_warn_s: float = Field(
        60.0, gt=0, description="A store outage longer than this gets an event in the run once the store is back."
    )
    store_end_wait_s: float = Field(
        120.0, gt=0, description="How long a run that ended waits for an unreachable store before it gives up (failed)."
    )
    housekeeping_s: float = Field(
        5.0, gt=0, description="Seconds between two housekeeping passes (reconcile, then start queued runs) in every "
        "supervisor, the UI server and `workbench run --wait`."
    )
    host: str = Field(
        default_factory=socket.gethostname,
        description="This machine's name on the runs it launches and supervises. Pid checks apply only to runs of "
        "this host; other hosts' runs are judged by their heartbeat. Default: the hostname.",
    )

    executor: Literal["local", "ray"] = Field(
        "local",
        description="Who places runs: `local` starts a detached supervisor process on this machine; `ray` has Ray "
        "place each run's supervisor on a node of the cluster at RAY_ADDRESS (docs/cluster.md).",
    )
    supervisor_housekeeping: bool = Field(
        True, description="Supervisors run housekeeping passes. The ray executor turns it off for the supervisors it "
        "starts: the Ray actor above each one does the passes instead, with the Ray connection it already has."
    )
    ray_cpus_per_process: float = Field(
        1.0, gt=0, description="With the ray executor: CPUs a run asks of Ray for each of its training processes "
        "(a run asks nproc_per_node times this per node unless its config's `resources.cpus` says; GPUs are "
        "nproc_per_node when it trains on CUDA unless `resources.gpus` says)."
    )
    ray_autoscaling: bool = Field(
        False, description="With the ray executor: the cluster adds nodes on demand (Ray's autoscaler), so a run that "
        "no node has the resources for now is handed to Ray and waits in its queue (`queued`) for a node that has "
        "them. Off: such a run is refused at launch with what the nodes have, since on a fixed cluster it would wait "
        "forever."
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def runs_dir(self) -> Path:
        return self.home_dir / "runs"

    @property
    def studies_dir(self) -> Path:
        """studies/<study_id>/: each study's Optuna journal and its driver's log."""
        return self.home_dir / "studies"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home_dir / 'workbench.db'}"


@lru_cache
def get_settings() -> Settings:
    s = Settings()
    s.home_dir.mkdir(parents=True, exist_ok=True)
    s.runs_dir.mkdir(parents=True, exist_ok=True)
    return s


def reset_settings() -> None:
    """Forget cached settings (tests point WORKBENCH_HOME at a fresh folder)."""
    get_settings.cache_clear()
