"""The per-batch work of a pass: pull from the sparse table, run slot_dnn, push gradients back.

A train step, for a batch of B impressions with U distinct features:
    rows  = pass_rows[batch.uniq]                 table rows of the features (-1: not in the table yet)
    emb   = table.pull(rows)                      [U, P] leaf tensor (zeros for new features)
    prob  = model(emb, tokens, bags)              [B]
    loss  = log_loss(prob, click).mean(); backward; dense optimizer step
    table.push(keys, rows, slot, show, click, emb.grad * B)   the loss is a mean, PaddleRec pushes sums
    pass_rows[batch.uniq] = rows after the push   new features are created by the push
Infer is the same forward pass without any update.
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
from workbench.tasks.ctr_stream.table import SparseTable
from workbench.tasks.profiling import NO_PROFILER, NoProfiler, StepProfiler

StepHook = Callable[[int, float], None]  # (global step, loss) after each training step


class CtrTrainer:
    """The sparse table, the dense network and its optimizer, and the infer/train loops over one pass."""

    def __init__(self, cfg: CtrStreamConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.table = SparseTable(cfg, seed=cfg.seed)
        self.model = build_model(cfg).to(device)
        self.optimizer = build_dense_optimizer(cfg, self.model)
        self.step = 0  # global optimizer step
        self.pull_offset = 2 if cfg.accessor_class == "CtrCommonAccessor" else 0  # show/click columns get no push
        self.profiler: NoProfiler | StepProfiler = NO_PROFILER  # train.py sets the run's (workbench/tasks/profiling.py)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cfg.enable_amp:
            return contextlib.nullcontext()
        # bfloat16 needs no loss scaling (the sparse push reads the raw gradients); float16 only on GPUs without it
        bf16 = self.device.type != "cuda" or torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def forward_batch(self, batch: Batch, rows: np.ndarray, keep: bool, grad: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(pulled embeddings [U, P] - a leaf when grad -, click probabilities [B], kept intermediates)."""
        emb = torch.from_numpy(self.table.pull(rows[batch.uniq])).to(self.device)
        emb.requires_grad_(grad)
        inverse = torch.from_numpy(batch.inverse).to(self.device)
        offsets = torch.from_numpy(batch.bag_offsets).to(self.device)
        with self._autocast():
            prob, kept = self.model(emb, inverse, offsets, keep=keep)
        return emb, prob.float(), kept

    @torch.no_grad()
    def infer(self, data: PassData, rows: np.ndarray, metrics: CtrMetrics, should_stop: Callable[[], bool],
              dump: Dumper | None = None) -> bool:
        """Forward-only over the pass; False if stopped early."""
        self.model.eval()
        for batch in data.batches:
            if should_stop():
                return False
            _, prob, kept = self.forward_batch(batch, rows, keep=dump is not None, grad=False)
            p = prob.cpu().numpy()
            metrics.add(p, batch.labels)
            if dump is not None:
                dump.write(batch, p, kept, data.ins_ids)
        return True

    def train(self, data: PassData, rows: np.ndarray, metrics: CtrMetrics, start_batch: int,
              should_stop: Callable[[], bool], on_step: StepHook, dump: Dumper | None = None) -> int:
        """Train from batch `start_batch`; returns the index of the next batch (len(batches) when done)."""
        self.model.train()
        keys = data.keys
        clip = self.cfg.clip_grad_norm
        for i in range(start_batch, len(data.batches)):
            if should_stop():
                return i
            batch = data.batches[i]
            self.profiler.mark("forward")  # the table pull included: the pass's data is already in memory
            emb, prob, kept = self.forward_batch(batch, rows, keep=dump is not None, grad=True)
            label = torch.from_numpy(batch.labels).to(self.device)
            loss = log_loss(prob, label)
            self.profiler.mark("backward")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.profiler.mark("optimizer")  # the dense step and the sparse table's push
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip.max_norm, clip.norm_type)
            self.optimizer.step()
            grad = emb.grad[:, self.pull_offset :].cpu().numpy() * np.float32(batch.size)
            r = rows[batch.uniq]
            rows[batch.uniq] = self.table.push(keys[batch.uniq], r, batch.slot, batch.show, batch.click, grad)
            self.profiler.step()  # ends the open phase
            p = prob.detach().cpu().numpy()
            metrics.add(p, batch.labels)
            if dump is not None:
                dump.write(batch, p, {k: v.detach() for k, v in kept.items()}, data.ins_ids)
            self.step += 1
            on_step(self.step, float(loss.detach()))
        return len(data.batches)

    # -- resumable state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"table": arrays_to_tensors(self.table.state_dict()), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any], with_optimizer: bool = True) -> None:
        self.table.load_state_dict(tensors_to_arrays(state["table"]))
        self.model.load_state_dict(state["model"])
        if with_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])

    def dense_state(self, with_optimizer: bool) -> dict[str, Any]:
        dense: dict[str, Any] = {"model": self.model.state_dict()}
        if with_optimizer:
            dense["optimizer"] = self.optimizer.state_dict()
        return dense


class Dumper:
    """PaddleRec's debug dump: per impression `ins_id<TAB>name:count:v1:v2...` for each of `dump_fields`, and the
    `dump_param` tensors once per pass, under {dump_fields_path}/{day}/{pass}/."""

    def __init__(self, folder: Path, fields: list[str], params: list[str], model: torch.nn.Module):
        self.folder = folder
        self.fields = fields
        folder.mkdir(parents=True, exist_ok=True)
        self._out = open(folder / "part-00000", "w") if fields else None
        if params:
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
