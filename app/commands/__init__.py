"""The `echo-iad` sub-command groups, one module each; app/cli.py puts them on one command."""

from __future__ import annotations

from pathlib import Path

from services.client.errors import CliError


def existing(path: Path | list[Path] | None) -> Path | list[Path] | None:
    """Typer callback for a path that must exist: a missing one is the CLI's one-line error (exit code 4, bad
    input), not click's boxed usage error."""
    for p in path if isinstance(path, list) else [path] if path is not None else []:
        if not p.exists():
            raise CliError.bad_input(f"{p}: no such file or folder", "check the path")
    return path
