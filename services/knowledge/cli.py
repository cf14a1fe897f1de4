"""`echo-iad` commands for this part (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Read, import, export and hot-update the knowledge base.", no_args_is_help=True)
