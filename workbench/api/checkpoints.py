"""Checkpoints: listing with the best marked, safe downloads, tensor and metric comparison, import, inference."""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from workbench.api.base import current_user, engine
from workbench.api.runs import get_run, run_dir
from workbench.config.io import config_to_dict, config_to_yaml
from workbench.runner.checkpoints import Envelope, best_of
from workbench.settings import get_settings
from workbench.store import checkpoints as ckpt_store
from workbench.store import runs as run_store
from workbench.store.models import CheckpointCreate, CheckpointRead, RunCreate, RunRead
from workbench.tasks import TASKS

if TYPE_CHECKING:
    import pandas as pd


def checkpoints(run_id: str) -> list[CheckpointRead]:
    """The run's checkpoints and outputs, with `is_best` set on the best by the run's monitored metric."""
    eng = engine()
    run = run_store.get_run(eng, run_id=run_id)
    rows = ckpt_store.list_checkpoints(eng, run_id=run.id)
    if run.monitor_key:
        from workbench.runner.store_backend import to_info

        infos = [to_info(c) for c in rows if c.kind == "checkpoint"]
        best = best_of(infos, (run.monitor_key, run.monitor_mode or "max"))
        for c in rows:
            c.is_best = best is not None and c.id == best.id
    return rows


class UnsafePath(PermissionError):
    """A download request that would leave WORKBENCH_HOME."""


def safe_run_file(run_id: str, relative: str) -> Path:
    """Resolve a file under a run folder, refusing anything outside WORKBENCH_HOME (`..`, absolute, symlinks)."""
    home = get_settings().home_dir
    base = (home / "runs" / run_id).resolve()
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise UnsafePath(f"refusing to serve {relative!r}: not a path inside the run folder")
    target = (base / rel).resolve()  # resolves symlinks: a link pointing outside is caught below
    if not target.is_relative_to(base) or not target.is_relative_to(home):
        raise UnsafePath(f"refusing to serve {relative!r}: it resolves outside {home}")
    if not target.exists():
        raise FileNotFoundError(f"{relative} is no longer in run {run_id} (deleted by retention?)")
    return target


def _checkpoint_state(checkpoint_id: int) -> tuple[CheckpointRead, Envelope]:
    from workbench.runner.checkpoints import load_checkpoint_file

    ckpt = ckpt_store.get_checkpoint(engine(), checkpoint_id=checkpoint_id)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint #{checkpoint_id}")
    path = safe_run_file(ckpt.run_id, ckpt.path)
    if path.is_dir():
        raise ValueError(f"checkpoint #{checkpoint_id} is a folder output ({ckpt.kind}); pick a .pt checkpoint")
    return ckpt, load_checkpoint_file(path)


def compare_checkpoint_tensors(checkpoint_a: int, checkpoint_b: int) -> pd.DataFrame:
    """Per-tensor L2 distance and relative change of the model weights between two checkpoints (any runs)."""
    import pandas as pd

    from workbench.runner.checkpoints import tensor_differences

    _, a = _checkpoint_state(checkpoint_a)
    _, b = _checkpoint_state(checkpoint_b)
    if "model" not in a["state"] or "model" not in b["state"]:
        raise ValueError("both checkpoints must hold a 'model' state dict")
    return pd.DataFrame(tensor_differences(a["state"]["model"], b["state"]["model"]))


def compare_checkpoint_metrics(checkpoint_ids: list[int]) -> pd.DataFrame:
    """Metrics at save time of several checkpoints, side by side (one row per checkpoint)."""
    import pandas as pd

    eng = engine()
    rows = []
    for cid in checkpoint_ids:
        c = ckpt_store.get_checkpoint(eng, checkpoint_id=cid)
        if c is not None:
            rows.append({"checkpoint": c.id, "run": c.run_id, "kind": c.kind, "step": c.step, "epoch": c.epoch, **c.metrics})
    return pd.DataFrame(rows)


def not_a_checkpoint_message(file_name: str, exc: Exception) -> str:
    """One plain sentence for a file torch.load(weights_only=True) refused. PyTorch's own message advises
    weights_only=False, which would run whatever code the file holds: never what an upload page should suggest."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"{file_name} is not a plain checkpoint: it holds a pickled Python object ({found.group(1)}), not only tensors "
                "and plain values; save the weights as a dict with model.state_dict() under 'model' instead.")  # fmt: skip
    if isinstance(exc, EOFError) or not text:
        why = "the file is empty or cut short"
    elif "zip archive" in text:
        why = "it is a damaged zip archive (cut short, or changed after saving)"
    else:
        why = "it is not a file written by torch.save"
    return f"{file_name} is not a PyTorch checkpoint: {why}."


def import_checkpoint(cfg: BaseModel, file_name: str, data: bytes, *, name: str | None = None) -> RunRead:
    """Register a checkpoint produced elsewhere as an `import` run, so it can be evaluated or forked.

    The file is read with torch.load(weights_only=True): a workbench checkpoint (an envelope) or a flat dict
    with a 'model' state dict. Its state is checked against the task's model (missing or unexpected tensors,
    wrong shapes); nothing is stored if the check fails. It is stored as an envelope with this config.
    """
    import torch

    from workbench.runner.checkpoints import as_envelope, atomic_torch_save, make_envelope, sha256_of

    spec = TASKS[cfg.task]  # type: ignore[attr-defined]
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(not_a_checkpoint_message(file_name, exc)) from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{file_name}: expected a dict with a 'model' state dict, got {type(loaded).__name__}")
    envelope = as_envelope(loaded, source=file_name)
    state = envelope["state"]
    if not isinstance(state.get("model"), dict):
        raise ValueError(f"{file_name}: expected a dict with a 'model' state dict, found keys {sorted(state)[:10]}")
    if spec.check_target is not None:
        from workbench.tasks.spec import load_target

        problems = load_target(spec.check_target)(cfg, state)
        if problems:
            raise ValueError(f"{file_name} does not fit the {spec.name} model of this config:\n- " + "\n- ".join(problems))
    # The file first, then the run, already `completed`, with its checkpoint row in one transaction: the
    # scheduler never sees an import queued, and a failed write leaves no row behind.
    from workbench.ids import new_run_id

    eng = engine()
    run_id = new_run_id()
    folder = run_dir(run_id)
    folder.mkdir()  # a new folder: on any failure below it is removed whole
    try:
        (folder / "checkpoints").mkdir()
        (folder / "config.yaml").write_text(config_to_yaml(cfg))
        target = folder / "checkpoints" / "imported.pt"
        step, epoch = envelope["step"], envelope["epoch"]
        atomic_torch_save(make_envelope(state, step=step, epoch=epoch, config=config_to_dict(cfg)), target)
        monitor_key, monitor_mode = spec.monitor(cfg)
        run_in = RunCreate(
            id=run_id, task=spec.name, name=name or f"import {file_name}", config=config_to_dict(cfg),
            monitor_key=monitor_key, monitor_mode=monitor_mode, owner=current_user(), notes=f"imported from {file_name}",
            kind="import",
        )  # fmt: skip
        checkpoint_in = CheckpointCreate(
            path="checkpoints/imported.pt", kind="checkpoint", step=step, epoch=epoch,
            size_bytes=target.stat().st_size, sha256=sha256_of(target), created_at=time.time(),
        )  # fmt: skip
        return run_store.create_imported_run(eng, run_in=run_in, checkpoint_in=checkpoint_in)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def infer(run_id: str, checkpoint_id: int, input_path: str | Path) -> dict[str, Path]:
    """Run the task's inference on one input with a checkpoint; outputs land in the run's `inference/` folder."""
    from workbench.tasks.spec import load_target

    run = get_run(run_id)
    spec = TASKS[run.task]
    if spec.infer_target is None:
        raise ValueError(f"the {run.task} task has no inference preview")
    if not Path(input_path).is_file():
        raise FileNotFoundError(f"input not found: {input_path}")
    _, checkpoint = _checkpoint_state(checkpoint_id)
    out_dir = run_dir(run.id) / "inference" / f"ckpt{checkpoint_id}-{Path(input_path).stem}"
    return load_target(spec.infer_target)(checkpoint["state"], run.config, input_path, out_dir)
