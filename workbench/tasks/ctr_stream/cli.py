"""`workbench data` commands of the ctr_stream task: synth-ctr, criteo-to-slots, import-paddlerec-config.

Plain functions with typer annotations; the platform mounts them under `workbench data <name>`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench.tasks.ctr_stream.config import CtrStreamConfig, SyntheticStream


def synth_ctr(
    out: Annotated[Path, typer.Argument(help="Folder to write YYYYMMDD/HHMM/part-00000 slices into.")],
    start_day: Annotated[str, typer.Option(help="First day, YYYYMMDD.")] = "20190720",
    days: Annotated[int, typer.Option(min=1, help="Number of days.")] = 2,
    split_interval: Annotated[int, typer.Option(help="Minutes per slice (must divide 1440).")] = 30,
    hourly: Annotated[bool, typer.Option(help="Name slice folders HH (is_data_hourly_placed; needs 60 minutes).")] = False,
    slot_num: Annotated[int, typer.Option(min=1, help="Sparse slots 2..slot_num+1.")] = 26,
    examples_per_slice: Annotated[int, typer.Option(min=1, help="Impressions per slice.")] = 2000,
    vocab_size: Annotated[int, typer.Option(min=10, help="Largest per-slot vocabulary.")] = 20000,
    churn_per_day: Annotated[float, typer.Option(help="Share of features replaced per day.")] = 0.05,
    base_ctr: Annotated[float, typer.Option(help="Mean click-through rate.")] = 0.1,
    donefile: Annotated[str, typer.Option(help="Donefile name written last in each slice ('' = none).")] = "data.done",
    ins_id: Annotated[bool, typer.Option(help="Prefix lines with ins_id<TAB>.")] = True,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    live: Annotated[float, typer.Option(help="Write one slice every LIVE seconds (streaming demo); 0 = all at once.")] = 0.0,
) -> None:
    """Write a synthetic click stream with known click probabilities (Bayes-optimal AUC in _synth.json)."""
    from workbench.tasks.ctr_stream.synth import generate_stream

    try:
        first = dt.datetime.strptime(start_day, "%Y%m%d")
        CtrStreamConfig(split_interval=split_interval, is_data_hourly_placed=hourly, split_per_pass=1)
        settings = SyntheticStream(examples_per_slice=examples_per_slice, vocab_size=vocab_size,
                                   churn_per_day=churn_per_day, base_ctr=base_ctr, ins_id=ins_id, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    day_list = [(first + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(days)]
    on_slice = (lambda name: typer.echo(f"wrote {out / name}")) if live > 0 else None
    summary = generate_stream(out, slots=list(range(2, slot_num + 2)), days=day_list, split_interval=split_interval,
                              settings=settings, donefile=donefile, hourly=hourly, live_seconds=live, on_slice=on_slice)
    for day, info in summary["days"].items():
        typer.echo(f"{day}: {info['impressions']} impressions, CTR {info['ctr']:.4f}, Bayes-optimal AUC "
                   f"{info['bayes_auc']:.4f}")
    typer.echo(f"train on it with: train_data_dir: {out}  start_day: {day_list[0]}  end_day: {day_list[-1]}  "
               f"split_interval: {split_interval}  slot_num: {slot_num}" + (f"  data_donefile: {donefile}" if donefile else ""))


def criteo_to_slots(
    src: Annotated[Path, typer.Argument(help="Criteo TSV file (label, I1..I13, C1..C26), plain or .gz.")],
    out: Annotated[Path, typer.Argument(help="Folder to write YYYYMMDD/HHMM/part-00000 slices into.")],
    start_day: Annotated[str, typer.Option(help="Day of the first slice, YYYYMMDD.")] = "20190720",
    split_interval: Annotated[int, typer.Option(help="Minutes between slices.")] = 30,
    lines_per_slice: Annotated[int, typer.Option(min=1, help="Input lines per slice.")] = 100_000,
    max_lines: Annotated[int, typer.Option(min=0, help="Stop after this many lines (0 = all).")] = 0,
    donefile: Annotated[str, typer.Option(help="Donefile name written last in each slice ('' = none).")] = "data.done",
) -> None:
    """Convert Criteo-format TSV into time-sliced slot-format folders (slots 2..40)."""
    from workbench.tasks.ctr_stream.criteo import convert_criteo

    if not src.is_file():
        raise typer.BadParameter(f"{src} is not a file")
    try:
        summary = convert_criteo(src, out, start_day=start_day, split_interval=split_interval,
                                 lines_per_slice=lines_per_slice, donefile=donefile, max_lines=max_lines)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{summary['lines']} lines in {summary['slices']} slices (CTR {summary['ctr']:.4f}), up to "
               f"{summary['last_slice']}; train with slot_num: 39, split_interval: {split_interval}")


def import_paddlerec_config(
    src: Annotated[Path, typer.Argument(help="PaddleRec config_online.yaml (runner / hyper_parameters / table_parameters).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the ctr_stream config here (default: print).")] = None,
) -> None:
    """Turn a PaddleRec config_online.yaml into a ctr_stream config, reporting what could not be mapped."""
    from workbench.tasks.ctr_stream.paddlerec_import import import_paddlerec_file

    try:
        report = import_paddlerec_file(src)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    text = report.to_yaml(str(src))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")
    for title, items in (("unsupported", report.unsupported), ("unknown", report.unknown), ("problems", report.errors)):
        for item in items:
            typer.echo(f"{title}: {item}", err=True)
    if report.errors:
        raise typer.Exit(1)
