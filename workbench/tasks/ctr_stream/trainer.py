"""The per-batch work of a pass: pull from the sparse table, run slot_dnn, push gradients back.

A train step, for a batch of B impressions with U distinct features:
    emb   = ps.pull(batch.uniq)                   [U, P] leaf tensor (zeros for new features)
    prob  = model(emb, tokens, bags)              [B]
    loss  = log_loss(prob, click).mean(); backward
    dense optimizer step with each rank's gradient in turn (rank order), on every rank
    ps.push(slot, show, click, emb.grad * B)      the loss is a mean, PaddleRec pushes sums
With one rank, `ps` reads and updates the local table through the pass's row cache (new features are created by
the push); with several, it routes the features to the ranks that own them (ps.py). Every rank takes the same
number of steps per phase (the most batches any rank has; a rank out of batches takes empty steps), so the
collectives stay in lockstep and the dense network stays identical on every rank.

The dense network follows PaddleRec's dense table: each trainer's push is one update, so W ranks make W updates a
step (one per rank's batch, as W sequential batches would) rather than one update of a W-times larger batch (what
an averaging allreduce or DDP gives, with W times fewer steps; on the day-2 stream of bench_ctr_distributed.py that
lost ~0.1 AUC). The gradients travel by one all_gather, and every rank applies the same updates in rank order.
`step` counts these updates. Infer is the same forward pass without any update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.data import Batch, PassData
from workbench.tasks.ctr_stream.metrics import CtrMetrics
from workbench.tasks.ctr_stream.model import build_dense_optimizer, build_model, log_loss
from workbench.tasks.ctr_stream.ps import Dist, ShardedTable, split_table_state
from workbench.tasks.ctr_stream.table import SparseTable
from workbench.tasks.optim import eager_step
from workbench.tasks.profiling import NO_PROFILER, NoProfiler, StepProfiler

StepHook = Callable[[int, float], None]  # (global step, loss) after each training step
NO_FEATURES = np.zeros(0, dtype=np.int64)


class CtrTrainer:
    """The sparse table (this rank's shard), the dense network and its optimizer, and the infer/train loops."""

    def __init__(self, cfg: CtrStreamConfig, device: torch.device, dist: Dist | None = None):
        self.cfg = cfg
        self.device = device
        self.dist = dist or Dist()
        self.table = SparseTable(cfg, seed=cfg.seed + self.dist.rank)
        self.ps = ShardedTable(self.table, cfg.shard_num, self.dist)
        self.model = build_model(cfg).to(device)
        self.optimizer = build_dense_optimizer(cfg, self.model)
        self.step = 0  # global optimizer step
        self.pull_offset = 2 if cfg.accessor_class == "CtrCommonAccessor" else 0  # show/click columns get no push
        self.profiler: NoProfiler | StepProfiler = NO_PROFILER  # train.py sets the run's (workbench/tasks/profiling.py)
        self.dense_bytes = 0  # dense all_gather payload this rank sent, cumulative

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cfg.enable_amp:
            return contextlib.nullcontext()
        # bfloat16 needs no loss scaling (the sparse push reads the raw gradients); float16 only on GPUs without it
        bf16 = self.device.type != "cuda" or torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def forward_pulled(self, batch: Batch, pulled: np.ndarray, keep: bool, grad: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(pulled embeddings [U, P] - a leaf when grad -, click probabilities [B], kept intermediates)."""
        emb = torch.from_numpy(pulled).to(self.device)
        emb.requires_grad_(grad)
        inverse = torch.from_numpy(batch.inverse).to(self.device)
        offsets = torch.from_numpy(batch.bag_offsets).to(self.device)
        with self._autocast():
            prob, kept = self.model(emb, inverse, offsets, keep=keep)
        return emb, prob.float(), kept

    def forward_batch(self, batch: Batch, rows: np.ndarray, keep: bool, grad: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """forward_pulled on the local table's rows of the pass keys (one process: prediction, evaluation)."""
        return self.forward_pulled(batch, self.table.pull(rows[batch.uniq]), keep, grad)

    def begin_pass(self, data: PassData) -> int:
        """Tell the table the pass's keys; returns the steps of each phase (the same on every rank)."""
        return self.ps.begin_pass(data.keys, len(data.batches))

    @torch.no_grad()
    def infer(self, data: PassData, steps: int, metrics: CtrMetrics, should_stop: Callable[[], bool],
              dump: Dumper | None = None) -> bool:
        """Forward-only over the pass; False if stopped early (on every rank at the same step)."""
        self.model.eval()
        seen = _Seen()
        whole = self.ps.pull_pass()
        try:
            for i in range(steps):
                batch = data.batches[i] if i < len(data.batches) else None
                if whole is not None and batch is not None:  # one process: the batch's rows of the pass's pull
                    pulled = None if should_stop() else np.take(whole, batch.uniq, axis=0)
                else:
                    pulled = self.ps.pull(batch.uniq if batch is not None else NO_FEATURES, should_stop())
                if pulled is None:
                    return False
                if batch is None:
                    continue
                _, prob, kept = self.forward_pulled(batch, pulled, keep=dump is not None, grad=False)
                p = prob.cpu().numpy()
                seen.append(p, batch.labels)
                if dump is not None:
                    dump.write(batch, p, kept, data.ins_ids)
            return True
        finally:
            seen.add_to(metrics)

    def train(self, data: PassData, steps: int, metrics: CtrMetrics, start_batch: int,
              should_stop: Callable[[], bool], on_step: StepHook, dump: Dumper | None = None) -> int:
        """Train from step `start_batch`; returns the next step (`steps` when done)."""
        self.model.train()
        seen = _Seen()
        try:
            return self._train_steps(data, steps, start_batch, should_stop, on_step, dump, seen)
        finally:
            seen.add_to(metrics)  # a stop inside the pass keeps the steps trained so far in its partial state

    def _train_steps(self, data: PassData, steps: int, start_batch: int, should_stop: Callable[[], bool],
                     on_step: StepHook, dump: Dumper | None, seen: _Seen) -> int:
        for i in range(start_batch, steps):
            batch = data.batches[i] if i < len(data.batches) else None
            pulled = self.ps.pull(batch.uniq if batch is not None else NO_FEATURES, should_stop())
            if pulled is None:
                return i
            self.optimizer.zero_grad(set_to_none=True)
            if batch is not None:
                self.profiler.mark("forward")  # the pass's data is already in memory; the pull came just before
                emb, prob, kept = self.forward_pulled(batch, pulled, keep=dump is not None, grad=True)
                loss = log_loss(prob, torch.from_numpy(batch.labels).to(self.device))
                self.profiler.mark("backward")
                loss.backward()
            self.profiler.mark("optimizer")  # the dense step and the sparse table's push
            self.step += self._dense_updates(batch.size if batch is not None else 0)
            if batch is None:
                self.ps.push(NO_FEATURES, NO_FEATURES, NO_FEATURES, np.zeros((0, pulled.shape[1] - self.pull_offset),
                                                                             np.float32))
                continue
            grad = emb.grad[:, self.pull_offset :].cpu().numpy() * np.float32(batch.size)
            self.ps.push(batch.slot, batch.show, batch.click, grad)
            self.profiler.step()  # ends the open phase
            p = prob.detach().cpu().numpy()
            seen.append(p, batch.labels)
            if dump is not None:
                dump.write(batch, p, {k: v.detach() for k, v in kept.items()}, data.ins_ids)
            on_step(self.step, float(loss.detach()))
        return steps

    def _dense_step(self) -> None:
        clip = self.cfg.clip_grad_norm
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip.max_norm, clip.norm_type)
        eager_step(self.optimizer)

    def _dense_updates(self, batch_size: int) -> int:
        """Apply the dense gradients of this step: this rank's alone, or (several ranks) each rank's in rank order.
        Returns the number of optimizer steps taken (ranks without a batch push nothing)."""
        if not self.dist.distributed:
            if batch_size == 0:
                return 0
            self._dense_step()
            return 1
        import torch.distributed as dist

        params = [p for p in self.model.parameters() if p.requires_grad]
        mine = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                         + [torch.tensor([float(batch_size)], device=self.device)])
        gathered = [torch.empty_like(mine) for _ in range(self.dist.world)]
        dist.all_gather(gathered, mine, group=self.dist.dense)
        self.dense_bytes += mine.numel() * mine.element_size() * (self.dist.world - 1)
        updates = 0
        for flat in gathered:
            if float(flat[-1]) == 0:
                continue
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = flat[offset : offset + n].view_as(p).clone()
                offset += n
            self._dense_step()
            updates += 1
        return updates

    def broadcast_dense(self) -> None:
        """Start every rank from rank 0's network (they are equal after a seeded build or a load; this makes sure)."""
        if not self.dist.distributed:
            return
        import torch.distributed as dist

        for tensor in self.model.state_dict().values():
            dist.broadcast(tensor, src=0, group=self.dist.dense)

    # -- resumable state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This rank's state: its shard of the table (outputs.StreamOutputs gathers the shards into one)."""
        return {"table": arrays_to_tensors(self.table.state_dict()), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any], with_optimizer: bool = True) -> None:
        """Load a state saved with any number of ranks: this rank keeps the keys it owns."""
        table = tensors_to_arrays(state["table"])
        if self.dist.distributed or "shard_rngs" in table:
            table = split_table_state(table, self.ps.owned(table["keys"]), self.dist.rank, self.dist.world)
        self.table.load_state_dict(table)
        self.model.load_state_dict(state["model"])
        if with_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])

    def dense_state(self, with_optimizer: bool) -> dict[str, Any]:
        dense: dict[str, Any] = {"model": self.model.state_dict()}
        if with_optimizer:
            dense["optimizer"] = self.optimizer.state_dict()
        return dense


class _Seen:
    """A phase's predictions and labels, added to its CtrMetrics once at the end of the phase: one pass of numpy
    over the pass instead of ~15 small calls per batch (0.1 ms a batch at batch 64, ~5% of a step). The bucket
    counts are the same; the float64 sums differ from per-batch ones only in the order of the additions."""

    def __init__(self) -> None:
        self.probs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def append(self, prob: np.ndarray, labels: np.ndarray) -> None:
        self.probs.append(prob)
        self.labels.append(labels)

    def add_to(self, metrics: CtrMetrics) -> None:
        if self.probs:
            metrics.add(np.concatenate(self.probs), np.concatenate(self.labels))
            self.probs, self.labels = [], []


class Dumper:
    """PaddleRec's debug dump: per impression `ins_id<TAB>name:count:v1:v2...` for each of `dump_fields`, and the
    `dump_param` tensors once per pass, under {dump_fields_path}/{day}/{pass}/: `part-NNNNN` per rank (its own
    impressions), the parameters (the same on every rank) by rank 0."""

    def __init__(self, folder: Path, fields: list[str], params: list[str], model: torch.nn.Module, rank: int = 0):
        self.folder = folder
        self.fields = fields
        folder.mkdir(parents=True, exist_ok=True)
        self._out = open(folder / f"part-{rank:05d}", "w") if fields else None
        if params and rank == 0:
            named = dict(model.named_parameters())
            unknown = [p for p in params if p not in named]
            if unknown:
                raise ValueError(f"dump_param: unknown parameter(s) {unknown}; available: {', '.join(named)}")
            with open(folder / "params.txt", "w") as f:
                for name in params:
                    values = named[name].detach().cpu().reshape(-1).tolist()
                    f.write(f"{name}:{len(values)}:" + ":".join(f"{v:g}" for v in values) + "\n")

    def write(self, batch: Batch, prob: np.ndarray, kept: dict[str, torch.Tensor], ins_ids: list[str] | None) -> None:
        if self._out is None:
            return
        columns: list[np.ndarray] = []
        for name in self.fields:
            if name == "click":
                columns.append(batch.labels[:, None])
            elif name == "predict":
                columns.append(prob[:, None])
            else:
                columns.append(kept[name].float().cpu().numpy())
        ids = ins_ids[batch.first : batch.first + batch.size] if ins_ids is not None else [
            str(batch.first + i) for i in range(batch.size)]
        lines = []
        for i, ins_id in enumerate(ids):
            parts = [ins_id] + [f"{name}:{col.shape[1]}:" + ":".join(f"{v:g}" for v in col[i].tolist())
                                for name, col in zip(self.fields, columns)]
            lines.append("\t".join(parts))
        self._out.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def arrays_to_tensors(d: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays -> tensors for torch.save(weights_only); unsigned dtypes travel as a same-width signed view."""
    out: dict[str, Any] = {}
    for name, value in d.items():
        if isinstance(value, np.ndarray):
            kind = value.dtype
            signed = value.view(np.dtype(f"int{kind.itemsize * 8}")) if kind.kind == "u" else value
            out[name] = {"tensor": torch.from_numpy(np.ascontiguousarray(signed)), "dtype": kind.str}
        else:
            out[name] = value
    return out


def tensors_to_arrays(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in d.items():
        if isinstance(value, dict) and "tensor" in value and "dtype" in value:
            out[name] = value["tensor"].numpy().view(np.dtype(value["dtype"]))
        else:
            out[name] = value
    return out
