"""The streaming loop (PaddleRec tools/static_ps_online_trainer.py, without its bugs):

    for each day, for each pass of the day:
        wait for the pass's slices (donefiles), read them (prefetched while the previous pass trained)
        infer on the pass (forward only)  -> infer/* metrics
        train on the pass                 -> train/* metrics, table/* statistics
        every checkpoint_per_pass passes (not the day's last): checkpoint model {day}/{pass} + resumable state
        every save_delta_frequency passes: delta model {day}/delta-{pass}
    at the end of a day: shrink; base model {next_day}/base; batch model {next_day}/0; resumable state

Metrics are logged once per pass at the global optimizer step reached at its end, with `pass` (id within the
day), `day` (YYYYMMDD) and `pass/global` as metrics too; train/loss every print_freq steps.
Resuming (ctx.resume_state) skips the passes the state has finished and, after a cancel in the middle of a pass,
continues that pass's training at the next batch (the pass's shuffle is seeded, so the batches are the same).

With several ranks (nproc_per_node > 1, or torchrun --nnodes) every rank runs this loop on its share of each
pass's files, holding one shard of the sparse table (ps.py); passes stay in lockstep, every decision that changes
what the ranks do next (stop, existing base) is agreed, metrics and table statistics are summed over the ranks
before they are logged (by rank 0 only), and a rank whose collective fails because another rank died raises that
rank's error instead of its own "connection closed".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.runner.context import RunContext
from workbench.tasks.common import cpu_threads, resolve_device, seed_everything
from workbench.tasks.ctr_stream.config import CtrStreamConfig, next_day
from workbench.tasks.ctr_stream.data import (
    LoadCancelled,
    PassData,
    PassLoader,
    PassReader,
    PassSpec,
    Prefetcher,
    list_data_files,
    plan_passes,
)
from workbench.tasks.ctr_stream.metrics import CtrMetrics, reduce_metrics
from workbench.tasks.ctr_stream.outputs import STATE_FORMAT, StreamOutputs
from workbench.tasks.ctr_stream.ps import Dist, PeerFailed, is_peer_failure, rank_error_dir
from workbench.tasks.ctr_stream.save import read_model_lines
from workbench.tasks.ctr_stream.synth import generate_stream, read_summary
from workbench.tasks.ctr_stream.trainer import CtrTrainer, Dumper
from workbench.tasks.optim import set_rng_state
from workbench.tasks.profiling import step_profiler


@dataclass
class Progress:
    """Where the stream stands: the last fully finished pass, and the unfinished one if a cancel cut it."""

    last_done: tuple[str, int] | None = None  # (day, pass_id), its saves and day end included
    partial: dict[str, Any] | None = None  # {day, pass_id, next_batch, infer, train, created_before} after a stop
    xbox_base_key: int = field(default_factory=lambda: int(time.time()))
    day_infer: CtrMetrics = field(default_factory=CtrMetrics)  # the day so far, for infer/day_auc at its end
    day_train: CtrMetrics = field(default_factory=CtrMetrics)
    passes_done: int = 0  # for progress reports only (recomputed from the plan on resume)


def run(cfg: CtrStreamConfig, ctx: RunContext) -> None:
    torch.set_num_threads(cfg.torch_threads(cpu_threads()))
    seed_everything(cfg.seed)
    dist = Dist.setup(ctx.rank, ctx.world_size, cfg.shard_num, rank_error_dir(ctx.run_dir),
                      timeout_s=cfg.collective_timeout_s)
    try:
        _stream(cfg, ctx, dist)
    except BaseException as exc:
        if dist.distributed:
            if is_peer_failure(exc):
                cause = dist.peer_error()
                if cause is not None:
                    raise PeerFailed(cause) from exc
                if "timeout" in str(exc).lower() or "timed out" in str(exc).lower():  # not recorded: not our fault
                    raise PeerFailed(
                        f"no answer from another rank within collective_timeout_s ({cfg.collective_timeout_s:g} s): a "
                        f"rank hangs or is that far behind (rank {dist.rank} saw: {str(exc).splitlines()[0][:300]})"
                    ) from exc
            dist.record_error(exc)
        raise


def _stream(cfg: CtrStreamConfig, ctx: RunContext, dist: Dist) -> None:
    device = resolve_device(cfg.device, ctx.local_rank)
    data_dir = prepare_data_dir(cfg, ctx) if dist.rank == 0 else None
    data_dir = Path(dist.broadcast(str(data_dir) if data_dir else None))  # rank 0 generates a synthetic stream once
    out_root = Path(cfg.save_model_path).expanduser() if cfg.save_model_path else ctx.run_dir / "model"
    out_root.mkdir(parents=True, exist_ok=True)
    plan = plan_passes(cfg)
    trainer = CtrTrainer(cfg, device, dist)
    trainer.profiler = step_profiler(cfg, ctx, device)
    progress = _restore(cfg, ctx, trainer)
    trainer.broadcast_dense()
    todo = [spec for spec in plan if progress.last_done is None or (spec.day, spec.pass_id) > progress.last_done]
    ctx.logger.info("ctr_stream: %d passes (%d per day, %s..%s) from %s; %d to do; models in %s%s", len(plan),
                    cfg.passes_per_day, cfg.start_day, cfg.end_day, data_dir, len(todo), out_root,
                    f"; rank {dist.rank} of {dist.world}, table shards {cfg.shard_num}" if dist.distributed else "")
    progress.passes_done = len(plan) - len(todo)
    ctx.progress(progress.passes_done, len(plan), "passes")

    reader = PassReader(cfg, ctx.logger, with_ins_id=bool(cfg.dump_fields))
    loader = PassLoader(cfg, data_dir, reader, threading.Event(), dist)
    prefetcher = Prefetcher(loader, enabled=cfg.prefetch)
    outputs = StreamOutputs(cfg, ctx, out_root)
    try:
        for k, spec in enumerate(todo):
            if dist.any(ctx.should_stop()):
                break
            try:
                with trainer.profiler.phase("data"):  # a pass boundary inside the profiled window shows its wait
                    data = prefetcher.get(spec, lambda text: ctx.phase(f"waiting for data: {text}" if text else None),
                                          ctx.should_stop)
            except LoadCancelled:
                break
            if k + 1 < len(todo):
                prefetcher.start(todo[k + 1])
            if not _run_pass(cfg, ctx, trainer, spec, data, progress, outputs):
                break
            progress.passes_done = len(plan) - len(todo) + k + 1
            ctx.progress(progress.passes_done, len(plan), "passes")
        if dist.any(ctx.should_stop()):
            ctx.request_stop()  # a stop one rank saw is every rank's: all of them save their shard
            outputs.save_state(trainer, _progress_state(progress), {})
            ctx.event("cancelled", f"stopped after {progress.passes_done} of {len(plan)} passes; state saved")
        ctx.phase("writing the last outputs")
        outputs.close()
    except BaseException:
        outputs.close(raise_errors=False)
        raise
    finally:
        trainer.profiler.close()
        prefetcher.close()
        ctx.phase(None)


def _run_pass(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer, spec: PassSpec, data: PassData,
              progress: Progress, outputs: StreamOutputs) -> bool:
    """Infer, train, log, save. Returns False when a stop request cut the pass (its partial state is kept)."""
    where = f"pass {spec.pass_id}/{cfg.passes_per_day} of {spec.day}"
    partial = progress.partial if progress.partial and (progress.partial["day"], progress.partial["pass_id"]) == (
        spec.day, spec.pass_id) else None
    progress.partial = None
    if spec.pass_id == 1 and partial is None:
        progress.day_infer, progress.day_train = CtrMetrics(), CtrMetrics()
    t0 = time.monotonic()
    created_before = partial["created_before"] if partial else trainer.ps.global_counts()[2]
    outcome = _infer_and_train(cfg, ctx, trainer, spec, data, partial, where)
    if outcome is None:
        ctx.request_stop()  # every rank stopped at the same step (ps.pull agreed on it)
        return False
    infer_stats, train_stats, next_step, steps = outcome
    infer_stats = reduce_metrics(infer_stats, trainer.dist.all_sum)  # global: summed over the ranks
    train_stats = reduce_metrics(train_stats, trainer.dist.all_sum)
    if next_step < steps:
        ctx.request_stop()
        progress.partial = {"day": spec.day, "pass_id": spec.pass_id, "next_batch": next_step, "steps": steps,
                            "world_size": trainer.dist.world, "infer": infer_stats.state(),
                            "train": train_stats.state(), "created_before": created_before}
        return False

    progress.day_infer.merge(infer_stats)
    progress.day_train.merge(train_stats)
    examples, bad_lines = (int(v) for v in trainer.dist.all_sum(np.array([data.examples, data.bad_lines], np.float64)))
    infer = infer_stats.compute("infer") if examples else {}
    metrics = _pass_metrics(trainer, spec, data, examples, bad_lines, infer, train_stats, created_before,
                            time.monotonic() - t0)
    if examples == 0:
        ctx.event("warning", f"{where}: no impressions in {spec.label}; nothing trained")
    else:
        ctx.log(metrics, trainer.step)
        ctx.logger.info("%s: infer auc %.4f, train auc %.4f, copc %.3f, %d impressions, table %d rows (%d with "
                        "embedx), %.1f s", where, metrics["infer/auc"], metrics["train/auc"], metrics["train/copc"],
                        examples, metrics["table/rows"], metrics["table/rows_with_embedx"], metrics["pass/seconds"])
    checkpoint = outputs.after_pass(trainer, spec, data, progress.xbox_base_key, metrics)
    if spec.last_of_day:
        deleted, progress.xbox_base_key = outputs.end_of_day(trainer, spec, data, progress.xbox_base_key, metrics)
        _log_day_end(ctx, trainer, spec, progress, deleted)
    progress.last_done = (spec.day, spec.pass_id)
    if checkpoint or spec.last_of_day:
        outputs.save_state(trainer, _progress_state(progress), metrics)
    return True


def _infer_and_train(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer, spec: PassSpec, data: PassData,
                     partial: dict[str, Any] | None, where: str) -> tuple[CtrMetrics, CtrMetrics, int, int] | None:
    """(this rank's infer stats, train stats, next step to train, steps of the pass); None if a stop came during
    the infer phase.

    A resumed partial pass skips the infer phase (its statistics come from the state, on rank 0: they were summed
    over the ranks before they were saved) and the steps trained. With another rank count than the save had, the
    pass's batches differ: training resumes at the same fraction of the pass."""
    steps = trainer.begin_pass(data)  # the same on every rank: the most batches any rank has
    dump = _dumper(cfg, ctx, spec, trainer)
    try:
        if partial is None:
            ctx.phase(f"{where}: infer ({data.examples} impressions)")
            infer_stats = CtrMetrics()
            if not trainer.infer(data, steps, infer_stats, ctx.should_stop, dump if cfg.dump_phase == "infer" else None):
                return None
            train_stats, start = CtrMetrics(), 0
        else:
            infer_stats, train_stats = CtrMetrics.from_state(partial["infer"]), CtrMetrics.from_state(partial["train"])
            if trainer.dist.rank != 0:  # the saved sums are counted once, on rank 0
                infer_stats, train_stats = CtrMetrics(), CtrMetrics()
            start = partial["next_batch"]
            if partial.get("world_size", 1) != trainer.dist.world and partial.get("steps"):
                start = min(steps, round(start * steps / partial["steps"]))
            ctx.logger.info("%s: resuming training at step %d of %d", where, start, steps)
        ctx.phase(f"{where}: train")
        losses: list[float] = []
        logged = [trainer.step // cfg.print_freq]

        def on_step(step: int, loss: float) -> None:  # several ranks: step grows by the ranks' updates
            losses.append(loss)
            if step // cfg.print_freq > logged[0]:
                logged[0] = step // cfg.print_freq
                ctx.log({"train/loss": float(np.mean(losses))}, step)
                losses.clear()

        next_step = trainer.train(data, steps, train_stats, start, ctx.should_stop, on_step,
                                  dump if cfg.dump_phase == "train" else None)
        return infer_stats, train_stats, next_step, steps
    finally:
        if dump is not None:
            dump.close()


def _pass_metrics(trainer: CtrTrainer, spec: PassSpec, data: PassData, examples: int, bad_lines: int,
                  infer: dict[str, float], train_stats: CtrMetrics, created_before: int, seconds: float) -> dict[str, float]:
    """The pass's metrics over all ranks (a collective: every rank calls it; rank 0 logs them)."""
    metrics: dict[str, float] = {**infer, **train_stats.compute("train"), **trainer.ps.global_stats()}
    metrics.update({
        "table/created": float(trainer.ps.global_counts()[2] - created_before),
        "pass": float(spec.pass_id),
        "day": float(spec.day),
        "pass/global": float(spec.index + 1),
        "pass/examples": float(examples),
        "pass/bad_lines": float(bad_lines),
        "pass/seconds": seconds,
        "pass/wait_seconds": data.wait_seconds,
        "pass/read_seconds": data.read_seconds,
        "pass/examples_per_s": examples / seconds if seconds > 0 else 0.0,
    })
    if trainer.dist.distributed:  # payload sent between ranks so far (sparse exchange; dense gradients)
        sparse, dense = trainer.dist.all_sum(np.array([trainer.ps.bytes_sent, trainer.dense_bytes], np.float64))
        metrics["pass/sparse_bytes_total"] = float(sparse)
        metrics["pass/dense_gather_bytes_total"] = float(dense)
    return metrics


def _log_day_end(ctx: RunContext, trainer: CtrTrainer, spec: PassSpec, progress: Progress, deleted: int) -> None:
    day = {f"{phase}/day_{name}": value for phase, acc in (("infer", progress.day_infer), ("train", progress.day_train))
           for name, value in _day_summary(acc).items()}
    rows, mf_rows, _, _ = trainer.ps.global_counts()
    ctx.log({"table/deleted": float(deleted), "table/rows_after_shrink": float(rows), **day}, trainer.step)
    ctx.logger.info("day %s: infer auc %.4f over the day; shrink deleted %d features, %d remain (%d with embedx)",
                    spec.day, day["infer/day_auc"], deleted, rows, mf_rows)
    ctx.event("day_end", f"{spec.day} done: day infer AUC {day['infer/day_auc']:.4f}, shrink deleted {deleted} "
                         f"features, {rows} remain; base and batch models for {next_day(spec.day)}")


def _day_summary(acc: CtrMetrics) -> dict[str, float]:
    full = acc.compute("x")
    return {"auc": full["x/auc"], "copc": full["x/copc"], "logloss": full["x/logloss"], "examples": full["x/examples"]}


def _dumper(cfg: CtrStreamConfig, ctx: RunContext, spec: PassSpec, trainer: CtrTrainer) -> Dumper | None:
    if not cfg.dump_fields and not cfg.dump_param:
        return None
    root = Path(cfg.dump_fields_path).expanduser() if cfg.dump_fields_path else ctx.run_dir / "dump"
    return Dumper(root / spec.day / str(spec.pass_id), list(cfg.dump_fields), list(cfg.dump_param), trainer.model,
                  trainer.dist.rank)


# -- resumable state ----------------------------------------------------------------------------------------------
def _progress_state(progress: Progress) -> dict[str, Any]:
    """The progress part of a resumable state (plain values and tensors only: loadable with weights_only)."""
    return {"last_done": list(progress.last_done) if progress.last_done else None,
            "partial": _stats_to_tensors(progress.partial), "xbox_base_key": progress.xbox_base_key,
            "day_infer": _stats_to_tensors(progress.day_infer.state()),
            "day_train": _stats_to_tensors(progress.day_train.state())}


def _stats_to_tensors(value: Any) -> Any:
    """numpy arrays (metric buckets) inside nested dicts -> tensors, so the state loads with weights_only."""
    if isinstance(value, dict):
        return {k: _stats_to_tensors(v) for k, v in value.items()}
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _stats_from_tensors(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stats_from_tensors(v) for k, v in value.items()}
    return value.numpy() if isinstance(value, torch.Tensor) else value


def _warm_start(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer) -> None:
    """Load init_model_path: the sparse lines of a saved folder and, when present, its dense.pt."""
    folder = Path(cfg.init_model_path).expanduser()
    saved = read_model_lines(folder, 6 + trainer.table.embed_rule.state_dim, cfg.deconverter)
    mine = trainer.ps.owned(saved["keys"])  # every part file is read; each rank keeps the keys it owns
    trainer.table.load_saved_rows(saved["keys"][mine], saved["values"][mine], saved["has_embedx"][mine])
    dense = folder / "dense.pt"
    if dense.is_file():
        trainer.model.load_state_dict(torch.load(dense, map_location="cpu", weights_only=True)["model"])
    ctx.logger.info("started from %s: %d features (%d with embedx)%s", folder, trainer.table.n, trainer.table.mf_n,
                    "" if dense.is_file() else "; no dense.pt there, the network starts fresh")


def _restore(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer) -> Progress:
    state = ctx.resume_state or ctx.init_state
    if state is None:
        if cfg.init_model_path:
            _warm_start(cfg, ctx, trainer)
        return Progress()
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"the checkpoint to start from is not a ctr_stream state (format {state.get('format')!r}); "
                         "pick a checkpoint of a ctr_stream run")
    resuming = ctx.resume_state is not None
    trainer.load_state_dict(state, with_optimizer=resuming)
    if resuming and "rng" in state:  # states written before the shared rng_state have none
        set_rng_state(state["rng"])
    if not resuming:  # a fork starts its own stream from start_day with the parent's weights
        ctx.logger.info("starting from the parent checkpoint's table (%d features) and network", trainer.table.n)
        return Progress()
    p = state["progress"]
    partial = _stats_from_tensors(p["partial"])
    progress = Progress(last_done=tuple(p["last_done"]) if p["last_done"] else None, partial=partial,
                        xbox_base_key=int(p["xbox_base_key"]),
                        day_infer=CtrMetrics.from_state(_stats_from_tensors(p["day_infer"])),
                        day_train=CtrMetrics.from_state(_stats_from_tensors(p["day_train"])))
    ctx.logger.info("resuming after %s (step %d, %d features)%s", progress.last_done or "the start", trainer.step,
                    trainer.table.n, f", inside pass {partial['pass_id']} of {partial['day']}" if partial else "")
    ctx.event("resumed", f"continuing after {progress.last_done or 'the start'} at step {trainer.step}")
    return progress


# -- data ---------------------------------------------------------------------------------------------------------
def prepare_data_dir(cfg: CtrStreamConfig, ctx: RunContext, days: list[str] | None = None) -> Path:
    """train_data_dir, or (when empty) the synthetic stream in <run>/synthetic_data, generated once (only `days`
    of it when given: an evaluation needs only the last day)."""
    if cfg.train_data_dir:
        path = Path(cfg.train_data_dir).expanduser()
        if not path.is_dir() and not cfg.data_donefile:
            raise FileNotFoundError(f"train_data_dir {path} does not exist; point it at the YYYYMMDD/HHMM folders, or "
                                    "leave it empty to train on a generated synthetic stream")
        return path
    root = ctx.run_dir / "synthetic_data"
    summary = read_summary(root)
    wanted = {"settings": cfg.synthetic.model_dump(), "slots": cfg.slots, "split_interval": cfg.split_interval,
              "hourly": cfg.is_data_hourly_placed}
    days = days or cfg.days()
    if summary is not None and all(summary.get(k) == v for k, v in wanted.items()) and set(days) <= set(summary["days"]):
        return root
    ctx.phase("generating the synthetic stream")
    t0 = time.monotonic()
    summary = generate_stream(root, slots=cfg.slots, days=days, split_interval=cfg.split_interval,
                              settings=cfg.synthetic, donefile=cfg.data_donefile or "data.done",
                              hourly=cfg.is_data_hourly_placed, first_day=cfg.start_day)
    aucs = ", ".join(f"{d}: {v['bayes_auc']:.4f}" for d, v in summary["days"].items())
    ctx.logger.info("synthetic stream written to %s in %.1f s; Bayes-optimal AUC per day: %s", root,
                    time.monotonic() - t0, aucs)
    return root


# -- evaluation of a saved state ----------------------------------------------------------------------------------
def evaluate(cfg: CtrStreamConfig, state: dict[str, Any], data_path: str | None, ctx: RunContext) -> dict[str, float]:
    """Forward-only metrics (test/auc, test/copc, ...) of a checkpoint state on slot-format data: a file or a folder
    (read recursively). Without data_path, the last configured day of the run's stream."""
    torch.set_num_threads(cfg.torch_threads(cpu_threads()))
    trainer = CtrTrainer(cfg, resolve_device(cfg.device, ctx.local_rank))
    trainer.load_state_dict(state, with_optimizer=False)
    if data_path is None:
        last = cfg.days()[-1]
        files = list_data_files(prepare_data_dir(cfg, ctx, days=[last]) / last, cfg.data_donefile)
    else:
        path = Path(data_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"evaluation data {path} does not exist")
        files = [path] if path.is_file() else list_data_files(path, cfg.data_donefile)
    if not files:
        raise FileNotFoundError(f"no data files found for evaluation ({data_path or cfg.days()[-1]})")
    data = PassReader(cfg, ctx.logger).read_files(files, shuffle_seed=None, where=f"evaluation data {data_path or ''}")
    stats = CtrMetrics()
    trainer.infer(data, trainer.begin_pass(data), stats, lambda: False)
    return stats.compute("test")
