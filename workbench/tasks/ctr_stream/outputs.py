"""What a run leaves behind, pass by pass: PaddleRec-layout model folders, donefiles, checkpoint rows, states.

The training thread decides and snapshots (the rows a save writes, a copy of the resumable state) and applies the
table's after-save updates at once; one writer thread then formats and writes, in submission order:
    model folder -> its donefile line -> its checkpoint row      (checkpoint / delta / base / batch models)
    resumable state (.pt through ctx.checkpoints.save)
Text dumps of a large table take seconds; this way they overlap the next passes instead of stalling them. Order
keeps two promises: a donefile names only complete folders, and a resumable state is written after every output
that precedes it, so a resumed run never misses an output. A write error stops the run at the next pass.
With several ranks each rank's writer thread writes its own shards' part files; rank 0 finishes each folder and is
the only one to write donefiles, checkpoint rows and the (gathered) resumable state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.config.io import config_to_dict
from workbench.runner.context import RunContext
from workbench.tasks.ctr_stream.config import CtrStreamConfig, next_day
from workbench.tasks.ctr_stream.data import PassData, PassSpec
from workbench.tasks.ctr_stream.ps import merge_table_states
from workbench.tasks.ctr_stream.save import (
    SavedRows,
    model_folder,
    recorded_base_key,
    write_model,
    write_model_donefile,
    write_xbox_donefile,
)
from workbench.tasks.ctr_stream.table import SAVE_BASE, SAVE_BATCH, SAVE_CHECKPOINT, SAVE_DELTA
from workbench.tasks.ctr_stream.trainer import CtrTrainer, arrays_to_tensors
from workbench.tasks.optim import rng_state

STATE_FORMAT = "ctr_stream/1"
KINDS = {SAVE_CHECKPOINT: "checkpoint", SAVE_DELTA: "delta", SAVE_BASE: "base", SAVE_BATCH: "batch"}


class StreamOutputs:
    def __init__(self, cfg: CtrStreamConfig, ctx: RunContext, root: Path):
        self.cfg = cfg
        self.ctx = ctx
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctr-save")
        self._jobs: list[Future[None]] = []

    # -- per pass -------------------------------------------------------------------------------------------------
    def after_pass(self, trainer: CtrTrainer, spec: PassSpec, data: PassData, base_key: int,
                   metrics: dict[str, float]) -> bool:
        """Checkpoint and delta models of the pass. Returns whether the pass is a checkpoint pass (it then wants a
        resumable state too, once the caller has updated its progress)."""
        self.raise_if_failed()
        cfg = self.cfg
        kept = {k: v for k, v in metrics.items() if k.startswith(("infer/", "train/auc"))}
        checkpoint = spec.pass_id % cfg.checkpoint_per_pass == 0 and not spec.last_of_day
        # each announcement is bound to its own folder now: the writer thread calls it later, after this method
        # has returned (a closure over one reassigned variable once recorded the delta folder as the checkpoint)
        if checkpoint:
            self._save(trainer, model_folder(self.root, spec.day, SAVE_CHECKPOINT, spec.pass_id), SAVE_CHECKPOINT,
                       spec, metrics, {}, lambda folder, count: write_model_donefile(
                           self.root, spec.day, spec.pass_id, base_key, folder))
        if spec.pass_id % cfg.save_delta_frequency == 0:
            self._save(trainer, model_folder(self.root, spec.day, SAVE_DELTA, spec.pass_id), SAVE_DELTA, spec,
                       metrics, kept, lambda folder, count: write_xbox_donefile(
                           self.root, SAVE_DELTA, base_key, folder, count, _ins_path(data), _monitor(metrics)))
        return checkpoint

    def end_of_day(self, trainer: CtrTrainer, spec: PassSpec, data: PassData, base_key: int,
                   metrics: dict[str, float]) -> tuple[int, int]:
        """Shrink, then the next day's base model and batch model, unless that day has a base already. Returns
        (features deleted, base key): a new base gets a new key, which the next day's deltas and donefile lines
        carry.

        An existing base (a rerun of the day, or save_model_path shared with an earlier run) is kept and, as in
        PaddleRec, the batch model is not written either: the two belong together. The table still takes both
        saves' after-save updates (delta_score reset, unseen_days + 1), so the stream trains the same whether or
        not the folders were there.
        """
        self.ctx.phase(f"end of day {spec.day}: shrink")
        deleted = int(trainer.dist.all_sum(np.array([float(trainer.table.shrink())]))[0])
        following = next_day(spec.day)
        base = model_folder(self.root, following, SAVE_BASE)
        if trainer.dist.broadcast(base.exists()):  # rank 0 decides: every rank must take the same saves
            for mode in (SAVE_BASE, SAVE_BATCH):
                _, mask = SavedRows.take(trainer.table, mode)
                trainer.table.update_after_save(mode, mask)
            self.ctx.logger.info("%s exists: kept, and no batch model written for %s", base, following)
            return deleted, recorded_base_key(self.root, base) or base_key  # deltas keep naming the existing base
        key = int(time.time())
        self._save(trainer, base, SAVE_BASE, spec, metrics, {}, lambda folder, count: write_xbox_donefile(
            self.root, SAVE_BASE, key, folder, count, _ins_path(data), _monitor(metrics)))
        self._save(trainer, model_folder(self.root, following, SAVE_BATCH), SAVE_BATCH, spec, metrics, {},
                   lambda folder, count: write_model_donefile(self.root, following, -1, key, folder))
        return deleted, key

    def save_state(self, trainer: CtrTrainer, progress_state: dict[str, Any], metrics: dict[str, float]) -> None:
        """Queue the resumable state as it is now (copied here; training may go on while it is written).

        Every rank calls this at the same point; the writer threads gather the table shards to rank 0, which saves
        one state holding the whole table (so a resume may use another rank count: each rank keeps its keys)."""
        current = trainer.state_dict()  # the table part is already a copy; the network's tensors are live
        shard = trainer.table.state_dict() if trainer.dist.distributed else None
        state = {**current, "model": _clone(current["model"]), "optimizer": _clone(current["optimizer"]),
                 "progress": progress_state, "rng": rng_state(), "metrics": dict(metrics), "format": STATE_FORMAT}
        monitored = {k: v for k, v in metrics.items() if k in ("infer/auc", "train/auc")}
        step, config, dist = trainer.step, config_to_dict(self.cfg), trainer.dist

        def job() -> None:
            if shard is not None:
                import torch.distributed as tdist

                shards: list[Any] | None = [None] * dist.world if dist.rank == 0 else None
                tdist.gather_object(shard, shards, dst=0, group=dist.save)
                if dist.rank != 0:
                    return
                state["table"] = arrays_to_tensors(merge_table_states(shards))  # type: ignore[arg-type]
                state["world_size"] = dist.world
            # a stream has passes, not epochs: the envelope's epoch stays None (pass and day are in the state)
            self.ctx.checkpoints.save(state, step=step, config=config, metrics=monitored)

        self._submit(job)

    # -- the writer thread ----------------------------------------------------------------------------------------
    def _save(self, trainer: CtrTrainer, folder: Path, mode: int, spec: PassSpec, metrics: dict[str, float],
              row_metrics: dict[str, float], announce: Callable[[Path, int], None]) -> None:
        """Snapshot the rows `mode` saves and apply its after-save update now; write the folder, then
        `announce(folder, count)` (its donefile line), then its checkpoint row, in the writer thread."""
        saved, mask = SavedRows.take(trainer.table, mode)
        trainer.table.update_after_save(mode, mask)  # what PaddleRec does once the save succeeded
        dense = _clone(trainer.dense_state(with_optimizer=mode in (SAVE_CHECKPOINT, SAVE_BATCH)))
        cfg = self.cfg
        meta = {"day": spec.day, "pass_id": spec.pass_id, "step": trainer.step, "accessor_class": cfg.accessor_class,
                "embedx_dim": cfg.embedx_dim, "sparse_slots": cfg.slots, "layer_sizes": list(cfg.layer_sizes),
                "metrics": dict(metrics)}
        compress = cfg.converter == "gzip" and mode in (SAVE_DELTA, SAVE_BASE)
        step = trainer.step

        dist = trainer.dist

        def job() -> None:
            t0 = time.monotonic()
            count = write_model(folder, saved, mode, dense, meta, shard_num=cfg.shard_num, compress=compress,
                                dist=dist)
            if dist.rank != 0:  # rank 0 announces and records the folder, once every shard is in it
                return
            announce(folder, count)
            self._register(folder, KINDS[mode], step, spec, row_metrics)
            self.ctx.logger.info("saved %s model %s (%d features, %.1f s)", KINDS[mode], folder, count,
                                 time.monotonic() - t0)

        self._submit(job)

    def _register(self, folder: Path, kind: str, step: int, spec: PassSpec, metrics: dict[str, float]) -> None:
        """Record a model folder as a downloadable output, once (a resumed run rewrites the folder, not the row).
        A text checkpoint carries no monitored metric: the .pt state of the same step is the "best" candidate."""
        try:
            relative = str(folder.resolve().relative_to(self.ctx.run_dir.resolve()))
        except ValueError:
            return  # save_model_path outside the run folder: the files stay where the user asked, unlisted
        if any(info.path == relative for info in self.ctx.checkpoints.list(kind)):
            return
        self.ctx.checkpoints.register(folder, kind=kind, step=step, metrics=metrics, pass_id=spec.pass_id,  # type: ignore[arg-type]
                                      day=spec.day)

    def _submit(self, job: Callable[[], None]) -> None:
        self._jobs.append(self._pool.submit(job))

    def raise_if_failed(self) -> None:
        """Re-raise the error of a finished write (in the training thread), and forget the finished jobs."""
        still = []
        for job in self._jobs:
            if job.done():
                job.result()
            else:
                still.append(job)
        self._jobs = still

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every queued write. With raise_errors=False (the run already failed) errors are only logged."""
        for job in self._jobs:
            try:
                job.result()
            except Exception as exc:
                if raise_errors:
                    self._pool.shutdown(wait=True)
                    raise
                self.ctx.logger.error("writing an output failed too: %s", exc)
        self._jobs.clear()
        self._pool.shutdown(wait=True)


def _clone(value: Any) -> Any:
    """Deep copy of tensors inside dicts/lists (model and optimizer state dicts hold the live tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _ins_path(data: PassData) -> str:
    return ",".join(sorted({str(f.parent) for f in data.files}))


def _monitor(metrics: dict[str, float]) -> str:
    return f"infer_auc={metrics.get('infer/auc', 0.5):.6f}"
