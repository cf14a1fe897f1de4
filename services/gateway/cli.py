"""`echo-iad serve | inspect | product | demo` (the gateway issue fills these in)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the gateway's top-level commands to the main app."""
