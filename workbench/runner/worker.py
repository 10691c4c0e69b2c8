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
from workbench.runner.context import MemoryBackend, RunBackend, RunContext, ThreadShare
from workbench.runner.journal import EXIT_UNSTORED, journal_path, retry_store
from workbench.runner.store_backend import StoreBackend, stored_checkpoints
from workbench.settings import get_settings
from workbench.store import checkpoints as ckpt_store
from workbench.store import get_engine, runs
from workbench.store.models import ACTIVE, RunRead, RunStatus, RunUpdate
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


def _start_states(engine: Any, run: RunRead, ctx_run_dir: Path, backend: RunBackend, monitor: tuple[str, str]) -> tuple[dict | None, dict | None]:
    """(resume_state, init_state): the latest own checkpoint on a resumed attempt; the parent's for a fork or an
    evaluation. Both are envelopes (`{format, step, epoch, config, state}`; older flat files come wrapped)."""
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
    run = runs.get_run(engine, run_id=run_id)
    run_dir = settings.runs_dir / run.id
    spec = TASKS[run.task]
    cfg = parse_config(run.config, source=f"run {run.id} config")
    rank, world_size, local_rank = _init_distributed(cfg.device)
    logger = _logger(run.id, rank)
    monitor = spec.monitor(cfg)
    sharing = _processes_sharing(engine)
    os.environ["WORKBENCH_CPU_SHARE"] = str(sharing)  # tasks.common.cpu_threads() divides the cores by it
    is_main = rank == 0
    if is_main and not runs.transition(
        engine, run_id=run.id, to=RunStatus.RUNNING, expect=[RunStatus.STARTING], on_attempt=run.attempt,
        run_in=RunUpdate(worker_pid=os.getpid()), message=f"attempt {run.attempt}",
    ):  # fmt: skip
        now = runs.get_run(engine, run_id=run.id)
        logger.error("run %s is no longer starting on attempt %d (%s): not training it", run.id, run.attempt, now.status)
        return 1
    try:
        backend = _backend(engine, run.id, run_dir, is_main, logger)
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
            trial=_trial_hook(run, logger) if is_main else None,
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
        unstored = ctx.close()
    except Exception as exc:
        unstored = ctx.close()
        return _fail(engine, run.id, exc, is_main, logger, unstored)
    if is_main and unstored:
        return _fail_unstored(engine, run.id, run_dir, unstored, logger)
    if is_main:
        # every record is stored (ctx.close applied the journal): only now may the run say how it ended
        wait_s = settings.store_end_wait_s
        if ctx.pruned:
            retry_store(
                lambda: runs.transition(engine, run_id=run.id, to=RunStatus.PRUNED, expect=[RunStatus.RUNNING], run_in=RunUpdate(phase=None), message="stopped by the study's pruner after a checkpoint"),
                wait_s=wait_s, what="record the run's end", logger=logger,
            )  # fmt: skip
        elif ctx.should_stop():
            retry_store(
                lambda: runs.transition(engine, run_id=run.id, to=RunStatus.CANCELLED, expect=[RunStatus.RUNNING], message="stopped on request after a checkpoint"),
                wait_s=wait_s, what="record the run's end", logger=logger,
            )  # fmt: skip
        else:
            retry_store(
                lambda: runs.transition(engine, run_id=run.id, to=RunStatus.COMPLETED, expect=[RunStatus.RUNNING], run_in=RunUpdate(phase=None)),
                wait_s=wait_s, what="record the run's end", logger=logger,
            )  # fmt: skip
    logger.info("run %s %s", run.id, "pruned" if ctx.pruned else "cancelled" if ctx.should_stop() else "completed")
    return 0


def _trial_hook(run: RunRead, logger: logging.Logger) -> Any:
    """A study trial reports its monitored metric to its Optuna trial (the pruner's input); other runs: None."""
    if run.study_id is None or run.trial_number is None:
        return None
    from workbench.studies.optuna_io import TrialReporter, journal_path

    path = journal_path(get_settings().studies_dir, run.study_id)
    logger.info("trial %d of study %s: its %s is reported to the study's pruner", run.trial_number, run.study_id, run.monitor_key)
    return TrialReporter(path, run.study_id, run.trial_number)


def _backend(engine: Any, run_id: str, run_dir: Path, is_main: bool, logger: logging.Logger) -> RunBackend:
    """Rank 0 records through the journal; other ranks record nothing and only read the checkpoint list."""
    settings = get_settings()
    if is_main:
        return StoreBackend(
            engine, run_id, run_dir, logger=logger, outage_warn_s=settings.store_outage_warn_s, end_wait_s=settings.store_end_wait_s
        )
    return MemoryBackend(checkpoints=stored_checkpoints(engine, run_id, run_dir))


def _unstored_note(run_id: str, run_dir: Path, unstored: int) -> str:
    return (
        f"{unstored} of the run's records could not be stored (the store was unreachable when the run ended); "
        f"they are in {journal_path(run_dir)}: `workbench sync {run_id}` stores them"
    )


def _fail_unstored(engine: Any, run_id: str, run_dir: Path, unstored: int, logger: logging.Logger) -> int:
    """The task finished, but some of its records are only in the journal: the run is not `completed`."""
    note = _unstored_note(run_id, run_dir, unstored)
    logger.error("run %s: %s", run_id, note)
    try:  # one try: the store was just found unreachable; the supervisor tries again when it sees our exit code
        runs.transition(engine, run_id=run_id, to=RunStatus.FAILED, expect=[RunStatus.RUNNING], run_in=RunUpdate(error=note), message=note[:500])
    except Exception as exc:
        logger.error("could not record the failure either (%s); the supervisor will", type(exc).__name__)
    return EXIT_UNSTORED


def _evaluate(spec: Any, cfg: Any, ctx: RunContext, run: RunRead) -> None:
    """An evaluation job: the parent checkpoint (ctx.init_state) on the config's test split or `eval_data`."""
    from workbench.tasks.spec import load_target

    if spec.evaluate_target is None:
        raise RuntimeError(f"the {spec.name} task cannot evaluate checkpoints")
    checkpoint = ctx.init_checkpoint
    if checkpoint is None:
        raise RuntimeError("an evaluation needs a checkpoint to evaluate")
    step = checkpoint["step"]  # the metrics belong to the checkpoint's step, read from its envelope
    ctx.progress(0, 1, "evaluations")
    ctx.phase(f"evaluating checkpoint #{run.parent_checkpoint_id} on {run.eval_data or 'the test split'}")
    metrics = load_target(spec.evaluate_target)(cfg, checkpoint["state"], run.eval_data, ctx)
    ctx.log(metrics, step)
    ctx.logger.info("evaluation: %s", ", ".join(f"{k} = {v:.4f}" for k, v in sorted(metrics.items())))
    ctx.progress(1, 1, "evaluations")
    ctx.phase(None)


def _fail(engine: Any, run_id: str, exc: BaseException, is_main: bool, logger: logging.Logger, unstored: int = 0) -> int:
    tb = traceback.format_exc()
    logger.error("run failed: %s\n%s", exc, tb)
    error = f"{type(exc).__name__}: {exc}"
    if unstored:
        error += "; " + _unstored_note(run_id, get_settings().runs_dir / run_id, unstored)
    if is_main:
        try:
            retry_store(
                lambda: runs.transition(
                    engine, run_id=run_id, to=RunStatus.FAILED, expect=ACTIVE,
                    run_in=RunUpdate(error=error, traceback=tb[-TRACEBACK_TAIL:]), message=error[:500],
                ),
                wait_s=0 if unstored else get_settings().store_end_wait_s, what="record the failure", logger=logger,
            )  # fmt: skip
        except Exception as store_exc:
            logger.error("could not record the failure in the store (%s: %s); the supervisor will", type(store_exc).__name__, store_exc)
    return EXIT_UNSTORED if unstored else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
