"""RunContext: everything a task's `run(cfg, ctx)` gets from the platform.

The task never knows where its metrics, checkpoints and progress end up: the context forwards them to a
`RunBackend`, which in a real run is the run's journal and, through it, the store (runner/store_backend.py), and
memory in tests and bare benchmarks (`MemoryBackend`, `RunContext.local`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from workbench.runner.checkpoints import CheckpointInfo, CheckpointManager, Envelope, as_envelope
from workbench.runner.cpu_load import CoreReserve


class TrialHook(Protocol):
    """A study trial's link to its pruner (workbench.studies.optuna_io.TrialReporter): sees every logged batch of
    metrics, reports the monitored one, and answers True once the pruner stops the trial."""

    def report(self, metrics: Mapping[str, float]) -> bool: ...


class RunBackend(Protocol):
    """Where a run's records go. Called from the training process (rank 0 only).

    Checkpoint rows are known by their path (unique per run): a journal-first backend stores a row later, so its
    id is not known when it is added. `close()` returns how many records it could not store (0: all stored).
    """

    def write_metrics(self, points: list[tuple[str, int, float, float]]) -> None: ...  # (key, step, value, wall)
    def set_progress(self, done: float, total: float | None, unit: str) -> None: ...
    def set_phase(self, text: str | None) -> None: ...
    def event(self, kind: str, message: str) -> None: ...
    def add_checkpoint(self, info: CheckpointInfo) -> None: ...
    def delete_checkpoint(self, path: str) -> None: ...
    def list_checkpoints(self) -> list[CheckpointInfo]: ...
    def close(self) -> int: ...


@dataclass
class MemoryBackend:
    """In-memory backend for unit tests, bare benchmarks and dry runs."""

    metrics: list[tuple[str, int, float, float]] = field(default_factory=list)
    progress: tuple[float, float | None, str] | None = None
    phase: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    _next_id: int = 1

    def write_metrics(self, points: list[tuple[str, int, float, float]]) -> None:
        self.metrics.extend(points)

    def set_progress(self, done: float, total: float | None, unit: str) -> None:
        self.progress = (done, total, unit)

    def set_phase(self, text: str | None) -> None:
        self.phase = text

    def event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def add_checkpoint(self, info: CheckpointInfo) -> None:
        info.id = self._next_id
        self._next_id += 1
        self.checkpoints.append(info)

    def delete_checkpoint(self, path: str) -> None:
        self.checkpoints = [c for c in self.checkpoints if c.path != path]

    def list_checkpoints(self) -> list[CheckpointInfo]:
        return list(self.checkpoints)

    def close(self) -> int:
        return 0

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs logged under `key`, in logging order (for tests)."""
        return [(s, v) for k, s, v, _ in self.metrics if k == key]


class _NullBackend(MemoryBackend):
    """What ranks > 0 get in distributed runs: records go nowhere (only rank 0 writes to the store)."""

    def write_metrics(self, points: list[tuple[str, int, float, float]]) -> None:
        pass


class MetricBuffer:
    """Buffers `ctx.log` calls and flushes them to the backend at least every `interval` seconds.

    A daemon thread does the flushing so a training step never waits on the database.
    """

    def __init__(self, backend: RunBackend, interval: float = 0.5):
        self._backend = backend
        self._interval = interval
        self._points: list[tuple[str, int, float, float]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        now = time.time()
        with self._lock:
            for key, value in metrics.items():
                self._points.append((key, int(step), float(value), now))
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="metric-flush", daemon=True)
            self._thread.start()

    def flush(self) -> None:
        with self._lock:
            points, self._points = self._points, []
        if points:
            try:
                self._backend.write_metrics(points)
            except BaseException:
                with self._lock:  # not written: keep them, ahead of what was logged meanwhile
                    self._points[:0] = points
                raise

    def _loop(self) -> None:
        # flush, then wait: the run's first points (its first step) go out at once instead of an interval later
        failing = False
        while not self._closed:
            try:
                self.flush()
                failing = False
            except Exception as exc:  # must not kill training; the points stay for the next try (and close raises)
                if not failing:
                    print(f"[workbench] metric flush failed, will retry: {exc}", file=sys.stderr)
                failing = True
            self._wake.wait(self._interval)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


class ThreadShare:
    """Keeps a run's torch intra-op threads in step with the other runs on the machine.

    The task picks its threads at start (tasks.common.cpu_threads() divides the cores by the training processes
    active then). A watcher thread counts the training processes every `interval` seconds; when the count changes,
    the task's own choice is rescaled to it, so two runs on two cores do not run four spinning threads (which made
    two quick STAMP runs take 41.9 s instead of 12.8 s). OpenMP keeps the thread count per calling thread, so the
    change must be made on the training thread: the watcher interrupts the main thread with SIGUSR1 (Python runs
    the handler there between two ops), and ctx.log / ctx.progress apply it too. Off when WORKBENCH_CPU_THREADS
    fixes the count.

    The watcher also caps the threads at the cores that other busy processes leave free (runner/cpu_load.py),
    looking every `tick` seconds: a page load of a live Dashboard keeps one of 2 cores busy for a second or two, and
    2 threads beside it stall (a quick STAMP run beside a process spinning on a core: 276-314 s against 7.5 s).
    """

    def __init__(
        self,
        processes_sharing: Callable[[], int],
        interval: float = 2.0,
        logger: logging.Logger | None = None,
        reserve: CoreReserve | None = None,
        tick: float = 0.25,
    ):
        self._sharing = processes_sharing
        self._interval = interval  # how often the processes sharing the cores are counted (a database read)
        self._tick = min(tick, interval)  # how often the neighbours' CPU use is looked at (/proc/stat)
        self._logger = logger
        self._seen: int | None = None  # the count the watcher saw last
        self._applied: int | None = None  # the count the training thread applied last
        self._base: tuple[int, int] | None = None  # (threads the task chose, processes sharing when it chose)
        self._set: int | None = None  # the threads we set last
        self._interrupt = False
        self._stop = threading.Event()
        # -- leave cores to busy neighbours (a live Dashboard: its UI server and browser); see runner/cpu_load.py
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._reserve = reserve or CoreReserve(cores)
        self._cap: int | None = None  # the most threads the neighbours leave room for (None: no limit known)
        self._applied_cap: int | None = None

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, lambda _signum, _frame: self.apply())
            self._interrupt = True
        threading.Thread(target=self._watch, name="thread-share", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        self._reserve.threads_cap()  # a first sample, so that the first look already knows the neighbours' load
        count_at = time.monotonic() + self._interval
        while not self._stop.wait(self._tick):
            count = time.monotonic() >= count_at
            if count:
                count_at += self._interval
            if self.poll(count) and self._interrupt:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)  # type: ignore[arg-type]

    def poll(self, count: bool = True) -> bool:
        """Look at the neighbours' CPU use and, if `count`, count the processes sharing the cores (a database
        read). True if the cap or the count changed."""
        if os.environ.get("WORKBENCH_CPU_THREADS"):
            return False
        cap, self._cap = self._cap, self._reserve.threads_cap()
        if not count:
            return cap != self._cap
        try:
            sharing = max(1, self._sharing())
        except Exception:
            return cap != self._cap  # a busy database must not stop training; look again next time
        changed, self._seen = sharing != self._seen or cap != self._cap, sharing
        return changed

    def apply(self) -> None:
        """On the training thread: rescale the task's threads to the latest count (a no-op when nothing changed)."""
        sharing, cap = self._seen, self._cap
        if sharing is None or (sharing, cap) == (self._applied, self._applied_cap) or os.environ.get("WORKBENCH_CPU_THREADS"):
            return
        import torch

        current = torch.get_num_threads()
        if self._base is None or current != self._set:  # first change, or the task set its threads itself since
            self._base = (current, int(os.environ.get("WORKBENCH_CPU_SHARE") or 1))
        threads, shared_then = self._base
        wanted = max(1, threads * shared_then // sharing)
        if cap is not None:
            wanted = min(wanted, cap)
        if wanted != current:
            torch.set_num_threads(wanted)
            if self._logger is not None:
                busy = f"; other processes keep {self._reserve.leave} core(s) busy" if self._reserve.leave else ""
                self._logger.info("%d training process(es) now share the CPU cores%s: %d torch thread(s)", sharing, busy, wanted)
        os.environ["WORKBENCH_CPU_SHARE"] = str(sharing)  # what cpu_threads() answers from now on
        self._set, self._applied, self._applied_cap = wanted, sharing, cap


class RunContext:
    """What a task gets. See DESIGN.md "RunContext".

    - `log(metrics, step)`: buffered, flushed at least every second and at exit.
    - `progress(done, total, unit)` and `phase(text)` drive the dashboard's progress bar and status line
      (e.g. "waiting for data: 20190720/0005").
    - `checkpoints.save(...)`, `checkpoints.latest()`, `checkpoints.best()`, `checkpoints.register(...)`.
    - `should_stop()`: True once a cancel was requested; finish the step, save a checkpoint, return.
    - `resume_state`: the task's state (what it handed to checkpoints.save) to continue this same run from
      (None on a fresh start); `resume_checkpoint`: the whole envelope, for its step, epoch and config.
    - `init_state` / `init_checkpoint`: the same for the checkpoint a fork (or an evaluation) starts from.
    The constructor takes loaded checkpoint files for both: envelopes, or flat dicts, which are wrapped (see
    checkpoints.as_envelope), so a file written before the envelope still resumes.
    """

    def __init__(
        self,
        *,
        run_id: str,
        run_dir: Path,
        backend: RunBackend,
        monitor: tuple[str, Literal["max", "min"]],
        keep_ckpt: int,
        device: str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        resume_state: Mapping[str, Any] | None = None,
        init_state: Mapping[str, Any] | None = None,
        logger: logging.Logger | None = None,
        flush_interval: float = 0.5,
        thread_share: ThreadShare | None = None,
        trial: TrialHook | None = None,
    ):
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = device
        self.resume_checkpoint: Envelope | None = (
            as_envelope(dict(resume_state), "the checkpoint to resume from") if resume_state is not None else None
        )
        self.init_checkpoint: Envelope | None = (
            as_envelope(dict(init_state), "the checkpoint to start from") if init_state is not None else None
        )
        self.resume_state: dict[str, Any] | None = self.resume_checkpoint["state"] if self.resume_checkpoint else None
        self.init_state: dict[str, Any] | None = self.init_checkpoint["state"] if self.init_checkpoint else None
        self.monitor = monitor
        self.is_main = rank == 0
        self._backend: RunBackend = backend if self.is_main else _NullBackend()
        self._buffer = MetricBuffer(self._backend, flush_interval)
        self._stop = threading.Event()
        self._threads = thread_share
        if thread_share is not None:
            thread_share.start()
        self._trial = trial if self.is_main else None
        self.pruned = False  # a study's pruner stopped this trial (see `log`)
        self.logger = logger or _console_logger(run_id)
        self.checkpoints = CheckpointManager(
            run_dir=self.run_dir,
            backend=self._backend,
            monitor=monitor,
            keep_last=keep_ckpt,
            enabled=self.is_main,
            logger=self.logger,
        )

    # -- metrics and progress -------------------------------------------------------------------------------
    def log(self, metrics: Mapping[str, float], step: int) -> None:
        if self.is_main:
            self._buffer.add(metrics, step)
            if self._trial is not None and not self.pruned and self._trial.report(metrics):
                self._prune()
        if self._threads is not None:
            self._threads.apply()

    def _prune(self) -> None:
        """The study's pruner stopped this trial: stop as a cancel does (finish the step, checkpoint, return); the
        worker then ends the run `pruned`. Under torchrun the agent (our parent) forwards SIGTERM to every rank."""
        self.pruned = True
        self.logger.info("the study's pruner stopped this trial: saving a checkpoint, then stopping")
        self.event("pruned", "stopped by the study's pruner")
        self.request_stop()
        if self.world_size > 1:
            os.kill(os.getppid(), signal.SIGTERM)

    def progress(self, done: float, total: float | None, unit: str = "steps") -> None:
        if self.is_main:
            self._backend.set_progress(done, total, unit)
        if self._threads is not None:
            self._threads.apply()

    def phase(self, text: str | None) -> None:
        """A short human status shown on the dashboard next to the progress bar; None clears it."""
        if self.is_main:
            self._backend.set_phase(text)

    def event(self, kind: str, message: str) -> None:
        if self.is_main:
            self._backend.event(kind, message)

    # -- cancellation ---------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def flush(self) -> None:
        self._buffer.flush()

    def close(self) -> int:
        """Flush and close the backend. Returns how many records could not be stored (0: all of them are)."""
        if self._threads is not None:
            self._threads.stop()
        self._buffer.close()
        return self._backend.close()

    @classmethod
    def local(
        cls,
        run_dir: str | Path,
        *,
        monitor: tuple[str, Literal["max", "min"]] = ("valid/loss", "min"),
        keep_ckpt: int = 3,
        device: str = "cpu",
        resume_state: Mapping[str, Any] | None = None,
        init_state: Mapping[str, Any] | None = None,
        run_id: str = "local",
    ) -> RunContext:
        """A context with an in-memory backend (`ctx.backend`), for tests, benchmarks and bare runs."""
        ctx = cls(
            run_id=run_id,
            run_dir=Path(run_dir),
            backend=MemoryBackend(),
            monitor=monitor,
            keep_ckpt=keep_ckpt,
            device=device,
            resume_state=resume_state,
            init_state=init_state,
            flush_interval=0.2,
        )
        return ctx

    @property
    def backend(self) -> RunBackend:
        return self._backend


def _console_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(f"workbench.run.{name}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
