"""Training loop of the spleeter task: `run(cfg, ctx)` and the checkpoint page's `evaluate(...)`.

Read top to bottom: set-up steps (_setup_data, _setup_model, _setup_optimizer, _restore), one visible loop in
`run`, then validation. Seed 003 parameters map onto the workbench like this:
- `load_model` / `load_optimizer`: whether a resumed (ctx.resume_state) or forked (ctx.init_state) run takes the
  checkpoint's weights / optimizer state. `start`: the epoch a run starts counting from (0 = the checkpoint's).
- `keep_ckpt`: retention is the platform's (ctx.checkpoints.save applies it); `model_dir`: where the final
  separation model is exported; `trainer`: the run's owner (the platform reads it from the config).
- `mode: process_data`: spectrogram chunks are computed once into a shared cache and the validation excerpts saved
  as tensors before the first step; `mode: fast_train` trains from what process_data saved and opens no audio.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from workbench.config.io import config_to_dict
from workbench.runner.checkpoints import atomic_torch_save
from workbench.runner.context import RunContext
from workbench.tasks.common import cpu_threads, resolve_device, seed_everything
from workbench.tasks.optim import EarlyStopping, eager_step, rng_state, set_rng_state
from workbench.tasks.profiling import step_profiler
from workbench.tasks.spleeter import MONITOR
from workbench.tasks.spleeter.audio import magnitude
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.data import (
    AudioChunks,
    CachedChunks,
    EpochSampler,
    Song,
    build_cache,
    cache_bytes,
    cache_root,
    check_songs,
    prepare_songs,
    read_manifest,
    worker_init,
    write_manifest,
)
from workbench.tasks.spleeter.metrics import song_scores, summarize
from workbench.tasks.spleeter.model import Separator
from workbench.tasks.spleeter.processed import (
    SavedExcerpt,
    load_processed,
    processed_folder,
    save_processed,
    valid_excerpt,
)
from workbench.tasks.spleeter.separate import build_model, ideal_ratio_mask, load_separator, separate


# -- set-up ------------------------------------------------------------------------------------------------------


def _setup_data(cfg: SpleeterConfig, ctx: RunContext) -> tuple[Dataset, list[Song] | list[SavedExcerpt]]:
    """Check every song before the first step; process_data also saves the tensors, fast_train only reads them."""
    root = cache_root(cfg)
    if cfg.mode == "fast_train":  # no audio file is opened: not even a header
        specs, valid = load_processed(cfg, root)
        ctx.logger.info("fast_train: %d validation excerpts and the spectrograms in %s", len(valid), specs)
        ctx.event("data", f"fast_train from {processed_folder(cfg, root)}")
        return CachedChunks(specs, cfg.T), valid

    def songs_progress(done: int, total: int) -> None:
        ctx.phase(f"generating songs: {done}/{total}")
        ctx.progress(done, total, "songs")

    train, valid, warnings = prepare_songs(cfg, root, songs_progress)
    for w in warnings[:20]:
        ctx.logger.warning(w)
    if warnings:
        more = f" (+{len(warnings) - 20} more in train.log)" if len(warnings) > 20 else ""
        ctx.event("data", f"{len(warnings)} data warning(s), first: {warnings[0]}{more}")
    ctx.logger.info("%d training songs, %d validation songs", len(train), len(valid))
    if cfg.mode == "train":
        return AudioChunks(train, cfg), valid

    ctx.logger.info("process_data: caching spectrograms (%.1f MB) under %s", cache_bytes(len(train), cfg) / 1e6, root)

    def cache_progress(done: int, total: int) -> None:
        ctx.phase(f"process_data: {done}/{total} songs")
        ctx.progress(done, total, "songs")

    folder, reused = build_cache(train, cfg, root, cache_progress)
    ctx.event("data", f"process_data: {'reused' if reused else 'built'} spectrogram cache {folder.name}")
    processed, excerpts = save_processed(cfg, root, folder, valid)
    ctx.event("data", f"process_data: tensors saved in {processed} (mode: fast_train trains from them)")
    return CachedChunks(folder, cfg.T), excerpts


def _setup_model(cfg: SpleeterConfig, device: torch.device) -> tuple[Separator, torch.nn.Module]:
    """The Separator and what the loop calls (the same module, or its DDP wrapper when distributed)."""
    model = build_model(cfg).to(device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        ids = [device.index] if device.type == "cuda" else None
        return model, torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model, model


def _setup_optimizer(cfg: SpleeterConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Seed 003's optimizers: momentum is SGD/RMSprop momentum and Adam's beta1; lr_decay is applied in _lr_at.

    Fused kernels where PyTorch has them: two U-Nets hold 19.6M parameters, and at CPU-sized inputs the per-tensor
    update loop of the default Adam was ~30% of a step.
    """
    params, lr, wd = model.parameters(), cfg.learning_rate, cfg.weight_decay
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(cfg.momentum, 0.999), weight_decay=wd, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(cfg.momentum, 0.999), weight_decay=wd, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, dampening=cfg.dampening, weight_decay=wd,
                               fused=True)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)  # lr_decay below, same formula as Adagrad's own


def _lr_at(cfg: SpleeterConfig, step: int, steps_per_epoch: int, plateau_scale: float) -> float:
    """lr / (1 + step*lr_decay), times linear warm-up/ending ramps and the reduce-on-plateau factor."""
    lr = cfg.learning_rate / (1.0 + step * cfg.lr_decay) * plateau_scale
    epoch_pos = step / max(1, steps_per_epoch)  # fractional epoch
    if cfg.epochs_warmup and epoch_pos < cfg.epochs_warmup:
        lr *= (epoch_pos + 1 / max(1, steps_per_epoch)) / cfg.epochs_warmup
    if cfg.epochs_ending and epoch_pos > cfg.epochs - cfg.epochs_ending:
        lr *= max(0.0, (cfg.epochs - epoch_pos) / cfg.epochs_ending)
    return lr


class Loop:
    """Counters a checkpoint needs to continue exactly: steps, epochs, the plateau scale and early stopping."""

    def __init__(self, cfg: SpleeterConfig) -> None:
        self.step = 0
        self.epoch = 0  # the epoch in progress (0-based)
        self.epoch_batches = 0  # batches of that epoch already trained
        self.plateau_scale = 1.0
        self.early = EarlyStopping(patience=cfg.stopping_step, min_delta=cfg.min_delta, mode=MONITOR[1])

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "epoch_batches": self.epoch_batches,
                "plateau_scale": self.plateau_scale, "early_stopping": self.early.state_dict()}

    def load(self, state: Mapping[str, Any]) -> None:
        self.step, self.epoch, self.epoch_batches = int(state["step"]), int(state["epoch"]), int(state["epoch_batches"])
        self.plateau_scale = float(state["plateau_scale"])
        # checkpoints written before the shared EarlyStopping kept its two values in the loop itself
        self.early.load_state_dict(state["early_stopping"] if "early_stopping" in state else state)


def _old_rng(state: Mapping[str, Any]) -> dict[str, Any]:
    """The RNG state of a checkpoint written before the shared rng_state (NumPy's generator under other keys)."""
    if "numpy_keys" not in state:
        return dict(state)
    return {"torch": state["torch"], "numpy": {"keys": state["numpy_keys"], "pos": state["numpy_pos"],
                                               "has_gauss": 0, "cached_gaussian": 0.0}}


def _restore(cfg: SpleeterConfig, ctx: RunContext, model: Separator, opt: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, loop: Loop) -> None:
    """Resume (same run) or fork (another run's checkpoint) according to load_model / load_optimizer / start."""
    checkpoint, kind = ((ctx.resume_checkpoint, "resume") if ctx.resume_checkpoint is not None
                        else (ctx.init_checkpoint, "fork"))
    if checkpoint is None:
        loop.epoch = cfg.start
        return
    source = checkpoint["state"]
    if cfg.load_model:
        model.load_state_dict(source["model"])
    if cfg.load_optimizer and "optimizer" in source:
        opt.load_state_dict(source["optimizer"])
        if scaler.is_enabled() and source["scaler"]:  # a disabled scaler saved an empty state
            scaler.load_state_dict(source["scaler"])
    if kind == "resume" and "loop" in source:
        loop.load(source["loop"])
        set_rng_state(_old_rng(source["rng"]))
    if cfg.start:
        loop.epoch, loop.epoch_batches = cfg.start, 0
    ctx.event(kind, f"{kind} from step {checkpoint['step']}: weights {'loaded' if cfg.load_model else 'fresh'}, "
              f"optimizer {'loaded' if cfg.load_optimizer else 'fresh'}, starting at epoch {loop.epoch}")


def _loss(cfg: SpleeterConfig, estimates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Spleeter's L1_mask / L2: mean over elements per stem, summed over stems. Shapes [B, S, C, F, T]."""
    diff = estimates.float() - targets
    per_elem = diff.abs() if cfg.loss == "l1" else diff**2
    return per_elem.mean(dim=(0, 2, 3, 4)).sum()


def _save(cfg: SpleeterConfig, ctx: RunContext, model: Separator, opt: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler, loop: Loop, metrics: Mapping[str, float], *, monitored: bool) -> None:
    """Checkpoint the loop; with monitored=False (a cancel between evaluations) the row carries no metrics, so
    an older evaluation's values do not make it a "best" candidate."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
             "loop": loop.state(), "rng": rng_state(), "stems": list(cfg.stem_names), "metrics": dict(metrics)}
    ctx.checkpoints.save(state, step=loop.step, epoch=loop.epoch, config=config_to_dict(cfg),
                         metrics=dict(metrics) if monitored else None)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True if any rank says so (a cancel or early stop must end every rank at the same step)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# -- the loop ------------------------------------------------------------------------------------------------------


def run(cfg: SpleeterConfig, ctx: RunContext) -> None:
    device = resolve_device(cfg.device, ctx.local_rank)
    torch.set_num_threads(cpu_threads())
    seed_everything(cfg.seed, ctx.rank)
    dataset, valid_songs = _setup_data(cfg, ctx)
    model, net = _setup_model(cfg, device)
    opt = _setup_optimizer(cfg, model)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.enable_amp and cfg.enable_scaler and device.type == "cuda")
    loop = Loop(cfg)
    _restore(cfg, ctx, model, opt, scaler, loop)

    sampler = EpochSampler(len(dataset), cfg.seed, ctx.rank, ctx.world_size)
    workers = cfg.num_workers if cfg.mode == "train" else 0  # cached crops are a memcpy: workers only add overhead
    loader = DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler, num_workers=workers,
                        worker_init_fn=worker_init, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    steps_per_epoch = math.ceil(len(sampler) / cfg.train_batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    evaluator = Evaluator(cfg, valid_songs, device, "valid")
    ctx.phase(None)
    ctx.logger.info("training %d epochs x %d steps (batch %d, %s mode, %s)", cfg.epochs, steps_per_epoch,
                    cfg.train_batch_size, cfg.mode, device)

    metrics: dict[str, float] = {}
    window_loss, window_items, window_start = 0.0, 0, time.perf_counter()
    last_progress = 0.0
    profiler = step_profiler(cfg, ctx, device)
    while loop.epoch < cfg.epochs:
        sampler.set_epoch(loop.epoch, skip=loop.epoch_batches * cfg.train_batch_size)
        net.train()
        for batch in profiler.batches(loader):  # [B, S+1, C, F, T], mixture first
            with profiler.phase("data"):
                batch = batch.to(device, non_blocking=True)
            mix, targets = batch[:, 0], batch[:, 1:]
            lr = _lr_at(cfg, loop.step, steps_per_epoch, loop.plateau_scale)
            for group in opt.param_groups:
                group["lr"] = lr
            with profiler.phase("forward"):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.enable_amp):
                    estimates = net(mix)  # [B, S, C, F, T]
                loss = _loss(cfg, estimates, targets)
            with profiler.phase("backward"):
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            with profiler.phase("optimizer"):
                if cfg.clip_grad_norm is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm.max_norm,
                                                   cfg.clip_grad_norm.norm_type)
                if scaler.is_enabled():
                    scaler.step(opt)
                else:
                    eager_step(opt)  # what a disabled scaler's step calls, without importing torch._dynamo
                scaler.update()
            profiler.step()
            loop.step += 1
            loop.epoch_batches += 1
            window_loss += loss.item() * len(batch)  # .item() syncs with the GPU once per step; cheap next to a U-Net
            window_items += len(batch)
            if not cfg.clean_logs:
                ctx.logger.info("step %d loss %.*f", loop.step, cfg.loss_decimal_place, loss.item())
            if loop.step % cfg.print_freq == 0 or loop.step == total_steps:
                elapsed = time.perf_counter() - window_start
                ctx.log({"train/loss": window_loss / window_items, "train/lr": lr, "train/epoch": loop.epoch,
                         "train/samples_per_s": window_items * ctx.world_size / elapsed}, loop.step)
                ctx.logger.info("epoch %d step %d/%d loss %.*f lr %.3g %.1f samples/s", loop.epoch, loop.step,
                                total_steps, cfg.loss_decimal_place, window_loss / window_items, lr,
                                window_items * ctx.world_size / elapsed)
                window_loss, window_items, window_start = 0.0, 0, time.perf_counter()
            if time.perf_counter() - last_progress >= 1.0 or loop.step == total_steps:  # a DB write in real runs
                ctx.progress(loop.step, total_steps, "steps")
                last_progress = time.perf_counter()
            if _any_rank(ctx.should_stop(), device):
                profiler.close()
                _save(cfg, ctx, model, opt, scaler, loop, metrics, monitored=False)
                ctx.event("cancelled", f"stopped at step {loop.step}; checkpoint saved")
                return
        loop.epoch += 1
        loop.epoch_batches = 0
        paused = time.perf_counter()  # evaluation and saving must not count against train/samples_per_s
        stop = False
        evaluate_now = cfg.eval_step >= 1 and (loop.epoch % cfg.eval_step == 0 or loop.epoch == cfg.epochs)
        if evaluate_now and ctx.is_main:
            metrics = evaluator(model, ctx.run_dir / "valid_scores.json")
            ctx.log(metrics, loop.step)
            _log_eval(ctx, loop, metrics)
            stop = _plateau(cfg, ctx, loop, metrics)
        stop = _any_rank(stop, device)
        if evaluate_now or cfg.eval_step < 1:  # a checkpoint per evaluation (~236 MB), or per epoch without any
            _save(cfg, ctx, model, opt, scaler, loop, metrics, monitored=True)
        window_start += time.perf_counter() - paused
        if stop:
            ctx.event("early_stop", f"no improvement of {MONITOR[0]} in {cfg.stopping_step} evaluations")
            break
    profiler.close()
    if ctx.is_main:
        _export(cfg, ctx, model, loop)


def _log_eval(ctx: RunContext, loop: Loop, metrics: Mapping[str, float]) -> None:
    shown = [k for k in metrics if k.startswith(("valid/si_sdr_", "valid/si_sdri_", "valid/sdr_"))]
    parts = " ".join(f"{k.removeprefix('valid/')} {metrics[k]:.2f}" for k in sorted(shown) if "_irm" not in k)
    ctx.logger.info("epoch %d step %d valid: %s", loop.epoch, loop.step, parts)


def _plateau(cfg: SpleeterConfig, ctx: RunContext, loop: Loop, metrics: Mapping[str, float]) -> bool:
    """Reduce-on-plateau and early stopping on the monitored metric (one improvement rule: EarlyStopping's);
    returns True to stop."""
    if loop.early.update(metrics[MONITOR[0]]):
        return False
    bad = loop.early.bad_evals
    if cfg.scheduler_factor < 1 and bad % cfg.scheduler_patience == 0:
        loop.plateau_scale *= cfg.scheduler_factor
        ctx.event("lr", f"{MONITOR[0]} flat for {bad} evaluations: lr x{cfg.scheduler_factor}")
    return loop.early.should_stop


def _export(cfg: SpleeterConfig, ctx: RunContext, model: Separator, loop: Loop) -> None:
    """Write the best (else final) weights with their config to model_dir as the run's downloadable model."""
    best_info = ctx.checkpoints.best_info()
    weights = ctx.checkpoints.load(best_info)["state"]["model"] if best_info is not None else model.state_dict()
    metrics = best_info.metrics if best_info is not None else {}
    target = ctx.run_dir / cfg.model_dir / f"spleeter-{cfg.stems}stems.pt"
    # Spleeter's own model file, for use outside the workbench: a flat dict, not a checkpoint envelope
    atomic_torch_save({"model": weights, "config": cfg.model_dump(mode="json"), "stems": list(cfg.stem_names),
                       "metrics": metrics}, target)
    ctx.checkpoints.register(target, kind="inference", step=best_info.step if best_info else loop.step,
                             metrics=metrics, epoch=best_info.epoch if best_info else loop.epoch)


# -- validation --------------------------------------------------------------------------------------------------


class Evaluator:
    """Separates each validation song's centre excerpt and scores it; baselines are computed once per run."""

    def __init__(self, cfg: SpleeterConfig, songs: list[Song] | list[SavedExcerpt], device: torch.device, prefix: str):
        self.cfg, self.songs, self.device, self.prefix = cfg, songs, device, prefix
        self._baselines: dict[str, dict[str, float]] = {}

    def __call__(self, model: Separator, scores_file: Path | None = None) -> dict[str, float]:
        cfg, stems = self.cfg, list(self.cfg.stem_names)
        was_training = model.training
        model.eval()
        per_song, losses = [], []
        for song in self.songs:
            sources = valid_excerpt(song, cfg)
            estimates, est_mag = separate(model, sources[0], cfg)
            scores = song_scores(stems, sources[1:], estimates)
            if song.name not in self._baselines:  # mixture-as-estimate and ideal ratio mask never change
                mixture = np.broadcast_to(sources[:1], sources[1:].shape)
                base = song_scores(stems, sources[1:], mixture, "_mixture")
                base.update(song_scores(stems, sources[1:], ideal_ratio_mask(sources, cfg), "_irm"))
                self._baselines[song.name] = base
            scores.update(self._baselines[song.name])
            per_song.append(scores)
            target_mag = torch.stack([_padded_magnitude(s, cfg) for s in torch.from_numpy(sources[1:])])
            losses.append(_loss(cfg, est_mag.cpu()[None], target_mag[None]).item())
        model.train(was_training)
        out = summarize(per_song, stems, self.prefix)
        out[f"{self.prefix}/loss"] = float(np.mean(losses))
        if scores_file is not None:
            rows = [{"song": s.name, **scores} for s, scores in zip(self.songs, per_song)]
            scores_file.write_text(json.dumps(rows, indent=1))
        return out


def _padded_magnitude(audio: torch.Tensor, cfg: SpleeterConfig) -> torch.Tensor:
    """|STFT| of the first F bins, framed exactly like `separate` frames the mixture: [C, F, frames]."""
    padded = torch.nn.functional.pad(audio, (cfg.frame_length, cfg.frame_length))
    return magnitude(padded, cfg.frame_length, cfg.frame_step, cfg.F)


def evaluate(cfg: SpleeterConfig | Mapping[str, Any], state: Mapping[str, Any], data_path: str | Path | None,
             ctx: RunContext) -> dict[str, float]:
    """Score a checkpoint: on the config's validation songs (`valid/...`), or on a manifest CSV or a folder of
    song folders (`test/...`)."""
    cfg = cfg if isinstance(cfg, SpleeterConfig) else SpleeterConfig.model_validate(cfg)
    torch.set_num_threads(cpu_threads())
    if data_path is None and cfg.mode == "fast_train":  # the excerpts process_data saved, as in training
        songs: list[Song] | list[SavedExcerpt] = load_processed(cfg, cache_root(cfg))[1]
        prefix = "valid"
    elif data_path is None:
        _, songs, _ = prepare_songs(cfg, cache_root(cfg), lambda done, total: ctx.phase(f"songs {done}/{total}"))
        prefix = "valid"
    else:
        path = Path(data_path)
        if path.is_dir():
            manifest = path / "manifest.csv"
            if not manifest.is_file():
                manifest = ctx.run_dir / "eval_manifest.csv"
                write_manifest(path, manifest, cfg.stem_names)
            base = path
        else:
            manifest, base = path, path.parent
        songs, warnings = check_songs(read_manifest(manifest, base, cfg.stem_names), manifest, cfg, for_training=False)
        for w in warnings:
            ctx.logger.warning(w)
        prefix = "test"
    model = load_separator(state, cfg, resolve_device(cfg.device))
    ctx.phase(f"evaluating {len(songs)} songs")
    metrics = Evaluator(cfg, songs, next(model.parameters()).device, prefix)(model)
    ctx.phase(None)
    return metrics
