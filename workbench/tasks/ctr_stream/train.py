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
from workbench.tasks.ctr_stream.metrics import CtrMetrics
from workbench.tasks.ctr_stream.save import (
    model_folder,
    save_model,
    write_model_donefile,
    write_xbox_donefile,
)
from workbench.tasks.ctr_stream.synth import generate_stream, read_summary
from workbench.tasks.ctr_stream.table import SAVE_BASE, SAVE_BATCH, SAVE_CHECKPOINT, SAVE_DELTA
from workbench.tasks.ctr_stream.trainer import CtrTrainer, Dumper

STATE_FORMAT = "ctr_stream/1"


@dataclass
class Progress:
    """Where the stream stands: the last fully finished pass, and the unfinished one if a cancel cut it."""

    last_done: tuple[str, int] | None = None  # (day, pass_id), its saves and day end included
    partial: dict[str, Any] | None = None  # {day, pass_id, next_batch, infer, train_stats} after a mid-pass stop
    xbox_base_key: int = field(default_factory=lambda: int(time.time()))
    passes_done: int = 0  # for progress reports only (recomputed from the plan on resume)


def run(cfg: CtrStreamConfig, ctx: RunContext) -> None:
    torch.set_num_threads(cfg.train_thread_num or cpu_threads())
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device, ctx.local_rank)
    data_dir = prepare_data_dir(cfg, ctx)
    out_root = Path(cfg.save_model_path).expanduser() if cfg.save_model_path else ctx.run_dir / "model"
    out_root.mkdir(parents=True, exist_ok=True)
    plan = plan_passes(cfg)
    trainer = CtrTrainer(cfg, device)
    progress = _restore(cfg, ctx, trainer)
    todo = [spec for spec in plan if progress.last_done is None or (spec.day, spec.pass_id) > progress.last_done]
    ctx.logger.info("ctr_stream: %d passes (%d per day, %s..%s) from %s; %d to do; models in %s", len(plan),
                    cfg.passes_per_day, cfg.start_day, cfg.end_day, data_dir, len(todo), out_root)
    progress.passes_done = len(plan) - len(todo)
    ctx.progress(progress.passes_done, len(plan), "passes")

    reader = PassReader(cfg, ctx.logger, with_ins_id=bool(cfg.dump_fields))
    loader = PassLoader(cfg, data_dir, reader, threading.Event())
    prefetcher = Prefetcher(loader, enabled=cfg.prefetch)
    try:
        for k, spec in enumerate(todo):
            if ctx.should_stop():
                break
            try:
                data = prefetcher.get(spec, lambda text: ctx.phase(f"waiting for data: {text}" if text else None),
                                      ctx.should_stop)
            except LoadCancelled:
                break
            if k + 1 < len(todo):
                prefetcher.start(todo[k + 1])
            finished = _run_pass(cfg, ctx, trainer, spec, data, progress, out_root)
            if not finished:
                break
            progress.passes_done = len(plan) - len(todo) + k + 1
            ctx.progress(progress.passes_done, len(plan), "passes")
        if ctx.should_stop():
            _save_state(ctx, trainer, progress, cfg, metrics={})
            ctx.event("cancelled", f"stopped after {progress.passes_done} of {len(plan)} passes; state saved")
    finally:
        prefetcher.close()
        ctx.phase(None)


def _run_pass(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer, spec: PassSpec, data: PassData,
              progress: Progress, out_root: Path) -> bool:
    """Infer, train, save. Returns False when a stop request cut the pass (its partial state is kept)."""
    where = f"pass {spec.pass_id}/{cfg.passes_per_day} of {spec.day}"
    partial = progress.partial if progress.partial and (progress.partial["day"], progress.partial["pass_id"]) == (
        spec.day, spec.pass_id) else None
    progress.partial = None
    t0 = time.monotonic()
    rows = trainer.table.lookup(data.keys)  # pass-unique features -> rows; kept current by the pushes
    created_before = partial["created_before"] if partial else trainer.table.created_total
    dump = _dumper(cfg, ctx, spec, trainer)

    if partial is None:
        ctx.phase(f"{where}: infer ({data.examples} impressions)")
        infer_stats = CtrMetrics()
        if not trainer.infer(data, rows, infer_stats, ctx.should_stop, dump if cfg.dump_phase == "infer" else None):
            return False
        infer = infer_stats.compute("infer") if data.examples else {}
        train_stats, start = CtrMetrics(), 0
    else:
        infer, train_stats, start = partial["infer"], CtrMetrics.from_state(partial["train_stats"]), partial["next_batch"]
        ctx.logger.info("%s: resuming training at batch %d of %d", where, start, len(data.batches))

    ctx.phase(f"{where}: train")
    loss_window: list[float] = []

    def on_step(step: int, loss: float) -> None:
        loss_window.append(loss)
        if step % cfg.print_freq == 0:
            ctx.log({"train/loss": float(np.mean(loss_window))}, step)
            loss_window.clear()

    next_batch = trainer.train(data, rows, train_stats, start, ctx.should_stop, on_step,
                               dump if cfg.dump_phase == "train" else None)
    if dump is not None:
        dump.close()
    if next_batch < len(data.batches):
        progress.partial = {"day": spec.day, "pass_id": spec.pass_id, "next_batch": next_batch, "infer": infer,
                            "train_stats": train_stats.state(), "created_before": created_before}
        return False

    metrics = _pass_metrics(trainer, spec, data, infer, train_stats, created_before, time.monotonic() - t0)
    if data.examples == 0:
        ctx.event("warning", f"{where}: no impressions in {spec.label}; nothing trained")
    else:
        ctx.log(metrics, trainer.step)
        ctx.logger.info("%s: infer auc %.4f, train auc %.4f, copc %.3f, %d impressions, table %d rows (%d with "
                        "embedx), %.1f s", where, metrics["infer/auc"], metrics["train/auc"], metrics["train/copc"],
                        data.examples, trainer.table.n, trainer.table.mf_n, metrics["pass/seconds"])
    _save_outputs(cfg, ctx, trainer, spec, data, progress, out_root, metrics)
    return True


def _pass_metrics(trainer: CtrTrainer, spec: PassSpec, data: PassData, infer: dict[str, float],
                  train_stats: CtrMetrics, created_before: int, seconds: float) -> dict[str, float]:
    metrics: dict[str, float] = {**infer, **train_stats.compute("train"), **trainer.table.stats()}
    metrics.update({
        "table/created": float(trainer.table.created_total - created_before),
        "pass": float(spec.pass_id),
        "day": float(spec.day),
        "pass/global": float(spec.index + 1),
        "pass/examples": float(data.examples),
        "pass/bad_lines": float(data.bad_lines),
        "pass/seconds": seconds,
        "pass/wait_seconds": data.wait_seconds,
        "pass/read_seconds": data.read_seconds,
        "pass/examples_per_s": data.examples / seconds if seconds > 0 else 0.0,
    })
    return metrics


def _save_outputs(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer, spec: PassSpec, data: PassData,
                  progress: Progress, out_root: Path, metrics: dict[str, float]) -> None:
    """Checkpoint and delta models of the pass; at the day's end shrink, base and batch model."""
    step, kept = trainer.step, {k: v for k, v in metrics.items() if k.startswith(("infer/", "train/auc"))}
    monitor = f"infer_auc={metrics.get('infer/auc', 0.5):.6f}"
    ins_path = ",".join(str(f.parent) for f in data.files[:1])
    save_checkpoint = spec.pass_id % cfg.checkpoint_per_pass == 0 and not spec.last_of_day
    if save_checkpoint:
        ctx.phase(f"saving checkpoint model {spec.day}/{spec.pass_id}")
        folder = model_folder(out_root, spec.day, SAVE_CHECKPOINT, spec.pass_id)
        _save(cfg, trainer, folder, SAVE_CHECKPOINT, spec, metrics)
        write_model_donefile(out_root, spec.day, spec.pass_id, progress.xbox_base_key, folder)
        _register(ctx, folder, "checkpoint", step, spec, {})  # no monitor metric: the .pt state below is the "best"
    if spec.pass_id % cfg.save_delta_frequency == 0:
        ctx.phase(f"saving delta model {spec.day}/delta-{spec.pass_id}")
        folder = model_folder(out_root, spec.day, SAVE_DELTA, spec.pass_id)
        count = _save(cfg, trainer, folder, SAVE_DELTA, spec, metrics)
        write_xbox_donefile(out_root, SAVE_DELTA, progress.xbox_base_key, folder, count, ins_path, monitor)
        _register(ctx, folder, "delta", step, spec, kept)
    if spec.last_of_day:
        _end_of_day(cfg, ctx, trainer, spec, progress, out_root, metrics, ins_path, monitor)
    progress.last_done = (spec.day, spec.pass_id)
    if save_checkpoint or spec.last_of_day:
        _save_state(ctx, trainer, progress, cfg, metrics)


def _end_of_day(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer, spec: PassSpec, progress: Progress,
                out_root: Path, metrics: dict[str, float], ins_path: str, monitor: str) -> None:
    ctx.phase(f"end of day {spec.day}: shrink")
    deleted = trainer.table.shrink()
    following = next_day(spec.day)
    base = model_folder(out_root, following, SAVE_BASE)
    if not base.exists():  # PaddleRec: only when the next day has no base yet (a rerun keeps the first one)
        ctx.phase(f"end of day {spec.day}: base model {following}/base")
        progress.xbox_base_key = int(time.time())
        count = _save(cfg, trainer, base, SAVE_BASE, spec, metrics)
        write_xbox_donefile(out_root, SAVE_BASE, progress.xbox_base_key, base, count, ins_path, monitor)
        _register(ctx, base, "base", trainer.step, spec, {})
    ctx.phase(f"end of day {spec.day}: batch model {following}/0")
    batch = model_folder(out_root, following, SAVE_BATCH)
    _save(cfg, trainer, batch, SAVE_BATCH, spec, metrics)
    write_model_donefile(out_root, following, -1, progress.xbox_base_key, batch)
    _register(ctx, batch, "batch", trainer.step, spec, {})
    stats = {"table/deleted": float(deleted), **trainer.table.stats()}
    ctx.log(stats, trainer.step)
    ctx.event("day_end", f"{spec.day} done: shrink deleted {deleted} features, {trainer.table.n} remain "
                         f"({trainer.table.mf_n} with embedx); base and batch model saved for {following}")


def _save(cfg: CtrStreamConfig, trainer: CtrTrainer, folder: Path, mode: int, spec: PassSpec,
          metrics: dict[str, float]) -> int:
    meta = {"day": spec.day, "pass_id": spec.pass_id, "step": trainer.step, "accessor_class": cfg.accessor_class,
            "embedx_dim": cfg.embedx_dim, "sparse_slots": cfg.slots, "layer_sizes": list(cfg.layer_sizes),
            "metrics": metrics}
    compress = cfg.converter == "gzip" and mode in (SAVE_DELTA, SAVE_BASE)
    return save_model(folder, trainer.table, mode, trainer.dense_state(mode in (SAVE_CHECKPOINT, SAVE_BATCH)), meta,
                      shard_num=cfg.shard_num, compress=compress)


def _register(ctx: RunContext, folder: Path, kind: str, step: int, spec: PassSpec, metrics: dict[str, float]) -> None:
    """Record a model folder as a downloadable output, once (a resumed run rewrites the folder, not the row)."""
    try:
        relative = str(folder.resolve().relative_to(ctx.run_dir.resolve()))
    except ValueError:
        return  # save_model_path outside the run folder: the files stay where the user asked, unlisted
    if any(info.path == relative for info in ctx.checkpoints.list(kind)):
        return
    ctx.checkpoints.register(folder, kind=kind, step=step, metrics=metrics, pass_id=spec.pass_id, day=spec.day)  # type: ignore[arg-type]


def _dumper(cfg: CtrStreamConfig, ctx: RunContext, spec: PassSpec, trainer: CtrTrainer) -> Dumper | None:
    if not cfg.dump_fields and not cfg.dump_param:
        return None
    root = Path(cfg.dump_fields_path).expanduser() if cfg.dump_fields_path else ctx.run_dir / "dump"
    return Dumper(root / spec.day / str(spec.pass_id), list(cfg.dump_fields), list(cfg.dump_param), trainer.model)


# -- resumable state ----------------------------------------------------------------------------------------------
def _save_state(ctx: RunContext, trainer: CtrTrainer, progress: Progress, cfg: CtrStreamConfig,
                metrics: dict[str, float]) -> None:
    state = {
        "format": STATE_FORMAT,
        **trainer.state_dict(),
        "progress": {"last_done": list(progress.last_done) if progress.last_done else None,
                     "partial": progress.partial, "xbox_base_key": progress.xbox_base_key},
        "config": cfg.model_dump(mode="json"),
        "metrics": metrics,
    }
    if progress.partial is not None:  # CtrMetrics state holds numpy arrays: make them tensors for weights_only
        state["progress"]["partial"] = {**progress.partial, "train_stats": {
            k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in progress.partial["train_stats"].items()}}
    monitored = {k: v for k, v in metrics.items() if k in ("infer/auc", "train/auc")}
    ctx.checkpoints.save(state, step=trainer.step, metrics=monitored, kind="checkpoint")


def _restore(cfg: CtrStreamConfig, ctx: RunContext, trainer: CtrTrainer) -> Progress:
    state = ctx.resume_state or ctx.init_state
    if state is None:
        return Progress()
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"the checkpoint to start from is not a ctr_stream state (format {state.get('format')!r}); "
                         "pick a checkpoint of a ctr_stream run")
    resuming = ctx.resume_state is not None
    trainer.load_state_dict(state, with_optimizer=resuming)
    if not resuming:  # a fork starts its own stream from start_day with the parent's weights
        ctx.logger.info("starting from the parent checkpoint's table (%d features) and network", trainer.table.n)
        return Progress()
    p = state["progress"]
    partial = p["partial"]
    if partial is not None:
        partial = {**partial, "train_stats": {k: (v.numpy() if isinstance(v, torch.Tensor) else v)
                                              for k, v in partial["train_stats"].items()}}
    progress = Progress(last_done=tuple(p["last_done"]) if p["last_done"] else None, partial=partial,
                        xbox_base_key=int(p["xbox_base_key"]))
    ctx.logger.info("resuming after %s (step %d, %d features)%s", progress.last_done or "the start", trainer.step,
                    trainer.table.n, f", inside pass {partial['pass_id']} of {partial['day']}" if partial else "")
    ctx.event("resumed", f"continuing after {progress.last_done or 'the start'} at step {trainer.step}")
    return progress


# -- data ---------------------------------------------------------------------------------------------------------
def prepare_data_dir(cfg: CtrStreamConfig, ctx: RunContext) -> Path:
    """train_data_dir, or (when empty) the synthetic stream in <run>/synthetic_data, generated once."""
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
    if summary is not None and all(summary.get(k) == v for k, v in wanted.items()) and set(cfg.days()) <= set(summary["days"]):
        return root
    ctx.phase("generating the synthetic stream")
    t0 = time.monotonic()
    summary = generate_stream(root, slots=cfg.slots, days=cfg.days(), split_interval=cfg.split_interval,
                              settings=cfg.synthetic, donefile=cfg.data_donefile or "data.done",
                              hourly=cfg.is_data_hourly_placed)
    aucs = ", ".join(f"{d}: {v['bayes_auc']:.4f}" for d, v in summary["days"].items())
    ctx.logger.info("synthetic stream written to %s in %.1f s; Bayes-optimal AUC per day: %s", root,
                    time.monotonic() - t0, aucs)
    return root


# -- evaluation of a saved state ----------------------------------------------------------------------------------
def evaluate(cfg: CtrStreamConfig, state: dict[str, Any], data_path: str | None, ctx: RunContext) -> dict[str, float]:
    """Forward-only metrics (test/auc, test/copc, ...) of a checkpoint state on slot-format data: a file or a folder
    (read recursively). Without data_path, the last configured day of the run's stream."""
    torch.set_num_threads(cfg.train_thread_num or cpu_threads())
    trainer = CtrTrainer(cfg, resolve_device(cfg.device, ctx.local_rank))
    trainer.load_state_dict(state, with_optimizer=False)
    if data_path is None:
        files = list_data_files(prepare_data_dir(cfg, ctx) / cfg.days()[-1], cfg.data_donefile)
    else:
        path = Path(data_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"evaluation data {path} does not exist")
        files = [path] if path.is_file() else list_data_files(path, cfg.data_donefile)
    if not files:
        raise FileNotFoundError(f"no data files found for evaluation ({data_path or cfg.days()[-1]})")
    data = PassReader(cfg, ctx.logger).read_files(files, shuffle_seed=None, where=f"evaluation data {data_path or ''}")
    stats = CtrMetrics()
    trainer.infer(data, trainer.table.lookup(data.keys), stats, lambda: False)
    return stats.compute("test")
