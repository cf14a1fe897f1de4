"""`echo-iad` commands for this part (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Decision stage utilities (offline model build, prompt preview).", no_args_is_help=True)
