"""Downloads as files on disk: checkpoints, run bundles and metric exports.

The UI serves these through HTTP routes that stream from disk with Range support (workbench/ui/files.py); the CLI
writes exports straight to a path. Nothing here holds a whole file in memory: a 236 MB Spleeter checkpoint passed
to `st.download_button` grew the UI server from 228 MB to ~1 GB. Zips and exports made for one request are
written under WORKBENCH_HOME/tmp (the same disk as the runs; /tmp may be RAM) and deleted once sent.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workbench.api.base import engine
from workbench.api.checkpoints import checkpoints, safe_run_file
from workbench.api.configs import to_yaml
from workbench.api.metrics import metric_keys
from workbench.api.runs import PROFILE_TRACE, get_run, profile_summary, run_config
from workbench.runner.checkpoints import is_state_file
from workbench.settings import get_settings
from workbench.store import checkpoints as ckpt_store
from workbench.store import metrics as metric_store
from workbench.store import runs as run_store

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")
EXPORT_COLUMNS = ("run_id", "key", "step", "value", "wall")  # wall: seconds since the Unix epoch, as stored
STALE_TEMP_S = 24 * 3600  # temp files older than this were left by a server that died mid-download
_COMPRESSED_SUFFIXES = (".yaml", ".yml", ".csv", ".log", ".txt", ".json")  # the rest (tensors) barely deflates


@dataclass(frozen=True)
class Download:
    name: str  # the file name the browser saves it under
    path: Path
    media_type: str
    temporary: bool  # made for this request (a zip or an export): delete it once sent


def temp_dir() -> Path:
    """WORKBENCH_HOME/tmp, swept of files older than a day (left by a server killed mid-download)."""
    folder = get_settings().home_dir / "tmp"
    folder.mkdir(exist_ok=True)
    cutoff = time.time() - STALE_TEMP_S
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            continue  # another server removed it first
    return folder


def _temp_path(suffix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=temp_dir(), suffix=suffix)
    os.close(fd)
    return Path(name)


def checkpoint_source(run_id: str, checkpoint_id: int) -> Path:
    """The checkpoint's file or folder (CTR base/delta outputs are folders), through the download guard."""
    eng = engine()
    ckpt = ckpt_store.get_checkpoint(eng, checkpoint_id=checkpoint_id)
    if ckpt is None or ckpt.run_id != run_store.get_run(eng, run_id=run_id).id:
        raise FileNotFoundError(f"run {run_id} has no checkpoint #{checkpoint_id}")
    return safe_run_file(ckpt.run_id, ckpt.path)


def checkpoint_download(run_id: str, checkpoint_id: int) -> Download:
    """One checkpoint: the file itself, or a folder output zipped into a temporary file."""
    run_id = get_run(run_id).id  # a unique prefix names the run too; the file name gets the full id
    path = checkpoint_source(run_id, checkpoint_id)
    if not path.is_dir():
        return Download(f"{run_id}-{path.name}", path, "application/octet-stream", temporary=False)
    target = _temp_path(".zip")
    try:
        with zipfile.ZipFile(target, "w") as zf:
            for f in sorted(path.rglob("*")):
                if f.is_file() and not f.is_symlink():  # never follow a link out of the run folder
                    _add_file(zf, f, str(f.relative_to(path.parent)))
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Download(f"{run_id}-{path.name}.zip", target, "application/zip", temporary=True)


def inference_download(run_id: str, relative: str) -> Download:
    """An output of the Try-it inference preview, a path under the run's `inference/` folder."""
    run_id = get_run(run_id).id
    path = safe_run_file(run_id, f"inference/{relative}")
    if not path.is_file():
        raise FileNotFoundError(f"inference/{relative} is not a file of run {run_id}")
    return Download(path.name, path, "application/octet-stream", temporary=False)


def profile_trace_download(run_id: str) -> Download:
    """The Chrome trace of a profiled run (`profiling: true`), when it was written into the run folder."""
    run_id = get_run(run_id).id
    try:
        path = safe_run_file(run_id, PROFILE_TRACE)
    except FileNotFoundError:
        summary = profile_summary(run_id)
        where = f": it was written to {summary['trace']} (profiling_dump_path)" if summary and "trace" in summary else ""
        raise FileNotFoundError(f"run {run_id} has no profiler trace in its folder{where}") from None
    return Download(f"{run_id}-trace.json", path, "application/json", temporary=False)


def _add_file(zf: zipfile.ZipFile, path: Path, arcname: str) -> None:
    # zipfile copies a file in 8 KB pieces (ZipFile.write), so even a large checkpoint is never read whole
    stored = not path.name.endswith(_COMPRESSED_SUFFIXES)
    zf.write(path, arcname, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def bundle_download(run_id: str) -> Download:
    """A zip of the run: config.yaml, metrics.csv (every point), train.log, and its best and latest checkpoints."""
    run = get_run(run_id)
    ckpts = [c for c in checkpoints(run.id) if c.kind == "checkpoint" and is_state_file(c.path)]
    chosen = {c.id: c for c in ckpts if c.is_best}
    if ckpts:
        chosen[ckpts[-1].id] = ckpts[-1]
    target = _temp_path(".zip")
    metrics_csv = _temp_path(".csv")
    try:
        export_metrics(run.id, metrics_csv, fmt="csv")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{run.id}/config.yaml", to_yaml(run_config(run.id)))
            zf.write(metrics_csv, f"{run.id}/metrics.csv")
            try:
                _add_file(zf, safe_run_file(run.id, "train.log"), f"{run.id}/train.log")
            except FileNotFoundError:
                pass  # a queued run has no log yet
            for c in chosen.values():
                try:
                    _add_file(zf, safe_run_file(run.id, c.path), f"{run.id}/{c.path}")
                except FileNotFoundError:
                    continue  # retention removed it between the listing and now
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        metrics_csv.unlink(missing_ok=True)
    return Download(f"{run.id}-bundle.zip", target, "application/zip", temporary=True)


def matching_keys(run_id: str, pattern: str | None) -> list[str] | None:
    """The run's metric keys matching a glob (`valid/*`, `*auc*`); None for no pattern (every key)."""
    if pattern is None:
        return None
    keys = metric_keys(run_id)
    found = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
    if not found:
        raise ValueError(f"no metric key of run {run_id} matches {pattern!r}; its keys: {', '.join(keys) or 'none yet'}")
    return found


def export_metrics(run_id: str, out: Path, *, fmt: ExportFormat = "csv", keys: str | None = None) -> int:
    """Write every stored point of a run (or of the keys matching the glob `keys`) to `out`; returns the count.

    Columns run_id, key, step, value, wall (Unix seconds), ordered by key then step: the raw points, not the
    dashboard's downsampled view. Rows are read and written in chunks, so memory stays flat for any run length.
    The file appears at `out` only when complete.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    run = get_run(run_id)
    chunks = metric_store.iter_points(engine(), run_id=run.id, keys=matching_keys(run.id, keys))
    part = out.with_name(out.name + ".part")
    try:
        count = _write_csv(run.id, chunks, part) if fmt == "csv" else _write_parquet(run.id, chunks, part)
        part.replace(out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        chunks.close()  # ends the store's read (and its snapshot) now, also after a failed write
    return count


def _write_csv(run_id: str, chunks: Iterator[Sequence[tuple[str, int, float, float]]], path: Path) -> int:
    count = 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(EXPORT_COLUMNS)
        for chunk in chunks:
            writer.writerows((run_id, *row) for row in chunk)  # floats as repr: they read back exactly
            count += len(chunk)
    return count


def _write_parquet(run_id: str, chunks: Iterator[Sequence[tuple[str, int, float, float]]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("run_id", pa.string()), ("key", pa.string()), ("step", pa.int64()), ("value", pa.float64()), ("wall", pa.float64())]
    )
    count = 0
    with pq.ParquetWriter(path, schema) as writer:  # one row group per chunk
        for chunk in chunks:
            key, step, value, wall = zip(*chunk)
            columns = [pa.array([run_id] * len(chunk), pa.string()), pa.array(key, pa.string()), pa.array(step, pa.int64()),
                       pa.array(value, pa.float64()), pa.array(wall, pa.float64())]  # fmt: skip
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            count += len(chunk)
    return count


def metrics_download(run_id: str, fmt: ExportFormat = "csv", keys: str | None = None) -> Download:
    """Every point of a run (or of the keys matching `keys`) exported into a temporary file."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    run = get_run(run_id)
    target = _temp_path(f".{fmt}")
    try:
        export_metrics(run.id, target, fmt=fmt, keys=keys)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    media = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
    return Download(f"{run.id}-metrics.{fmt}", target, media, temporary=True)
