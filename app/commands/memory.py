"""`echo-iad memory ...`: build the memory of normal images from an MMAD-format folder, and inspect it.

Both commands work in-process (no server needed). Heavy imports live inside the
commands so `echo-iad --help` stays instant.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

app = typer.Typer(help="Build and inspect the memory of normal images.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(1)


@app.command()
def build(
    data: Path = typer.Option(..., "--data", help="An MMAD-format folder (holding mmad.json): synthetic or real MMAD."),
    line: str = typer.Option(
        "", "--line", help="Production line the memory belongs to (default: retrieval.default_line)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images embedded per model call."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Ingest the normal templates of every (dataset, category): the memory (store pixels, embed, index) and the
    evidence banks (patch features, recalibrated threshold), through the same path as `echo-iad product add`.

    Resumable and idempotent: images already there (same content hash, line, dataset and category) are
    skipped without being embedded again.
    """
    from rich.console import Console
    from rich.table import Table

    from app.memory import build_memory
    from services.common.errors import EchoError
    from services.config import load_settings

    t0 = time.perf_counter()
    try:
        settings = load_settings(config)
        report = build_memory(settings, data, line_id=line, batch_size=batch_size, progress=progress)
    except EchoError as e:
        raise _fail(str(e)) from None
    table = Table(title=f"memory {settings.retrieval.collection!r}, line {report.line_id!r} ({report.engine})")
    for col in ("dataset", "category", "added", "already there", "in memory", "evidence bank", "threshold"):
        table.add_column(col, justify="right" if col not in ("dataset", "category") else "left")
    for r in report.rows:
        cells = (r.added, r.existing, r.in_memory, r.bank_images, f"{r.threshold:.4g}")
        table.add_row(r.dataset, r.category, *map(str, cells))
    Console().print(table)
    typer.echo(
        f"added {report.added}, already there {report.existing}, {report.total} images in line {report.line_id!r} "
        f"({report.model_id}, {report.dim}-d) in {time.perf_counter() - t0:.1f} s"
    )


@app.command()
def stats(
    line: str = typer.Option("", "--line", help="Only this production line (default: all)."),
    dataset: str = typer.Option("", "--dataset", help="Only this dataset."),
    category: str = typer.Option("", "--category", help="Only this category."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults)."
    ),
) -> None:
    """Count the normal images per (line, dataset, category)."""
    from rich.console import Console
    from rich.table import Table

    from services.common.errors import EchoError
    from services.config import load_settings
    from services.retrieval.server import open_memory

    try:
        settings = load_settings(config)
        memory = open_memory(settings.retrieval, settings.embedding)
        try:
            st = memory.stats(line, dataset, category)
        finally:
            memory.close()
    except EchoError as e:
        raise _fail(str(e)) from None
    table = Table(title=f"memory {settings.retrieval.collection!r} ({st.engine}, {st.dim}-d)")
    for col in ("line", "dataset", "category", "images"):
        table.add_column(col, justify="right" if col == "images" else "left")
    for c in st.counts:
        table.add_row(c.line_id, c.dataset, c.category, str(c.count))
    Console().print(table)
    typer.echo(f"{st.total} images")
