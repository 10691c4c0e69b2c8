"""Worker entry point: `python -m workbench.runner.worker RUN_ID` (or under torchrun, one per rank).

Loads the run's config from the store, builds the RunContext, calls the task's `run(cfg, ctx)` and reports how it
ended. Its stdout/stderr are the run's train.log (the supervisor redirects them).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from workbench.config.io import parse_config
from workbench.runner.checkpoints import load_checkpoint_file
from workbench.runner.context import RunContext, ThreadShare
from workbench.runner.store_backend import StoreBackend
from workbench.settings import get_settings
from workbench.store import checkpoints as ckpt_store
from workbench.store import get_engine, runs
from workbench.tasks import TASKS

TRACEBACK_TAIL = 8000  # characters of traceback kept in the run row


def _logger(run_id: str, rank: int) -> logging.Logger:
    logger = logging.getLogger(f"workbench.run.{run_id}")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _init_distributed(device_choice: str) -> tuple[int, int, int]:
    """Under torchrun: join the process group (nccl on CUDA, gloo on CPU). Returns (rank, world_size, local_rank)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1:
        import torch
        import torch.distributed as dist

        use_cuda = device_choice != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world_size, local_rank


def _device_name(choice: str, local_rank: int) -> str:
    import torch

    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return f"cuda:{local_rank}"
    return "cpu"


def _start_states(engine: Any, run: runs.RunRead, ctx_run_dir: Path, backend: StoreBackend, monitor: tuple[str, str]) -> tuple[dict | None, dict | None]:
    """(resume_state, init_state): the latest own checkpoint on a resumed attempt; the parent's for a fork."""
    from workbench.runner.checkpoints import CheckpointManager

    if run.attempt > 1:
        manager = CheckpointManager(run_dir=ctx_run_dir, backend=backend, monitor=monitor, keep_last=10**9)
        state = manager.latest()
        if state is not None:
            return state, None
    if run.parent_run_id and run.parent_checkpoint_id is not None:
        parent_ckpt = ckpt_store.get_checkpoint(engine, checkpoint_id=run.parent_checkpoint_id)
        if parent_ckpt is None:
            raise RuntimeError(f"the parent checkpoint #{run.parent_checkpoint_id} of this fork no longer exists")
        parent_dir = get_settings().runs_dir / run.parent_run_id
        return None, load_checkpoint_file(parent_dir / parent_ckpt.path)
    return None, None


def _processes_sharing(engine: Any) -> int:
    """Training processes on this machine now: the ranks of every active run of this host (this one included)."""
    host = get_settings().host
    active = [r for r in runs.active_runs(engine) if r.host in (None, host)]
    return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), sum(int(r.config.get("nproc_per_node", 1)) for r in active))


def main(run_id: str) -> int:
    settings = get_settings()
    engine = get_engine(settings.database_url)
    run = runs.get_run(engine, run_id)
    run_dir = settings.runs_dir / run.id
    spec = TASKS[run.task]
    cfg = parse_config(run.config, source=f"run {run.id} config")
    rank, world_size, local_rank = _init_distributed(cfg.device)
    logger = _logger(run.id, rank)
    monitor = spec.monitor(cfg)
    backend = StoreBackend(engine, run.id)
    sharing = _processes_sharing(engine)
    os.environ["WORKBENCH_CPU_SHARE"] = str(sharing)  # tasks.common.cpu_threads() divides the cores by it
    is_main = rank == 0
    if is_main and not runs.transition(
        engine, run.id, "running", expect=("starting",), on_attempt=run.attempt, worker_pid=os.getpid(), message=f"attempt {run.attempt}"
    ):
        logger.error("run %s is no longer starting on attempt %d (%s): not training it", run.id, run.attempt, runs.get_run(engine, run.id).status)
        return 1
    try:
        resume_state, init_state = _start_states(engine, run, run_dir, backend, monitor)
        ctx = RunContext(
            run_id=run.id,
            run_dir=run_dir,
            backend=backend,
            monitor=monitor,
            keep_ckpt=cfg.keep_ckpt,
            device=_device_name(cfg.device, local_rank),
            rank=rank,
            world_size=world_size,
            local_rank=local_rank,
            resume_state=resume_state,
            init_state=init_state,
            logger=logger,
            thread_share=ThreadShare(lambda: _processes_sharing(engine), logger=logger),
        )
    except Exception as exc:
        return _fail(engine, run.id, exc, is_main, logger)

    def on_term(signum: int, _frame: Any) -> None:
        logger.warning("received %s: finishing the current step, saving a checkpoint, then stopping", signal.Signals(signum).name)
        ctx.request_stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    from workbench.tasks.common import cpu_threads

    logger.info(
        "run %s (%s) attempt %d on %s, world size %d; %d training process(es) share the CPU cores (%d torch threads "
        "each unless the task or WORKBENCH_CPU_THREADS says otherwise)", run.id, run.task, run.attempt, ctx.device,
        world_size, sharing, cpu_threads(),
    )
    if resume_state is not None:
        logger.info("resuming from the latest checkpoint (step %s)", resume_state.get("step"))
    try:
        if run.kind == "evaluate":
            _evaluate(spec, cfg, ctx, run)
        else:
            spec.run(cfg, ctx)
        ctx.close()
    except Exception as exc:
        ctx.close()
        return _fail(engine, run.id, exc, is_main, logger)
    if is_main:
        if ctx.should_stop():
            runs.transition(engine, run.id, "cancelled", expect=("running",), message="stopped on request after a checkpoint")
        else:
            runs.transition(engine, run.id, "completed", expect=("running",), phase=None)
    logger.info("run %s %s", run.id, "cancelled" if ctx.should_stop() else "completed")
    return 0


def _evaluate(spec: Any, cfg: Any, ctx: RunContext, run: runs.RunRead) -> None:
    """An evaluation job: the parent checkpoint (ctx.init_state) on the config's test split or `eval_data`."""
    from workbench.tasks.spec import load_target

    if spec.evaluate_target is None:
        raise RuntimeError(f"the {spec.name} task cannot evaluate checkpoints")
    if ctx.init_state is None:
        raise RuntimeError("an evaluation needs a checkpoint to evaluate")
    step = int(ctx.init_state.get("step", 0))
    ctx.progress(0, 1, "evaluations")
    ctx.phase(f"evaluating checkpoint #{run.parent_checkpoint_id} on {run.eval_data or 'the test split'}")
    metrics = load_target(spec.evaluate_target)(cfg, ctx.init_state, run.eval_data, ctx)
    ctx.log(metrics, step)
    ctx.logger.info("evaluation: %s", ", ".join(f"{k} = {v:.4f}" for k, v in sorted(metrics.items())))
    ctx.progress(1, 1, "evaluations")
    ctx.phase(None)


def _fail(engine: Any, run_id: str, exc: BaseException, is_main: bool, logger: logging.Logger) -> int:
    tb = traceback.format_exc()
    logger.error("run failed: %s\n%s", exc, tb)
    if is_main:
        runs.transition(
            engine,
            run_id,
            "failed",
            expect=("starting", "running"),
            error=f"{type(exc).__name__}: {exc}",
            traceback=tb[-TRACEBACK_TAIL:],
            message=f"{type(exc).__name__}: {exc}"[:500],
        )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
