"""`workbench study ...`: automatic hyper-parameter search from a terminal (the same operations as the Study page)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench import api
from workbench.cli_common import fail, load_config

study_app = typer.Typer(no_args_is_help=True, help="Studies: automatic hyper-parameter search (Optuna); every trial is a run.")


@study_app.command("space")
def study_space(task: str) -> None:
    """Print a commented SPACE.yaml with the tuning guide's ranges for TASK."""
    if task not in api.tasks():
        fail(f"unknown task {task!r}; known: {', '.join(api.tasks())}")
    typer.echo(api.space_example(task), nl=False)


@study_app.command("run")
def study_run(
    config: Path,
    space: Annotated[Path, typer.Option("--space", help="SPACE.yaml: setting path -> {low, high, log, step} or {choices: [...]}")],
    trials: Annotated[int, typer.Option("--trials", help="Number of trials")] = 20,
    parallel: Annotated[int, typer.Option("--parallel", help="Trials trained at once")] = 1,
    sampler: Annotated[str, typer.Option(help="tpe | random | grid | cmaes | gp")] = "tpe",
    pruner: Annotated[str, typer.Option(help="median | successive_halving | hyperband | none")] = "median",
    direction: Annotated[Optional[str], typer.Option(help="maximize | minimize (default: the monitored metric's)")] = None,
    objective: Annotated[Optional[str], typer.Option(help="Metric to optimise (default: the task's monitored metric)")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Start no new trial after this many seconds")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value override of the base config")] = None,
    name: Annotated[Optional[str], typer.Option(help="Study name")] = None,
    wait: Annotated[bool, typer.Option("--wait/--detach", help="Follow the study until it ends")] = False,
) -> None:
    """Start a study: the base CONFIG plus values sampled from SPACE, one run per trial."""
    cfg = load_config(config, set_)
    if not space.is_file():
        fail(f"space file not found: {space}")
    try:
        options = api.StudyOptions(
            n_trials=trials, parallel=parallel, sampler=sampler, pruner=pruner, direction=direction, objective=objective, timeout_s=timeout, seed=seed
        )
        study = api.start_study(cfg, space.read_text(), options, name=name or config.stem)
    except api.ConfigError as exc:
        fail(f"{space}: {exc}")
    except ValueError as exc:  # pydantic's errors for the options
        fail(str(exc))
    typer.echo(f"study {study.id} ({study.task}): {options.n_trials} trials, {options.parallel} at once, optimising {study.objective} ({study.direction})")
    if wait:
        raise typer.Exit(_follow_study(study.id))


def _follow_study(study_id: str) -> int:
    seen = -1
    try:
        while True:
            study = api.get_study(study_id)
            rep = api.study_report(study.id, with_importances=False)
            finished = int(rep.trials["state"].isin(["complete", "pruned", "fail"]).sum()) if len(rep.trials) else 0
            if finished != seen:
                best = f"; best {rep.best['value']:.4f} (trial {rep.best['number']})" if rep.best else ""
                typer.echo(f"[{study.status}] {finished} trial(s) finished{best}", err=True)
                seen = finished
            if study.status != "running":
                return 0 if study.status == "completed" else 1
            if not api.driver_running(study):
                typer.echo(f"the study's driver is not running; resume it with: workbench study resume {study.id}", err=True)
                return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; the study goes on. Cancel it with: workbench study cancel {study_id}", err=True)
        return 130


@study_app.command("list")
def study_list(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """List studies, newest first, with each study's best value."""
    studies = api.list_studies()
    rows = []
    for s in studies:
        best = api.study_report(s.id, with_importances=False).best
        rows.append({"id": s.id, "name": s.name, "task": s.task, "status": str(s.status), "trials": s.trials, "objective": s.objective,
                     "direction": s.direction, "best": None if best is None else best["value"], "best_trial": None if best is None else best["number"]})  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no studies yet")
    else:
        for r in rows:
            best = "-" if r["best"] is None else f"{r['best']:.4f} (trial {r['best_trial']})"
            typer.echo(f"{r['id']}  {r['name']}  [{r['task']}]  {r['status']}  {r['trials']} trials  best {r['objective']} {best}")


@study_app.command("show")
def study_show(study_id: str, as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Show a study: its trials (number, state, value, params, run id) and its best trial."""
    try:
        study = api.get_study(study_id)
    except LookupError as exc:
        fail(str(exc))
    rep = api.study_report(study.id)
    trials = json.loads(rep.trials.to_json(orient="records", double_precision=15))
    if as_json:
        out = {**study.model_dump(mode="json"), "driver_running": api.driver_running(study), "best": rep.best, "trials": trials, "importances": rep.importances}
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(f"{study.id}  {study.name}  [{study.task}]  {study.status}  optimising {study.objective} ({study.direction})")
    if rep.best:
        typer.echo(f"best: trial {rep.best['number']} = {rep.best['value']:.4f} (run {rep.best['run_id']})")
    if len(rep.trials):
        typer.echo(rep.trials.drop(columns=["error"]).to_string(index=False))


@study_app.command("cancel")
def study_cancel(study_id: str) -> None:
    """Cancel a study: no new trials; running trials checkpoint and stop."""
    typer.echo(f"{study_id}: {api.cancel_study(study_id)}")


@study_app.command("resume")
def study_resume(study_id: str) -> None:
    """Start a new driver for a study whose driver died; it carries on with the remaining trials."""
    try:
        study = api.resume_study(study_id)
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"study {study.id} resumed")


@study_app.command("promote")
def study_promote(
    study_id: str,
    trial: Annotated[Optional[int], typer.Option(help="Trial number (default: the best)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the trial's config to this YAML file instead of launching it")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Launch it with this many epochs")] = None,
) -> None:
    """The best (or any) trial's config: written to --out, or launched as a new run that records where it came from."""
    try:
        if out is not None:
            out.write_text(api.to_yaml(api.trial_config(study_id, trial), commented=True))
            typer.echo(f"wrote {out}")
            return
        run_ = api.promote(study_id, trial, epochs=epochs)
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"run {run_.id} ({run_.task}) {run_.status}: promoted from study {study_id}")
