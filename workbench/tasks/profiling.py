"""Seed 004's `profiling`: a torch.profiler trace of a window of training steps, and the summary the Dashboard shows.

Every task's loop makes the same few calls, whatever the setting:

    profiler = step_profiler(cfg, ctx, device)
    for batch in profiler.batches(loader):          # fetching the next batch is labelled `data`
        with profiler.phase("forward"): ...
        with profiler.phase("backward"): ...
        with profiler.phase("optimizer"): ...
        profiler.step()                             # one optimizer step done
    profiler.close()

(`profiler.mark("backward")` ends the phase mark opened last and starts the next, for loops whose body should not
be re-indented; `step` ends the last one.)

With `profiling: false` it gets NO_PROFILER: `batches` hands back the loader itself, `phase` one shared
nullcontext, `step` and `close` do nothing, so no torch.profiler object exists and no record_function is entered.
With it on, steps `profiling_wait + profiling_warmup` .. `+ profiling_active` are recorded (after the first steps'
lazy set-up and the profiler's own start-up), then the profiler stops and the loop runs unobserved again. On CUDA
each phase ends with a synchronize while recording, so a phase's time is its kernels' time, not the launch's.

What it writes: `trace.json` (Chrome trace: chrome://tracing or https://ui.perfetto.dev) and `summary.json` in the
run folder's `profile/` (or `profiling_dump_path/<run id>/`); the summary is also always written to the run
folder's `profile/summary.json`, where the API reads it (`workbench show RUN --json`, the Dashboard).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from workbench.config.common import CommonTrainingSettings
from workbench.runner.context import RunContext

PHASES = ("data", "forward", "backward", "optimizer")
LABEL = "workbench/"  # record_function names are LABEL + phase
SUMMARY_FILE = "summary.json"
TRACE_FILE = "trace.json"
RUN_SUBDIR = "profile"  # in the run folder: the summary always, the trace unless profiling_dump_path is set
TOP_OPS = 15
FORMAT = 1

T = TypeVar("T")
_NOTHING = contextlib.nullcontext()


class NoProfiler:
    """What a loop gets with profiling off: every call is (nearly) free and records nothing."""

    enabled = False

    def batches(self, loader: Iterable[T]) -> Iterable[T]:
        return loader

    def phase(self, name: str) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING

    def mark(self, name: str) -> None:
        pass

    def step(self) -> None:
        pass

    def close(self) -> None:
        pass


NO_PROFILER = NoProfiler()


def step_profiler(cfg: CommonTrainingSettings, ctx: RunContext, device: torch.device) -> NoProfiler | StepProfiler:
    """The run's profiler: NO_PROFILER unless `profiling` is on (and then only on rank 0)."""
    if not cfg.profiling or not ctx.is_main:
        return NO_PROFILER
    base = Path(cfg.profiling_dump_path) / ctx.run_id if cfg.profiling_dump_path else ctx.run_dir / RUN_SUBDIR
    return StepProfiler(ctx, device, base, wait=cfg.profiling_wait, warmup=cfg.profiling_warmup,
                        active=cfg.profiling_active)


class StepProfiler:
    """torch.profiler.profile over one window of training steps; writes the trace and the summary when it closes."""

    enabled = True

    def __init__(self, ctx: RunContext, device: torch.device, folder: Path, *, wait: int, warmup: int, active: int):
        self.ctx, self.device, self.folder = ctx, device, folder
        self.wait, self.warmup, self.active = wait, warmup, active
        self.steps = 0  # optimizer steps seen since the profiler started
        self._sync = device.type == "cuda"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._prof: torch.profiler.profile | None = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=self._write,
            record_shapes=False,
            with_stack=False,
        )
        self._written = False
        self._open: contextlib.AbstractContextManager[Any] | None = None  # the phase `mark` opened
        self._prof.start()
        ctx.logger.info("profiling: steps %d-%d of this attempt will be recorded into %s", wait + warmup + 1,
                        wait + warmup + active, folder)

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        """The loader's batches, each fetch labelled `data` (while the window is open)."""
        iterator = iter(loader)
        while True:
            with self.phase("data"):
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
            yield batch

    def phase(self, name: str) -> contextlib.AbstractContextManager[Any]:
        if self._prof is None:
            return _NOTHING
        return self._labelled(name)

    @contextlib.contextmanager
    def _labelled(self, name: str) -> Iterator[None]:
        with torch.profiler.record_function(LABEL + name):
            yield
            if self._sync:  # CUDA runs ahead of the CPU: wait, so the phase holds its kernels' time
                torch.cuda.synchronize(self.device)

    def mark(self, name: str) -> None:
        """End the phase `mark` opened last (if any) and start `name`: labels without indenting the loop body."""
        self._end_mark()
        if self._prof is not None:
            self._open = self._labelled(name)
            self._open.__enter__()

    def _end_mark(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None

    def step(self) -> None:
        self._end_mark()
        if self._prof is None:
            return
        self.steps += 1
        self._prof.step()
        if self.steps >= self.wait + self.warmup + self.active:
            self.close()

    def close(self) -> None:
        """Stop the profiler (a run shorter than the window writes what it recorded, or says it recorded none)."""
        self._end_mark()
        if self._prof is None:
            return
        prof, self._prof = self._prof, None
        prof.stop()
        if not self._written:
            message = (f"the run made {self.steps} step(s) after the profiler started, fewer than profiling_wait + "
                       f"profiling_warmup + 1 = {self.wait + self.warmup + 1}: nothing was recorded")
            self.ctx.logger.warning("profiling: %s", message)
            self.ctx.event("profile", f"no profile: {message}")
            _write_json(self.ctx.run_dir / RUN_SUBDIR / SUMMARY_FILE, {"format": FORMAT, "error": message})

    def _write(self, prof: torch.profiler.profile) -> None:
        """on_trace_ready: the Chrome trace and the summary, then one event naming where they are."""
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        trace = self.folder / TRACE_FILE
        prof.export_chrome_trace(str(trace))
        first = self.wait + self.warmup + 1
        summary = summarize(prof.key_averages(), cuda=self.device.type == "cuda")
        summary.update(format=FORMAT, steps=[first, first + summary["recorded_steps"] - 1], device=str(self.device),
                       trace=str(trace.resolve()), trace_bytes=trace.stat().st_size)
        _write_json(self.folder / SUMMARY_FILE, summary)
        _write_json(self.ctx.run_dir / RUN_SUBDIR / SUMMARY_FILE, summary)
        self._written = True
        top = summary["ops"][0]["name"] if summary["ops"] else "none"
        shares = ", ".join(f"{k} {v:.0%}" for k, v in summary["phase_share"].items())
        self.ctx.logger.info("profiling: %d steps recorded (%.1f ms/step; %s; top op by self CPU time %s) -> %s "
                             "(written in %.1f s)", summary["recorded_steps"], summary["step_ms"], shares, top, trace,
                             time.perf_counter() - started)
        self.ctx.event("profile", f"profiled {summary['recorded_steps']} steps ({shares}); trace: {trace}")


def summarize(events: Any, *, cuda: bool, top: int = TOP_OPS) -> dict[str, Any]:
    """Top operators by self CPU (and CUDA) time and the phases' shares of the recorded steps' time.

    `events` is `prof.key_averages()`. Times are in ms, summed over the recorded steps. A step is the span between
    two `profiler.step()` calls (torch's ProfilerStep#N, grouped into one `ProfilerStep*` row), so `other` is what
    no phase label covers (logging, checkpoint checks, the loop itself).
    """
    steps = [e for e in events if e.key.startswith("ProfilerStep")]  # "ProfilerStep*" (one row, count = steps)
    n_steps = sum(e.count for e in steps)
    step_us = sum(e.cpu_time_total for e in steps)
    phases = {e.key[len(LABEL):]: e.cpu_time_total for e in events if e.key.startswith(LABEL)}
    share = {name: phases[name] / step_us for name in PHASES if name in phases and step_us > 0}
    if step_us > 0:
        share["other"] = max(0.0, 1.0 - sum(share.values()))
    ops = [e for e in events if not e.key.startswith(("ProfilerStep", LABEL))]
    ops.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [_op_row(e, cuda) for e in ops[:top]]
    out: dict[str, Any] = {
        "recorded_steps": n_steps,
        "step_ms": step_us / 1000 / max(1, n_steps),
        "phase_ms": {name: phases[name] / 1000 for name in PHASES if name in phases},
        "phase_share": share,
        "ops": rows,
    }
    if cuda:
        ops.sort(key=lambda e: _device_time(e), reverse=True)
        out["ops_by_cuda"] = [_op_row(e, cuda) for e in ops[:top] if _device_time(e) > 0]
    return out


def _device_time(event: Any) -> float:
    """Self time on the GPU in us (`self_device_time_total` since torch 2.4, `self_cuda_time_total` before)."""
    return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))


def _op_row(event: Any, cuda: bool) -> dict[str, Any]:
    row = {"name": event.key, "calls": int(event.count), "self_cpu_ms": event.self_cpu_time_total / 1000,
           "cpu_total_ms": event.cpu_time_total / 1000}
    if cuda:
        row["self_cuda_ms"] = _device_time(event) / 1000
    return row


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's profile summary, None if the run was not profiled (or has not reached its window yet)."""
    path = run_dir / RUN_SUBDIR / SUMMARY_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())
