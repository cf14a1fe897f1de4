"""`echo-iad` commands for this part (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run MMAD evaluations, ablations and comparisons.", no_args_is_help=True)
