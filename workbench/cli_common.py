"""Helpers the CLI's command modules share: fail with a message, load and validate a config file."""

from __future__ import annotations

from pathlib import Path

import typer

from workbench import api


def fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def load_config(config: Path, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    try:
        cfg = api.validate_file(config, overrides)
    except api.ConfigError as exc:
        fail(str(exc))
    for note in api.ignored_settings(cfg):
        typer.echo(f"note: {config}: {note}", err=True)
    return cfg
