"""Run comparison: nested configs flattened to dotted paths and diffed; per-run metric summary tables."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

MISSING = "—"  # a key one run's config does not have (e.g. runs of different tasks)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]}; lists stay whole values (a list is one setting)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return MISSING if value is MISSING else str(value)


def config_diff(configs: dict[str, dict[str, Any]], only_differing: bool = True) -> pd.DataFrame:
    """Rows = dotted config paths, columns = run ids; only the paths whose values differ unless asked otherwise."""
    flat = {run_id: flatten(cfg) for run_id, cfg in configs.items()}
    paths = sorted({p for f in flat.values() for p in f})
    rows = []
    for path in paths:
        values = [_cell(flat[r].get(path, MISSING)) for r in configs]
        if only_differing and len(set(values)) <= 1:
            continue
        rows.append([path, *values])
    return pd.DataFrame(rows, columns=["setting", *configs])


def summary_table(runs: list[Any], summaries: pd.DataFrame, modes: dict[str, str]) -> pd.DataFrame:
    """Per run: status, duration, throughput, and last/best of each metric key (best by the key's direction).

    `modes` maps metric key -> "max"/"min"; keys not in it count as smaller-is-better when they look like losses
    or errors, else larger-is-better.
    """
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.id, "name": run.name, "task": run.task, "status": run.status, "duration_s": run.duration_s}
        mine = summaries[summaries.run_id == run.id]
        for rec in mine.to_dict("records"):
            key = rec["key"]
            mode = modes.get(key) or guess_mode(key)
            row[f"{key} last"] = rec["last"]
            row[f"{key} best"] = rec["max"] if mode == "max" else rec["min"]
        if "train/samples_per_s best" in row:
            row["throughput (samples/s)"] = row.pop("train/samples_per_s best")
            row.pop("train/samples_per_s last", None)
        rows.append(row)
    return pd.DataFrame(rows)


def guess_mode(key: str) -> str:
    name = key.split("/", 1)[-1]
    smaller = ("loss", "error", "mae", "rmse", "logloss", "bucket_error", "lr", "rss", "memory", "deleted")
    return "min" if any(s in name for s in smaller) else "max"
