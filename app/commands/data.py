"""`echo-iad data ...`: synthesize an MMAD-format dataset, or summarize any MMAD-format folder (the real one too)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

app = typer.Typer(help="Synthesize, load and summarize MMAD-format datasets.", no_args_is_help=True)


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the dataset to (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    categories: str | None = typer.Option(
        None,
        "--categories",
        help="Comma-separated subset of round_part,woven_fabric,printed_board,screw (default: all).",
    ),
    per_category: int = typer.Option(40, "--per-category", help="Query images per category, half of them defective."),
    templates_per_category: int = typer.Option(
        12, "--templates-per-category", help="Normal template images per category (the references)."
    ),
    contact_sheet: bool = typer.Option(True, help="Also write OUT/contact_sheet.png (defects beside their masks)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Write a synthetic dataset in the MMAD layout: products with real defects drawn in, masks, 7 question types."""
    from services.common.errors import EchoError
    from services.mmad.loader import load_dataset
    from services.mmad.preview import contact_sheet as write_sheet
    from services.mmad.preview import print_summary
    from services.mmad.synth import synthesize

    t0 = time.perf_counter()
    try:
        root = synthesize(out, seed, _split(categories), per_category, templates_per_category, progress)
    except EchoError as e:
        raise typer.BadParameter(str(e)) from e
    elapsed = time.perf_counter() - t0
    ds = load_dataset(root)
    print_summary(ds)
    n_images = len(ds.samples) + len({t for _, _, t in ds.templates()})
    typer.echo(f"wrote {len(ds.samples)} query images + templates ({n_images} images) to {root} in {elapsed:.1f} s")
    if contact_sheet:
        path, n = write_sheet(ds, root / "contact_sheet.png")
        typer.echo(f"contact sheet ({n} defects beside their masks): {path}")


@app.command()
def summary(
    root: Path = typer.Argument(..., help="An MMAD-format folder (holding mmad.json), synthetic or the real MMAD."),
    contact_sheet: Path | None = typer.Option(
        None, "--contact-sheet", help="Where to write the contact sheet PNG (default: ROOT/contact_sheet.png)."
    ),
    per_category: int = typer.Option(3, help="Anomalous images shown per category on the contact sheet."),
    check_files: bool = typer.Option(True, help="Check that every image, mask and template file exists."),
) -> None:
    """Load an MMAD-format folder; print counts per type and per (dataset, category); write a contact sheet."""
    from services.common.errors import EchoError
    from services.mmad.loader import load_dataset
    from services.mmad.preview import contact_sheet as write_sheet
    from services.mmad.preview import print_summary

    try:
        ds = load_dataset(root, check_files=check_files)
    except EchoError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from e
    print_summary(ds)
    path, n = write_sheet(ds, contact_sheet or root / "contact_sheet.png", per_category=per_category)
    typer.echo(f"contact sheet ({n} defects beside their masks): {path}")
