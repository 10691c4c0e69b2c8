"""Training entry points of the recommendation task: `run(cfg, ctx)` and `evaluate(cfg, state, data_path, ctx)`.

`run` reads like a torchtune recipe: small named set-up steps, then one visible loop. The loop checks
`ctx.should_stop()` after every optimizer step (cancel = save a checkpoint and return), validates every
`eval_step` epochs (metrics, early stopping, reduce-on-plateau, checkpoint), and finally tests the best
checkpoint. A checkpoint holds everything needed to continue exactly where it stopped, mid-epoch included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from workbench.config.io import config_to_dict
from workbench.runner.checkpoints import Envelope
from workbench.runner.context import RunContext
from workbench.tasks.common import cpu_threads, resolve_device, seed_everything
from workbench.tasks.optim import (
    EarlyStopping,
    LRSchedule,
    autocast,
    backward_and_step,
    build_optimizer,
    make_grad_scaler,
    rng_state,
    set_rng_state,
    warn_if_slow_amp,
)
from workbench.tasks.profiling import step_profiler
from workbench.tasks.recommendation.config import RecommendationConfig
from workbench.tasks.recommendation.data import SessionBatch, SessionData, load_session_data
from workbench.tasks.recommendation.metrics import evaluate_split
from workbench.tasks.recommendation.model import Pop, Recommender, build_model
from workbench.tasks.recommendation.sampler import NegativeSampler


def run(cfg: RecommendationConfig, ctx: RunContext) -> None:
    """Train `cfg.model`, validating and checkpointing as configured; test the best checkpoint at the end."""
    recipe = _Recipe(cfg, ctx)
    finished = recipe.fit_popularity() if isinstance(recipe.model, Pop) else recipe.train()
    if finished:
        recipe.test_best()


def evaluate(
    cfg: RecommendationConfig, state: dict[str, Any], data_path: str | None, ctx: RunContext
) -> dict[str, float]:
    """Test metrics of a checkpoint's weights on `cfg`'s data, or on another file of the same source kind."""
    data_cfg = cfg.data
    if data_path is not None:
        source = "atomic" if data_cfg.source == "synthetic" else data_cfg.source
        data_cfg = data_cfg.model_copy(update={"path": data_path, "source": source})
    data_cfg = data_cfg.source_file()
    torch.set_num_threads(cpu_threads())
    device = _device(ctx)
    data = load_session_data(data_cfg, log=ctx.logger.info)
    model = build_model(cfg, data.n_items, data.n_users).to(device)
    load_weights(model, state, data, what="checkpoint")
    metrics = evaluate_split(
        model, data, "test", metrics=cfg.metrics, topk=cfg.topk, batch_size=cfg.eval_batch_size, device=device
    )
    return {f"test/{k}": v for k, v in metrics.items()}


class _Recipe:
    def __init__(self, cfg: RecommendationConfig, ctx: RunContext):
        self.cfg, self.ctx, self.log = cfg, ctx, ctx.logger
        self.monitor = cfg.valid_metric.lower()  # key inside the metric dicts, e.g. "mrr@10"
        self._setup_runtime()
        self.data = self._setup_data()
        self.model = self._setup_model()
        self.step = 0  # global optimizer steps, continued across resumes
        self.epoch = 0  # completed epochs
        self.batch_in_epoch = 0  # batches of the current epoch already trained (resume mid-epoch)
        self.epoch_loss_sum, self.epoch_batches = 0.0, 0
        if not isinstance(self.model, Pop):
            self._setup_optimization()
            if ctx.resume_checkpoint is not None:
                self._restore(ctx.resume_checkpoint)

    # -- set-up ---------------------------------------------------------------------------------------------
    def _setup_runtime(self) -> None:
        torch.set_num_threads(cpu_threads())
        seed_everything(self.cfg.seed, self.ctx.rank)
        self.device = _device(self.ctx)
        self.distributed = self.ctx.world_size > 1 and dist.is_available() and dist.is_initialized()

    def _setup_data(self) -> SessionData:
        self.ctx.phase("preparing data")
        data = load_session_data(self.cfg.data.source_file(), log=self.log.info)
        self.log.info("data %s: %s", self.cfg.data.source, ", ".join(f"{k}={v}" for k, v in data.stats.items()))
        return data

    def _setup_model(self) -> Recommender:
        model = build_model(self.cfg, self.data.n_items, self.data.n_users).to(self.device)
        if self.ctx.init_state is not None and not isinstance(model, Pop):
            load_weights(model, self.ctx.init_state, self.data, what="fork checkpoint")
            self.log.info("initialised weights from the fork's checkpoint")
        n_params = sum(p.numel() for p in model.parameters())
        self.log.info("model %s: %s trainable parameters on %s", self.cfg.model, f"{n_params:,}", self.device)
        return model

    def _setup_optimization(self) -> None:
        cfg = self.cfg
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg.learner, self.model, cfg.learning_rate, cfg.weight_decay, self.log)
        self.scaler = make_grad_scaler(self.device, cfg.enable_scaler, self.log)
        warn_if_slow_amp(self.device, cfg.enable_amp, self.log)
        per_rank = math.ceil(len(self.data.splits["train"]) / self.ctx.world_size)
        self.steps_per_epoch = math.ceil(per_rank / cfg.train_batch_size)
        if cfg.steps_per_epoch is not None:  # seed 004's cap; the LR schedule counts the capped epochs too
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.steps_per_epoch)
        self.schedule = LRSchedule(
            self.optimizer,
            learning_rate=cfg.learning_rate,
            steps_per_epoch=self.steps_per_epoch,
            epochs=cfg.epochs,
            epochs_warmup=cfg.epochs_warmup,
            epochs_ending=cfg.epochs_ending,
            patience=cfg.scheduler_patience,
            factor=cfg.scheduler_factor,
            threshold=cfg.min_delta,
        )
        self.early = EarlyStopping(patience=cfg.stopping_step, min_delta=cfg.min_delta)
        self.sampler = None
        if cfg.loss_type == "BPR" and cfg.train_neg_sample_args is not None:
            counts = self.data.train_item_counts()
            seed = cfg.seed + self.ctx.rank
            self.sampler = NegativeSampler(cfg.train_neg_sample_args, self.data.n_items, counts, seed=seed)
        self.train_module: nn.Module = _LossModule(self.model)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = nn.parallel.DistributedDataParallel(self.train_module, device_ids=ids)

    def _restore(self, checkpoint: Envelope) -> None:
        """Continue a run exactly: weights, optimizer moments, schedule, early stopping, RNG, position in the epoch."""
        state = checkpoint["state"]
        load_weights(self.model, state, self.data, what="resume checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.early.load_state_dict(state["early_stopping"])
        if self.sampler is not None and state["sampler"]:
            self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.epoch = checkpoint["step"], int(checkpoint["epoch"] or 0)
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.epoch_loss_sum, self.epoch_batches = float(state["epoch_loss_sum"]), int(state["epoch_batches"])
        self.log.info("resumed at step %d (epoch %d, batch %d)", self.step, self.epoch + 1, self.batch_in_epoch)

    # -- the loop -------------------------------------------------------------------------------------------
    def train(self) -> bool:
        """The training loop. Returns False if it stopped because a cancel was requested."""
        cfg, ctx = self.cfg, self.ctx
        total_steps = self.steps_per_epoch * cfg.epochs
        ctx.phase("training")
        ctx.progress(self.step, total_steps, "steps")
        profiler = step_profiler(cfg, ctx, self.device)
        while self.epoch < cfg.epochs and not self.early.should_stop:
            batches = self._epoch_order(self.epoch).split(cfg.train_batch_size)
            epoch_wall, epoch_cpu = time.perf_counter(), time.process_time()
            window_loss, window_batches, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
            for b in range(self.batch_in_epoch, min(len(batches), self.steps_per_epoch)):
                with profiler.phase("data"):
                    batch = self.data.batch("train", batches[b]).to(self.device)
                    if self.sampler is not None:
                        batch.neg_items = self.sampler.sample(batch.target, self._scorer(batch)).to(self.device)
                with profiler.phase("forward"), autocast(self.device, cfg.enable_amp):
                    loss = self.train_module(batch)
                lr = self.schedule.lr
                backward_and_step(
                    loss, self.optimizer, self.params, scaler=self.scaler,
                    max_norm=cfg.clip_grad_norm.max_norm if cfg.clip_grad_norm else None,
                    norm_type=cfg.clip_grad_norm.norm_type if cfg.clip_grad_norm else 2.0, phase=profiler.phase,
                )  # fmt: skip
                profiler.step()
                self.schedule.step()
                self.step += 1
                self.batch_in_epoch = b + 1
                loss_value = loss.item()  # one sync per step; on CUDA it waits for the step to finish
                window_loss += loss_value
                window_batches += 1
                window_samples += len(batch)
                self.epoch_loss_sum += loss_value
                self.epoch_batches += 1
                if self.step % cfg.print_freq == 0:
                    self._log_window(window_loss, window_batches, window_samples, window_start, lr)
                    window_loss, window_batches, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
                    ctx.progress(self.step, total_steps, "steps")
                if self._stop_requested():
                    profiler.close()
                    self._save(metrics={})
                    self.log.info("cancel requested: saved a checkpoint at step %d and stopped", self.step)
                    ctx.phase("cancelled")
                    return False
            if window_batches:
                self._log_window(window_loss, window_batches, window_samples, window_start, self.schedule.lr)
            self._end_epoch(time.perf_counter() - epoch_wall, time.process_time() - epoch_cpu)
            ctx.progress(self.step, total_steps, "steps")
        profiler.close()
        if self.early.should_stop:
            self.log.info("early stopping: %s did not improve by %s for %d evaluations", self.cfg.valid_metric,
                          cfg.min_delta, cfg.stopping_step)  # fmt: skip
        return True

    def _end_epoch(self, wall_s: float, cpu_s: float) -> None:
        """Log the epoch, validate when due (or in the last epoch), and checkpoint."""
        cfg = self.cfg
        mean_loss = self.epoch_loss_sum / max(self.epoch_batches, 1)  # mean over batches, not RecBole's sum
        _check_finite(mean_loss, self.step)
        self.epoch += 1
        self.batch_in_epoch, self.epoch_loss_sum, self.epoch_batches = 0, 0.0, 0
        epoch_metrics = {"train/epoch_loss": mean_loss, "train/epoch": self.epoch}
        self.ctx.log({**epoch_metrics, "train/epoch_time_s": wall_s, "train/epoch_cpu_s": cpu_s}, self.step)
        self.log.info(
            "epoch %d training [time: %.2fs, cpu: %.2fs, train loss: %.*f]",
            self.epoch, wall_s, cpu_s, cfg.loss_decimal_place, mean_loss,
        )  # fmt: skip
        due = cfg.eval_step >= 1 and (self.epoch % cfg.eval_step == 0 or self.epoch == cfg.epochs)
        metrics = self._validate() if due else {}
        self._save(metrics={**metrics, "train/epoch_loss": mean_loss})

    def _validate(self) -> dict[str, float]:
        self.ctx.phase("evaluating")
        scores = self._evaluate("valid")
        metrics = {f"valid/{k}": v for k, v in scores.items()}
        self.ctx.log(metrics, self.step)
        value = scores[self.monitor]
        improved = self.early.update(value)
        if self.schedule.on_eval(value):
            self.log.info("%s plateaued: learning rate scale now %.4g", self.cfg.valid_metric, self.schedule.scale)
        self.log.info(
            "epoch %d valid %s%s", self.epoch, "  ".join(f"{k}: {v:.4f}" for k, v in scores.items()),
            "  (best)" if improved else "",
        )  # fmt: skip
        self.ctx.phase("training")
        return metrics

    def _evaluate(self, split: str) -> dict[str, float]:
        return evaluate_split(
            self.model, self.data, split, metrics=self.cfg.metrics, topk=self.cfg.topk,
            batch_size=self.cfg.eval_batch_size, device=self.device, amp=self.cfg.enable_amp,
            rank=self.ctx.rank, world_size=self.ctx.world_size if self.distributed else 1,
        )  # fmt: skip

    # -- baseline and test ----------------------------------------------------------------------------------
    def fit_popularity(self) -> bool:
        """Pop has nothing to optimise: count training interactions once, validate, checkpoint."""
        self.model.fit(self.data.train_item_counts().to(self.device))
        metrics = {f"valid/{k}": v for k, v in self._evaluate("valid").items()}
        self.ctx.log(metrics, 0)
        state = {"model": self.model.state_dict(), "item_vocab": self.data.item_vocab, "metrics": metrics}
        self.ctx.checkpoints.save(state, step=0, epoch=0, config=config_to_dict(self.cfg), metrics=metrics)
        self.ctx.progress(1, 1, "steps")
        return True

    def test_best(self) -> None:
        """Load the best checkpoint by the monitored metric and report test metrics (RecBole: load_best_model)."""
        self.ctx.phase("testing")
        best = self.ctx.checkpoints.best() if self.ctx.is_main else None  # the latest if none was validated
        if best is not None:
            load_weights(self.model, best["state"], self.data, what="best checkpoint")
        if self.distributed:  # only rank 0 can list checkpoints: share its weights
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, src=0)
        best_step = best["step"] if best is not None else self.step
        metrics = {f"test/{k}": v for k, v in self._evaluate("test").items()}
        self.ctx.log(metrics, self.step)
        shown = "  ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        self.log.info("test (best checkpoint, step %d): %s", best_step, shown)
        self.ctx.phase(None)

    # -- helpers --------------------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's sample order for `epoch`: a function of (seed, epoch) only, so a resume replays it."""
        n = len(self.data.splits["train"])
        if self.distributed:
            world, rank = self.ctx.world_size, self.ctx.rank
            sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, seed=self.cfg.seed)
            sampler.set_epoch(epoch)
            return torch.tensor(list(sampler), dtype=torch.int64)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch))

    def _scorer(self, batch: SessionBatch) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Scores candidates for dynamic negative sampling with the current model (no gradient)."""
        if not (self.cfg.train_neg_sample_args and self.cfg.train_neg_sample_args.dynamic):
            return None
        return lambda candidates: self.model.predict(batch, candidates.to(self.device))

    def _log_window(self, loss_sum: float, batches: int, samples: int, start: float, lr: float) -> None:
        loss = loss_sum / batches
        _check_finite(loss, self.step)
        speed = samples * self.ctx.world_size / max(time.perf_counter() - start, 1e-9)
        self.ctx.log({"train/loss": loss, "train/lr": lr, "train/samples_per_s": speed}, self.step)

    def _stop_requested(self) -> bool:
        """True on every rank as soon as any rank was asked to stop (ranks must leave the loop together)."""
        stop = self.ctx.should_stop()
        if self.distributed:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _save(self, metrics: dict[str, float]) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "early_stopping": self.early.state_dict(),
            "sampler": self.sampler.state_dict() if self.sampler is not None else {},
            "rng": rng_state(),
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_batches": self.epoch_batches,
            "data_fingerprint": self.data.fingerprint,
            "item_vocab": self.data.item_vocab,
            "metrics": metrics,
        }
        self.ctx.checkpoints.save(state, step=self.step, epoch=self.epoch, config=config_to_dict(self.cfg),
                                  metrics=metrics)


class _LossModule(nn.Module):
    """Makes `calculate_loss` the module's forward, so DistributedDataParallel sees (and syncs) the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: SessionBatch) -> torch.Tensor:
        return self.model.calculate_loss(batch)


def load_weights(model: nn.Module, state: dict[str, Any], data: SessionData, *, what: str) -> None:
    """Load a checkpoint's weights, refusing (with a reason) data whose item ids mean other items.

    Checkpoints written by this task carry `item_vocab`; imported ones may not, and only their shapes are checked.
    """
    if "item_vocab" in state and state["item_vocab"] != data.item_vocab:
        raise ValueError(
            f"the {what} was trained on data with other items (or another item order): its item ids would "
            "score the wrong items here. Use the data settings it was trained with (see its config)"
        )
    own = model.state_dict()
    for key, tensor in state["model"].items():
        if key in own and own[key].shape != tensor.shape:
            raise ValueError(
                f"the {what} does not fit this model: {key} has shape {tuple(tensor.shape)} there and "
                f"{tuple(own[key].shape)} here. Use the same model settings (e.g. embedding_size), or start fresh"
            )
    model.load_state_dict(state["model"])


def _device(ctx: RunContext) -> torch.device:
    """The platform decides placement through ctx.device (auto / cpu / cuda / cuda:N)."""
    if ctx.device in ("auto", "cpu", "cuda"):
        return resolve_device(ctx.device, ctx.local_rank)
    return torch.device(ctx.device)


def _check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"training loss is {loss} at step {step}; lower learning_rate or set clip_grad_norm (e.g. {{max_norm: 5}})"
        )
