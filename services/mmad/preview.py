"""Human checks of an MMAD-format folder: count tables and a contact sheet of defects beside their masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from services.mmad.loader import MMADDataset
from services.mmad.types import QUESTION_TYPES, Sample

TYPE_ABBREVIATIONS: dict[str, str] = {
    "Anomaly Detection": "AD",
    "Defect Classification": "DC",
    "Defect Localization": "DL",
    "Defect Description": "DD",
    "Defect Analysis": "DA",
    "Object Classification": "OC",
    "Object Analysis": "OA",
}


def pick_anomalous(ds: MMADDataset, per_category: int = 3) -> list[Sample]:
    """A few anomalous samples with masks per (dataset, category), different defect types first."""
    picked: list[Sample] = []
    for dataset, category in ds.categories():
        pool = [s for s in ds.samples if s.dataset == dataset and s.category == category and not s.is_normal]
        pool = [s for s in pool if s.mask_path]
        chosen: list[Sample] = []
        seen: set[str] = set()
        for s in pool:  # one per defect type, then fill up
            if s.defect_type not in seen and len(chosen) < per_category:
                chosen.append(s)
                seen.add(s.defect_type)
        for s in pool:
            if len(chosen) >= per_category:
                break
            if s not in chosen:
                chosen.append(s)
        picked.extend(chosen)
    return picked


def load_mask(ds: MMADDataset, sample: Sample, size: tuple[int, int]) -> np.ndarray:
    """The sample's mask as a bool array of `size` (w, h); MMAD's RGB masks count any non-black pixel."""
    if not sample.mask_path:
        return np.zeros((size[1], size[0]), bool)
    with Image.open(ds.abspath(sample.mask_path)) as m:
        mask = m.convert("L").resize(size, Image.Resampling.NEAREST)
    return np.asarray(mask) > 0


def overlay(img: Image.Image, mask: np.ndarray) -> Image.Image:
    """The image with the mask tinted red and outlined in yellow."""
    arr = np.asarray(img.convert("RGB"), np.float32)
    arr[mask] = arr[mask] * 0.45 + np.array([255, 0, 0], np.float32) * 0.55
    m = Image.fromarray(mask.astype(np.uint8) * 255)
    edge = (np.asarray(m.filter(ImageFilter.MaxFilter(3))) > 0) & ~mask
    arr[edge] = (255, 230, 0)
    return Image.fromarray(arr.astype(np.uint8))


def contact_sheet(
    ds: MMADDataset, out: str | Path, *, per_category: int = 3, tile: int = 192, columns: int = 3
) -> tuple[Path, int]:
    """Write a PNG grid: each anomalous image beside its mask overlay, labelled `category / defect type`.

    Returns (path written, number of samples shown). With no anomalous images it writes a one-line note.
    """
    samples = pick_anomalous(ds, per_category)
    font = ImageFont.load_default()
    label_h = 18
    cols = max(1, min(columns, len(samples)))
    rows = max(1, -(-len(samples) // cols))
    sheet = Image.new("RGB", (cols * 2 * tile, rows * (tile + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if not samples:
        draw.text((8, 4), "no anomalous images with masks", fill=(0, 0, 0), font=font)
    for i, s in enumerate(samples):
        with Image.open(ds.abspath(s.image_path)) as im:
            img = im.convert("RGB")
        mask = load_mask(ds, s, img.size)
        x, y = (i % cols) * 2 * tile, (i // cols) * (tile + label_h)
        sheet.paste(img.resize((tile, tile)), (x, y))
        sheet.paste(overlay(img, mask).resize((tile, tile)), (x + tile, y))
        label = f"{s.category} / {s.defect_type}  ({int(mask.sum())} px)"
        draw.text((x + 4, y + tile + 3), label, fill=(0, 0, 0), font=font)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path, len(samples)


def print_summary(ds: MMADDataset, console: object | None = None) -> None:
    """Rich tables: questions per type, then images and questions per (dataset, category); unknown types; issues."""
    from rich.console import Console
    from rich.table import Table

    con: Console = console if isinstance(console, Console) else Console(width=max(Console().width, 132))
    type_counts = ds.type_counts()
    t = Table(title=f"Questions per type ({ds.root})")
    t.add_column("type")
    t.add_column("questions", justify="right")
    for qt in QUESTION_TYPES:
        t.add_row(qt, str(type_counts.get(qt, 0)))
    for raw, n in sorted(ds.unknown_types.items()):
        t.add_row(f"[red]unknown: {raw}[/red]", str(n))
    t.add_row("[bold]total[/bold]", str(sum(type_counts.values())))
    con.print(t)

    c = Table(title="Images and questions per (dataset, category)")
    for col in ("dataset", "category", "images", "normal", "anomalous"):
        c.add_column(col, justify="right" if col not in ("dataset", "category") else "left")
    for qt in QUESTION_TYPES:
        c.add_column(TYPE_ABBREVIATIONS[qt], justify="right")
    for (dataset, category), row in ds.counts().items():
        c.add_row(
            dataset,
            category,
            *(str(row[k]) for k in ("images", "normal", "anomalous")),
            *(str(row.get(qt, 0)) for qt in QUESTION_TYPES),
        )
    con.print(c)
    con.print(f"{len(ds.templates())} distinct (dataset, category, template) references")
    if ds.unknown_types:
        con.print(
            f"[yellow]{sum(ds.unknown_types.values())} questions of unknown types loaded as-is: "
            f"{', '.join(sorted(ds.unknown_types))}[/yellow]"
        )
    for issue in ds.issues[:10]:
        con.print(f"[yellow]note:[/yellow] {issue}")
    if len(ds.issues) > 10:
        con.print(f"[yellow]... and {len(ds.issues) - 10} more notes[/yellow]")
