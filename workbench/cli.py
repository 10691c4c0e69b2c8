"""`workbench` command line: the same operations as the browser, through workbench.api."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench import api
from workbench.cli_common import fail, load_config
from workbench.cli_study import study_app
from workbench import formatting as fmt

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train recommendation, streaming-CTR and Spleeter models.")
data_app = typer.Typer(no_args_is_help=True, help="Data generators, importers and converters.")
app.add_typer(data_app, name="data")
db_app = typer.Typer(no_args_is_help=True, help="The store's schema: show its revision, upgrade it.")
app.add_typer(db_app, name="db")
app.add_typer(study_app, name="study")

ROOT = Path(__file__).resolve().parents[1]


@app.command()
def validate(config: Path, set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value override")] = None) -> None:
    """Validate a config file; print every problem with its field path and line."""
    cfg = load_config(config, set_)
    typer.echo(f"{config}: valid {cfg.task} config")  # type: ignore[attr-defined]


@app.command("config")
def config_cmd(task: str) -> None:
    """Print a task's default config as YAML, each setting with its help text."""
    if task not in api.tasks():
        fail(f"unknown task {task!r}; known: {', '.join(api.tasks())}")
    typer.echo(api.default_config_yaml(task), nl=False)


@app.command()
def run(
    config: Path,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value override, e.g. --set epochs=5")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name")] = None,
    tag: Annotated[Optional[list[str]], typer.Option(help="Tag (repeatable)")] = None,
    wait: Annotated[bool, typer.Option("--wait/--detach", help="Follow the run until it ends (exit 0 only if it completed)")] = False,
) -> None:
    """Launch a training run from a config file."""
    cfg = load_config(config, set_)
    run_ = api.launch_run(cfg, name=name or config.stem, tags=tag)
    typer.echo(f"run {run_.id} ({run_.task}) {run_.status}; folder {api.run_dir(run_.id)}")
    if wait:
        raise typer.Exit(_follow(run_.id))


FOLLOW_REFRESH_S = 0.5  # progress line and new log lines
FOLLOW_POLL_S = 0.05  # the status alone, so `--wait` returns as soon as the run ends
ENDED = api.ENDED


def _follow(run_id: str) -> int:
    """Print progress and new log lines until the run ends. Exit code 0 only for `completed`."""
    api.start_housekeeping()  # so a run whose supervisor vanished ends the wait (as `lost`), and the queue moves on
    log_pos = 0
    last_line = ""
    try:
        while True:
            run_ = api.get_run(run_id)
            log_path = api.run_dir(run_id) / "train.log"
            if log_path.exists():
                with open(log_path, "rb") as f:
                    f.seek(log_pos)
                    chunk = f.read()
                    log_pos += len(chunk)
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
            p = api.progress(run_)
            line = f"[{run_.status}]"
            if p.fraction is not None:
                line += f" {p.fraction:6.1%} ({p.done:g}/{p.total:g} {p.unit})"
            if p.eta_s is not None:
                line += f" ETA {p.eta_s:.0f}s"
            if run_.phase:
                line += f" {run_.phase}"
            if line != last_line:
                typer.echo(line, err=True)
                last_line = line
            if run_.status in ENDED:
                if run_.error:
                    typer.echo(f"error: {run_.error}", err=True)
                best = f"; best {run_.monitor_key} = {run_.best_value:.4f}" if run_.best_value is not None else ""
                typer.echo(f"run {run_.id} {run_.status}{best}")
                return 0 if run_.status == "completed" else 1
            until = time.monotonic() + FOLLOW_REFRESH_S
            while time.monotonic() < until and api.run_status(run_.id) not in ENDED:
                time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; the run goes on. Cancel it with: workbench cancel {run_id}", err=True)
        return 130


@app.command("list")
def list_cmd(
    task: Annotated[Optional[str], typer.Option(help="Only this task")] = None,
    status: Annotated[Optional[list[str]], typer.Option(help="Only these statuses (repeatable)")] = None,
    search: Annotated[Optional[str], typer.Option(help="Text in id, name, notes or owner")] = None,
    tag: Annotated[Optional[str], typer.Option(help="Only runs with this tag")] = None,
    since: Annotated[Optional[datetime], typer.Option(help="Only runs created at or after this date/time")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output (times as Unix seconds)")] = False,
) -> None:
    """List runs, newest first: start in local time, duration, best value of the monitored metric."""
    runs = api.list_runs(task=task, statuses=status, text=search, tag=tag, since=since.timestamp() if since else None)
    if as_json:
        typer.echo(json.dumps([_run_json(r) for r in runs], indent=2))
        return
    typer.echo(fmt.table([_run_row(r) for r in runs]) if runs else "no runs yet")


def _run_row(r: api.RunRead) -> dict[str, str]:
    return {
        "id": r.id,
        "name": r.name,
        "task": r.task,
        "kind": r.kind,
        "status": r.status,
        "started": fmt.local_time(r.started_at or r.created_at),
        "duration": fmt.duration(r.duration_s),
        "best": fmt.number(r.best_value),
        "metric": r.monitor_key or fmt.MISSING,
        "tags": ", ".join(r.tags) or fmt.MISSING,
        "owner": r.owner or fmt.MISSING,
        "attempt": str(r.attempt),
    }


def _run_json(r: api.RunRead) -> dict:
    d = r.model_dump(mode="json")
    d["duration_s"] = r.duration_s
    return d


@app.command()
def show(run_id: str, as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Show one run: status, config, metric summaries, checkpoints, events."""
    try:
        r = api.get_run(run_id)
    except api.RunNotFound as exc:
        fail(str(exc))
    summaries = api.metric_summaries([r.id])
    ckpts = api.checkpoints(r.id)
    if as_json:
        out = _run_json(r)
        out["metrics"] = {row["key"]: {k: row[k] for k in ("last", "last_step", "min", "max", "count")} for row in summaries.to_dict("records")}
        out["checkpoints"] = [c.model_dump(mode="json") for c in ckpts]
        out["events"] = [e.model_dump(mode="json") for e in api.events(r.id)]
        out["run_dir"] = str(api.run_dir(r.id))
        out["profile"] = api.profile_summary(r.id)  # null unless the run was profiled (profiling: true)
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"{r.id}  {r.name}  [{r.task}]  {r.status}  attempt {r.attempt}")
    if r.error:
        typer.echo(f"error: {r.error}")
    if len(summaries):
        typer.echo(summaries.drop(columns=["run_id"]).to_string(index=False))
    for c in ckpts:
        best = " (best)" if c.is_best else ""
        typer.echo(f"  checkpoint #{c.id} {c.kind} step {c.step} {c.size_bytes / 1e6:.2f} MB {c.path}{best}")
    profile = api.profile_summary(r.id)
    if profile is not None:
        typer.echo(f"profile: {profile.get('error') or _profile_line(profile)}")


def _profile_line(profile: dict) -> str:
    shares = ", ".join(f"{k} {v:.0%}" for k, v in profile["phase_share"].items())
    top = ", ".join(row["name"] for row in profile["ops"][:3])
    return f"{profile['recorded_steps']} steps, {profile['step_ms']:.1f} ms/step ({shares}); top ops {top}; trace {profile['trace']}"


@app.command()
def compare(
    run_ids: list[str],
    all_settings: Annotated[bool, typer.Option("--all", help="Show every setting, not only the differing ones")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Compare runs: config differences and the last/best value of every metric."""
    try:
        ids = [api.get_run(r).id for r in run_ids]
    except api.RunNotFound as exc:
        fail(str(exc))
    diff = api.compare_configs(ids, only_differing=not all_settings)
    table = api.compare_summary(ids)
    if as_json:
        typer.echo(json.dumps({"config_diff": diff.to_dict("records"), "summary": json.loads(table.to_json(orient="records"))}, indent=2))
        return
    typer.echo("config differences:" if not all_settings else "config:")
    typer.echo(diff.to_string(index=False) if len(diff) else "  (identical)")
    typer.echo("\nmetrics (last / best):")
    typer.echo(table.set_index("run").T.to_string())


@app.command("eval")
def eval_cmd(
    run_id: str,
    checkpoint: Annotated[Optional[int], typer.Option(help="Checkpoint id (default: the best, else the latest)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Evaluate on this data instead of the config's test split")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON")] = False,
) -> None:
    """Evaluate a checkpoint in the background, wait for it, and print its metrics."""
    try:
        job = api.evaluate_checkpoint(run_id, checkpoint, str(data) if data else None)
    except (api.RunNotFound, FileNotFoundError) as exc:
        fail(str(exc))
    typer.echo(f"evaluation {job.id} of {run_id} queued", err=True)
    api.start_housekeeping()
    while (job := api.get_run(job.id)).status not in ENDED:
        time.sleep(0.5)
    if job.status != "completed":
        fail(f"evaluation {job.id} {job.status}: {job.error}", 1)
    summary = api.metric_summaries([job.id])
    metrics = {row["key"]: row["last"] for row in summary.to_dict("records")}
    if as_json:
        typer.echo(json.dumps({"evaluation": job.id, "run": run_id, "checkpoint": job.parent_checkpoint_id, "metrics": metrics}, indent=2))
    else:
        for key, value in sorted(metrics.items()):
            typer.echo(f"{key:30s} {value:.4f}")


@app.command()
def export(
    run_id: str,
    format_: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    keys: Annotated[Optional[str], typer.Option("--keys", help="Only metric keys matching this glob, e.g. 'valid/*'")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file or folder (default: ./RUN-metrics.FORMAT)")] = None,
) -> None:
    """Write every stored metric point of a run (run_id, key, step, value, wall) to CSV or Parquet.

    The raw points ordered by key and step, not the dashboard's downsampled view; wall is Unix seconds.
    """
    if format_ not in api.EXPORT_FORMATS:
        fail(f"--format {format_!r}: use one of {', '.join(api.EXPORT_FORMATS)}")
    try:
        run_ = api.get_run(run_id)
    except api.RunNotFound as exc:
        fail(str(exc))
    name = f"{run_.id}-metrics.{format_}"
    target = out / name if out is not None and out.is_dir() else (out or Path(name))
    try:
        count = api.export_metrics(run_.id, target, fmt=format_, keys=keys)  # type: ignore[arg-type]
    except (ValueError, OSError) as exc:
        fail(f"cannot write {target}: {exc.strerror}" if isinstance(exc, OSError) else str(exc))
    typer.echo(f"wrote {count} points of run {run_.id} to {target}")


@app.command()
def cancel(run_id: str) -> None:
    """Cancel a run (it saves a checkpoint first)."""
    typer.echo(f"{run_id}: {api.cancel_run(run_id)}")


@app.command()
def resume(run_id: str, wait: Annotated[bool, typer.Option("--wait/--detach")] = False) -> None:
    """Resume a failed, cancelled or lost run from its latest checkpoint."""
    try:
        r = api.resume_run(run_id)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"run {r.id} {r.status} (attempt {r.attempt})")
    if wait:
        raise typer.Exit(_follow(r.id))


@app.command()
def sync(run_id: str) -> None:
    """Store what a run's journal holds beyond the store (records kept from it by a store outage). Safe to repeat."""
    try:
        result = api.sync_run(run_id)
    except api.RunNotFound as exc:
        fail(str(exc))
    if result.applied:
        typer.echo(f"run {run_id}: stored {result.applied} journal records (journal seq {result.journal_seq})")
    else:
        typer.echo(f"run {run_id}: nothing to store, the store has every journal record (journal seq {result.journal_seq})")


@app.command()
def housekeeping() -> None:
    """Mark runs whose supervisor vanished `lost` and start queued runs that have a free slot, now. A UI server and
    every supervisor do this every few seconds; listing runs never does."""
    done = api.housekeeping()
    typer.echo(f"lost: {', '.join(done.lost) or 'none'}; started: {', '.join(done.started) or 'none'}")


@app.command()
def delete(run_id: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False) -> None:
    """Delete a run: its files, then its rows."""
    if not yes and not typer.confirm(f"Delete run {run_id} and all its files?"):
        raise typer.Exit(1)
    api.delete_run(run_id)
    typer.echo(f"deleted {run_id}")


@app.command()
def ui(port: int = 8501, address: str = "127.0.0.1") -> None:
    """Serve the browser workbench (Streamlit) on ADDRESS:PORT."""
    from workbench.ui.serve import serve

    typer.echo(f"Workbench on http://{address}:{port} (store: {api.store_location()})")
    serve(address, port)


@db_app.command("current")
def db_current() -> None:
    """Print the store's schema revision and the one this workbench needs."""
    rev = api.db_current()
    if rev.revision is None:
        typer.echo(f"{rev.location}: empty (created at revision {rev.head} when first opened)")
    elif rev.up_to_date:
        typer.echo(f"{rev.location}: revision {rev.revision} (up to date)")
    else:
        made = " (made before the schema was versioned)" if not rev.versioned else ""
        typer.echo(f"{rev.location}: revision {rev.revision}{made}; this workbench needs {rev.head}: run `workbench db upgrade`")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the store in place to the revision this workbench needs (one transaction; every run is kept)."""
    before, after = api.db_upgrade()
    if before.revision == after.revision:
        typer.echo(f"{after.location}: already at revision {after.revision}; nothing to do")
    elif before.revision is None:
        typer.echo(f"{after.location}: created at revision {after.revision}")
    else:
        made = " (made before the schema was versioned)" if not before.versioned else ""
        typer.echo(f"{after.location}: upgraded from revision {before.revision}{made} to {after.revision}")


def _mount_data_commands() -> None:
    for name, func in api.data_commands().items():
        data_app.command(name, help=(func.__doc__ or "").strip().split("\n")[0] or None)(func)


def main() -> None:
    # task data commands import their task's modules: only pay for that when a data command is asked for
    if len(sys.argv) > 1 and sys.argv[1] == "data":
        _mount_data_commands()
    if sys.argv[1:2] == ["ui"]:
        app()
    try:
        try:
            app()
        except (api.StoreSchemaError, api.ExecutorError) as exc:  # an old store, an executor that cannot place runs: say what to do, not a traceback
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    except SystemExit as exc:
        # Skip the interpreter's teardown (~0.1 s of freeing SQLAlchemy and pydantic objects): by now every row is
        # committed and every file we wrote is closed, and `run --wait` should return the moment its run ends.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
