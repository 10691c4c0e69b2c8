"""Checkpoint files: atomic writes, a DB row per file, and retention that never deletes the best.

Order matters for crash safety:
- save: temp file in the same folder -> fsync -> rename -> fsync the folder -> only then the row. A crash, kill or
  full disk leaves at most a stray `*.tmp` file, never a listed half-written checkpoint.
- delete: the file first, the row after (the reverse leaks files, Determined PR #7967); a file already gone is fine.

Every file save() writes is an envelope, `{format, step, epoch, config, state}` (DESIGN.md): the platform reads the
outer keys only, and `state` is whatever the task handed over. Files without an envelope (written before it, by
another program, or a task's own export) are wrapped on load by `as_envelope`, the one place that knows where
their step was kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from workbench.runner.context import RunBackend

CheckpointKind = Literal["checkpoint", "best", "base", "delta", "batch", "inference"]
CHECKPOINT_FORMAT = "workbench.checkpoint/1"


class Envelope(TypedDict):
    """A checkpoint file's content: what the platform reads (format, step, epoch, config) around the task's state."""

    format: str  # CHECKPOINT_FORMAT
    step: int  # the global step the state was saved at (the run's metric step)
    epoch: int | None  # completed epochs, None for tasks without epochs (CTR streams)
    config: dict[str, Any] | None  # the run's config (canonical field names); None if a wrapped file had none
    state: dict[str, Any]  # the task's own state dict: tensors and plain Python values only


def make_envelope(
    state: Mapping[str, Any], *, step: int, epoch: int | None, config: Mapping[str, Any] | None
) -> Envelope:
    return Envelope(format=CHECKPOINT_FORMAT, step=int(step), epoch=None if epoch is None else int(epoch),
                    config=None if config is None else dict(config), state=dict(state))


def as_envelope(content: Any, source: str = "the checkpoint") -> Envelope:
    """The envelope of a loaded checkpoint file; a flat dict without one is wrapped as its `state`.

    Flat dicts are what the workbench wrote before the envelope (step and epoch at the top, or in `loop` for
    Spleeter), Spleeter's exported model and checkpoints from elsewhere (step 0 when they carry none).
    """
    if not isinstance(content, dict):
        raise ValueError(f"{source} holds a {type(content).__name__}, not a dict of tensors and values")
    fmt = content.get("format")
    if isinstance(fmt, str) and fmt.startswith("workbench.checkpoint/"):
        if fmt != CHECKPOINT_FORMAT:
            raise ValueError(f"{source} has format {fmt!r}; this workbench reads {CHECKPOINT_FORMAT!r}. Use the "
                             "workbench version that wrote it")
        missing = [k for k in Envelope.__annotations__ if k not in content]
        if missing or not isinstance(content["state"], dict):
            raise ValueError(f"{source} is a damaged {fmt} envelope (missing or invalid: {missing or ['state']})")
        return Envelope(format=fmt, step=int(content["step"]), epoch=content["epoch"], config=content["config"],
                        state=content["state"])
    counters = content.get("loop") if isinstance(content.get("loop"), dict) else content  # Spleeter kept them in loop
    step, epoch = counters.get("step"), counters.get("epoch")
    config = content.get("config")
    return make_envelope(content, step=step if isinstance(step, int) else 0,
                         epoch=epoch if isinstance(epoch, int) else None,
                         config=config if isinstance(config, dict) else None)


@dataclass
class CheckpointInfo:
    path: str  # relative to the run dir
    kind: str
    step: int
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    sha256: str | None = None
    created: float = field(default_factory=time.time)
    pass_id: int | None = None
    day: str | None = None
    id: int | None = None


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def best_of(infos: list[CheckpointInfo], monitor: tuple[str, str]) -> CheckpointInfo | None:
    """The checkpoint with the best monitored value at save time (ties: the earlier one)."""
    key, mode = monitor
    best: CheckpointInfo | None = None
    for info in sorted(infos, key=lambda c: (c.step, c.created)):
        value = info.metrics.get(key)
        if value is None:
            continue
        if best is None or is_better(value, best.metrics[key], mode):
            best = info
    return best


def is_state_file(relative_path: str) -> bool:
    """True for a state dict written by CheckpointManager.save (checkpoints/<kind>-stepNNN.pt)."""
    return relative_path.startswith("checkpoints/") and relative_path.endswith(".pt")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, target: Path) -> None:
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint_file(path: str | Path) -> Envelope:
    """Load a checkpoint the safe way (tensors and plain Python values only), as an envelope (see as_envelope)."""
    import torch

    return as_envelope(torch.load(Path(path), map_location="cpu", weights_only=True), source=str(path))


def path_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


class CheckpointManager:
    """`ctx.checkpoints`. Files live in `<run_dir>/checkpoints/`; rows go through the run's backend."""

    def __init__(
        self,
        *,
        run_dir: Path,
        backend: RunBackend,
        monitor: tuple[str, str],
        keep_last: int,
        enabled: bool = True,
        logger: logging.Logger | None = None,
    ):
        self.run_dir = run_dir
        self.dir = run_dir / "checkpoints"
        self._backend = backend
        self.monitor = monitor
        self.keep_last = keep_last
        self.enabled = enabled
        self._log = logger or logging.getLogger(__name__)

    def save(
        self,
        state: Mapping[str, Any],
        *,
        step: int,
        config: Mapping[str, Any],
        epoch: int | None = None,
        metrics: dict[str, float] | None = None,
        kind: CheckpointKind = "checkpoint",
    ) -> CheckpointInfo | None:
        """Write the task's `state` (tensors and plain values only) in an envelope with `step`, `epoch` and the
        run's `config` (a plain dict, e.g. config_to_dict(cfg)), atomically; record it; apply retention.

        Returns None on ranks > 0 (only rank 0 saves).
        """
        if not self.enabled:
            return None
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        target = self.dir / f"{kind}-step{step:09d}.pt"
        atomic_torch_save(make_envelope(state, step=step, epoch=epoch, config=config), target)
        info = CheckpointInfo(
            path=str(target.relative_to(self.run_dir)),
            kind=kind,
            step=step,
            epoch=epoch,
            metrics=metrics,
            size_bytes=target.stat().st_size,
            sha256=sha256_of(target),
        )
        # A re-save at the same step (e.g. cancel right after a periodic save) replaces the old row.
        self._forget_path(info.path)
        self._backend.add_checkpoint(info)
        self.apply_retention()
        return info

    def register(
        self,
        path: Path,
        *,
        kind: CheckpointKind,
        step: int,
        metrics: dict[str, float] | None = None,
        pass_id: int | None = None,
        day: str | None = None,
        epoch: int | None = None,
    ) -> CheckpointInfo | None:
        """Record a file or folder the task wrote itself (e.g. a CTR base/delta model) as a downloadable output.

        Write it completely (and atomically) before registering. Registered outputs are listed and downloadable
        but never deleted by `keep_ckpt` retention, and never picked by latest()/best(): those deal with the
        resumable state files written by save(). Registering the same path again replaces its row.
        """
        if not self.enabled:
            return None
        path = Path(path)
        info = CheckpointInfo(
            path=str(path.resolve().relative_to(self.run_dir.resolve())),
            kind=kind,
            step=step,
            epoch=epoch,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            size_bytes=path_size(path),
            sha256=sha256_of(path) if path.is_file() else None,
            pass_id=pass_id,
            day=day,
        )
        self._forget_path(info.path)
        self._backend.add_checkpoint(info)
        return info

    def _forget_path(self, path: str) -> None:
        for old in self._backend.list_checkpoints():
            if old.path == path:
                self._backend.delete_checkpoint(old.path)

    # -- queries --------------------------------------------------------------------------------------------
    def list(self, kind: str = "checkpoint") -> list[CheckpointInfo]:
        """The resumable state files save() wrote (registered folders and files of the task are not among them)."""
        return sorted(
            (c for c in self._backend.list_checkpoints() if c.kind == kind and is_state_file(c.path)),
            key=lambda c: (c.step, c.created),
        )

    def latest_info(self) -> CheckpointInfo | None:
        infos = [c for c in self.list() if (self.run_dir / c.path).exists()]
        return infos[-1] if infos else None

    def best_info(self) -> CheckpointInfo | None:
        return best_of([c for c in self.list() if (self.run_dir / c.path).exists()], self.monitor)

    def load(self, info: CheckpointInfo) -> Envelope:
        return load_checkpoint_file(self.run_dir / info.path)

    def latest(self) -> Envelope | None:
        info = self.latest_info()
        return self.load(info) if info else None

    def best(self) -> Envelope | None:
        """The checkpoint saved with the best monitored metric (falls back to the latest if none has the metric)."""
        info = self.best_info() or self.latest_info()
        return self.load(info) if info else None

    # -- retention ------------------------------------------------------------------------------------------
    def apply_retention(self) -> list[CheckpointInfo]:
        """Keep the last `keep_last` checkpoints and the best one; delete the rest (file first, then row)."""
        infos = self.list()
        keep = {id(c) for c in infos[-self.keep_last :]}
        best = best_of(infos, self.monitor)
        if best is not None:
            keep.add(id(best))
        deleted = []
        for info in infos:
            if id(info) in keep:
                continue
            remove_path(self.run_dir / info.path)
            self._backend.delete_checkpoint(info.path)
            deleted.append(info)
        return deleted


def remove_path(path: Path) -> None:
    """Delete a checkpoint file or folder; one that is already gone is not an error."""
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def tensor_differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-tensor L2 distance and relative change between two state dicts (e.g. two checkpoints' "model").

    Rows for tensors in only one side, or with different shapes, say so instead of a number.
    """
    import torch

    rows: list[dict[str, Any]] = []
    for name in sorted(set(a) | set(b)):
        ta, tb = a.get(name), b.get(name)
        row: dict[str, Any] = {"tensor": name, "shape": None, "numel": None, "l2_distance": None, "relative_change": None, "note": ""}
        if not isinstance(ta, torch.Tensor) or not isinstance(tb, torch.Tensor):
            row["note"] = "only in A" if tb is None else ("only in B" if ta is None else "not a tensor")
        elif ta.shape != tb.shape:
            row["note"] = f"shape {tuple(ta.shape)} vs {tuple(tb.shape)}"
        else:
            da, db = ta.detach().double().to_dense() if ta.is_sparse else ta.detach().double(), tb.detach().double()
            dist = torch.linalg.vector_norm(da - db).item()
            base = torch.linalg.vector_norm(da).item()
            row.update(shape=str(tuple(ta.shape)), numel=ta.numel(), l2_distance=dist, relative_change=dist / base if base > 0 else None)
        rows.append(row)
    return rows


def state_mismatches(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """What keeps `got` from loading into a model whose state_dict is `expected`: missing, unexpected, shapes."""
    import torch

    problems = [f"missing tensor {k!r} {tuple(v.shape)}" for k, v in expected.items() if k not in got]
    problems += [f"unexpected tensor {k!r}" for k in got if k not in expected]
    for k, v in expected.items():
        g = got.get(k)
        if isinstance(g, torch.Tensor) and isinstance(v, torch.Tensor) and g.shape != v.shape:
            problems.append(f"tensor {k!r} has shape {tuple(g.shape)}, the model expects {tuple(v.shape)}")
    return problems
