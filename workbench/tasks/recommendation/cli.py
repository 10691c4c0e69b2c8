"""`workbench data ...` commands of the recommendation task (mounted by the platform's CLI).

Plain functions with typer-style annotated parameters. Defaults come from the config schema, so
`workbench data synth-sessions out.inter` writes exactly the sessions the default config trains on.
No torch import: these run in the CLI process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.tasks.recommendation.config import RecommendationData, SyntheticSessions
from workbench.tasks.recommendation.pipeline import filter_clicks, prepare_sessions
from workbench.tasks.recommendation.sources import generate_sessions, read_atomic, read_diginetica, write_atomic

_SYN = SyntheticSessions()
_DATA = RecommendationData()


def synth_sessions(
    out: Annotated[Path, typer.Argument(help="Where to write the RecBole .inter file, e.g. data/synth/synth.inter.")],
    n_items: Annotated[int, typer.Option(help="Distinct items.")] = _SYN.n_items,
    n_sessions: Annotated[int, typer.Option(help="Sessions to generate.")] = _SYN.n_sessions,
    mean_length: Annotated[float, typer.Option(help="Mean clicks per session.")] = _SYN.mean_length,
    max_length: Annotated[int, typer.Option(help="Longest session in clicks.")] = _SYN.max_length,
    zipf_exponent: Annotated[float, typer.Option(help="Popularity skew (rank^-exponent).")] = _SYN.zipf_exponent,
    n_topics: Annotated[int, typer.Option(help="Item topics; sessions stay mostly in one.")] = _SYN.n_topics,
    n_successors: Annotated[int, typer.Option(help="Likely next items per item.")] = _SYN.n_successors,
    follow_prob: Annotated[float, typer.Option(help="Chance the next click is a successor.")] = _SYN.follow_prob,
    days: Annotated[float, typer.Option(help="Time span of the sessions in days.")] = _SYN.days,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = _SYN.seed,
    kind: Annotated[str, typer.Option(help="topics or intents (per-intent Zipf, drifting intents).")] = _SYN.kind,
    length_distribution: Annotated[
        str, typer.Option(help="geometric, lognormal (long tail) or uniform session lengths.")
    ] = _SYN.length_distribution,
    reclick_prob: Annotated[float, typer.Option(help="Chance a click repeats an earlier one.")] = _SYN.reclick_prob,
    intent_switch_prob: Annotated[
        float, typer.Option(help="intents: chance per click to move to another intent.")
    ] = _SYN.intent_switch_prob,
) -> None:
    """Generate synthetic click sessions and write them as a RecBole atomic .inter file."""
    spec = SyntheticSessions(
        n_items=n_items, n_sessions=n_sessions, mean_length=mean_length, max_length=max_length,
        zipf_exponent=zipf_exponent, n_topics=n_topics, n_successors=n_successors, follow_prob=follow_prob,
        days=days, seed=seed, kind=kind, length_distribution=length_distribution, reclick_prob=reclick_prob,
        intent_switch_prob=intent_switch_prob,
    )  # fmt: skip
    clicks = generate_sessions(spec)
    write_atomic(clicks, out)
    typer.echo(f"wrote {len(clicks):,} clicks in {n_sessions:,} sessions over {n_items:,} items to {out}")
    typer.echo(f"train on it with: data: {{source: atomic, path: {out}}}")


def import_diginetica(
    csv: Annotated[
        Path, typer.Argument(help="Diginetica's train-item-views.csv (sessionId;userId;itemId;timeframe;eventdate).")
    ],
    out: Annotated[Path, typer.Argument(help="Where to write the cleaned sessions as a RecBole .inter file.")],
    min_item_count: Annotated[int, typer.Option(help="Drop items clicked fewer times.")] = _DATA.min_item_count,
) -> None:
    """Clean Diginetica clicks (seed 004's filters, clicks ordered by timeframe) into a RecBole .inter file.

    The file's timestamp is the click's date plus its timeframe in seconds, so RecBole (or `source: atomic`)
    sees the same click order as `source: diginetica`.
    """
    clicks = read_diginetica(csv)
    kept = filter_clicks(clicks.sort_values(["session", "order"], kind="stable"), min_item_count)
    write_atomic(kept, out)
    typer.echo(
        f"read {len(clicks):,} clicks; kept {len(kept):,} clicks in {kept['session'].nunique():,} sessions over "
        f"{kept['item'].nunique():,} items; wrote {out}"
    )


def session_stats(
    path: Annotated[Path, typer.Argument(help="A RecBole .inter file or Diginetica's train-item-views.csv.")],
    min_item_count: Annotated[int, typer.Option(help="Drop items clicked fewer times.")] = _DATA.min_item_count,
    split: Annotated[str, typer.Option(help="leave_one_out or time.")] = _DATA.split,
) -> None:
    """Read a data file through the full pipeline and print what training would see (checks the file, too)."""
    clicks = read_diginetica(path) if path.suffix == ".csv" else read_atomic(path)
    prepared = prepare_sessions(
        clicks, min_item_count=min_item_count, split=split, valid_days=_DATA.valid_days, test_days=_DATA.test_days
    )
    for key, value in prepared.stats.items():
        typer.echo(f"{key:>16}: {value:,}")
