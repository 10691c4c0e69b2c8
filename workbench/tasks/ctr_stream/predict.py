"""Checkpoint hooks for the platform: does an uploaded state fit this config, and "try it" on a slot-format file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.data import PassReader
from workbench.tasks.ctr_stream.metrics import CtrMetrics
from workbench.tasks.ctr_stream.model import build_model
from workbench.tasks.ctr_stream.outputs import STATE_FORMAT
from workbench.tasks.ctr_stream.sgd import SgdRule
from workbench.tasks.ctr_stream.trainer import CtrTrainer


def check_state(cfg: CtrStreamConfig, state: dict[str, Any]) -> list[str]:
    """Why a checkpoint does not fit `cfg` (empty list: it fits): its format, table widths and network shapes."""
    from workbench.runner.checkpoints import state_mismatches

    if state.get("format") != STATE_FORMAT:
        return [f"not a ctr_stream state (format {state.get('format')!r}, expected {STATE_FORMAT!r})"]
    problems = []
    table = state.get("table", {})
    widths = {"embedx_w": cfg.embedx_dim, "embed_state": SgdRule(cfg.embed_sgd_param, 1).state_dim,
              "embedx_state": SgdRule(cfg.embedx_sgd_param, cfg.embedx_dim).state_dim}
    for name, width in widths.items():
        column = table.get(name, {}).get("tensor") if isinstance(table.get(name), dict) else None
        if not isinstance(column, torch.Tensor):
            problems.append(f"the table has no {name} column")
        elif column.shape[1] != width:
            problems.append(f"table column {name} has width {column.shape[1]}, this config needs {width} "
                            "(embedx_dim and the sgd rules must match the checkpoint's)")
    return problems + state_mismatches(build_model(cfg).state_dict(), state["model"])


def infer(state: dict[str, Any], cfg_dict: dict[str, Any], input_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Predict every line of a slot-format file: predictions.tsv (ins_id or file:line, click, predicted CTR) and
    metrics.json (AUC, COPC, ... on those lines, as the infer phase computes them)."""
    cfg = CtrStreamConfig.model_validate(cfg_dict)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = CtrTrainer(cfg, torch.device("cpu"))
    trainer.load_state_dict(state, with_optimizer=False)
    data = PassReader(cfg, with_ins_id=True).read_files([Path(input_path)], shuffle_seed=None, where=str(input_path))
    rows = trainer.table.lookup(data.keys)
    stats = CtrMetrics()
    predictions: list[np.ndarray] = []
    trainer.model.eval()
    with torch.no_grad():
        for batch in data.batches:
            _, prob, _ = trainer.forward_batch(batch, rows, keep=False, grad=False)
            predictions.append(prob.numpy())
            stats.add(predictions[-1], batch.labels)
    pred = np.concatenate(predictions) if predictions else np.zeros(0)
    labels = np.concatenate([b.labels for b in data.batches]) if data.batches else np.zeros(0)
    ids = data.ins_ids or []
    lines = ["ins_id\tclick\tpredicted_ctr"] + [f"{i}\t{int(y)}\t{p:.6f}" for i, y, p in zip(ids, labels, pred)]
    (out / "predictions.tsv").write_text("\n".join(lines) + "\n")
    metrics = {k.split("/", 1)[1]: v for k, v in stats.compute("test").items()}
    metrics["bad_lines"] = data.bad_lines
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"predictions.tsv": out / "predictions.tsv", "metrics.json": out / "metrics.json"}
