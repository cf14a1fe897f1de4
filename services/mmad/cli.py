"""`echo-iad` commands for this part (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Synthesize, load and summarize MMAD-format datasets.", no_args_is_help=True)
