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
    """Ingest the normal templates of every (dataset, category): store pixels, embed, index.

    Resumable and idempotent: images already in the memory (same content hash,
    line, dataset and category) are skipped without being embedded again.
    """
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from services.common.config import load_settings
    from services.common.errors import EchoError
    from services.embedding.core import ClipEncoder
    from services.mmad.loader import load_dataset
    from services.retrieval.server import open_memory

    t0 = time.perf_counter()
    try:
        settings = load_settings(config)
        line_id = line or settings.retrieval.default_line
        ds = load_dataset(data)
        templates = ds.templates()
        if not templates:
            raise _fail(f"{data} lists no normal templates (similar_templates / random_templates in mmad.json)")
        encoder = ClipEncoder.from_settings(settings.embedding)
        memory = open_memory(settings, encoder.embed_batch)
    except EchoError as e:
        raise _fail(str(e)) from None
    groups: dict[tuple[str, str], list[str]] = {}
    for dataset, category, rel in templates:
        groups.setdefault((dataset, category), []).append(rel)
    rows: list[tuple[str, str, int, int]] = []
    bar = tqdm(total=len(templates), desc="memory", unit="img", disable=not progress)
    try:
        for (dataset, category), rels in groups.items():
            added = existing = 0
            for start in range(0, len(rels), batch_size):
                chunk = rels[start : start + batch_size]
                datas = [ds.abspath(r).read_bytes() for r in chunk]
                res = memory.add_images(line_id, dataset, category, datas)
                added, existing = added + res.added, existing + res.existing
                bar.update(len(chunk))
            rows.append((dataset, category, added, existing))
        stats = memory.stats(line_id)
    except EchoError as e:
        raise _fail(str(e)) from None
    finally:
        bar.close()
        memory.close()
    totals = {(c.dataset, c.category): c.count for c in stats.counts}
    table = Table(title=f"memory {settings.retrieval.collection!r}, line {line_id!r} ({memory.store.engine})")
    for col in ("dataset", "category", "added", "already there", "in memory"):
        table.add_column(col, justify="right" if col not in ("dataset", "category") else "left")
    for dataset, category, added, existing in rows:
        table.add_row(dataset, category, str(added), str(existing), str(totals.get((dataset, category), 0)))
    Console().print(table)
    n_added = sum(r[2] for r in rows)
    n_existing = sum(r[3] for r in rows)
    typer.echo(
        f"added {n_added}, already there {n_existing}, {stats.total} images in line {line_id!r} "
        f"({encoder.model_id}, {memory.dim}-d) in {time.perf_counter() - t0:.1f} s"
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

    from services.common.config import load_settings
    from services.common.errors import EchoError
    from services.retrieval.server import open_memory

    try:
        settings = load_settings(config)
        memory = open_memory(settings)
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
