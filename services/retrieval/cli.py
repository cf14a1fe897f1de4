"""`echo-iad` commands for this part (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build and inspect the memory of normal images.", no_args_is_help=True)
