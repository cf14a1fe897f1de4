"""The ablation grid: run the paper's settings as cells and print its tables and figures under its names.

Table 1 (baseline vs Echo), Table 2 (DK vs CSK), Table 3 (expert ablations),
Table 4 (0-shot, 1-shot, 1-shot*), Fig. 5 (answer formats), Fig. 6 (k-shot),
and ours: the visual evidence expert off and on (its rows add the evidence's
mean image AUROC, pixel AUROC and AUPRO); cells.py defines the rows. A grid is a folder: `grid.json` (axes, rows, cells)
and one run folder per distinct cell (`GRID_DIR/<cell>/answers.jsonl`,
resumable like any run). Rows are settings; columns are the paper's five types
and their average, each the unweighted mean over Table 1's datasets (MVTec-AD
and VisA when answered; Anomaly Detection balanced, unparseable wrong).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from services.evaluation.cells import AXES, Cell, grid_cells
from services.evaluation.evidence_report import evidence_report, pct
from services.evaluation.report import AVERAGE, PAPER_HEADERS, PAPER_TYPES, Table, dedupe, graded, table1_datasets
from services.mmad.scoring import score

GRID_FILE = "grid.json"


def save_grid(grid_dir: Path, axes: list[str], cells: list[Cell], rows: dict[str, list[tuple[str, str]]]) -> None:
    grid_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "axes": axes,
        "cells": [c.to_dict() for c in cells],
        "rows": {a: [list(r) for r in v] for a, v in rows.items()},
    }
    (grid_dir / GRID_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_grid(grid_dir: str | Path) -> tuple[list[str], list[Cell], dict[str, list[tuple[str, str]]]]:
    path = Path(grid_dir) / GRID_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not an ablation grid folder (run `echo-iad eval ablate` first)")
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = {a: [(str(label), str(name)) for label, name in v] for a, v in data["rows"].items()}
    return list(data["axes"]), [Cell.from_dict(c) for c in data["cells"]], rows


def row_scores(records: list[dict[str, Any]], datasets: Sequence[str] | None = None) -> list[float | None]:
    """The five paper types (mean over Table 1's datasets) and their average, for one cell's answers."""
    g = graded(dedupe(records))
    chosen, _ = table1_datasets((x.dataset for x in g), datasets)
    rep = score([x for x in g if x.dataset in chosen], types=PAPER_TYPES)
    return [*(rep.wrong.type_average.get(t) for t in PAPER_TYPES), rep.wrong.headline]


EVIDENCE_COLUMNS = ["Image AUROC", "Pixel AUROC", "AUPRO"]


def evidence_scores(
    records: list[dict[str, Any]], run_dir: Path | None, dataset_root: str | Path | None
) -> list[float | None]:
    """The evidence expert's mean image AUROC, pixel AUROC and AUPRO (%) over one cell's categories."""
    m = evidence_report(records, run_dir, dataset_root).mean
    if m is None:
        return [None, None, None]
    return [pct(x) for x in (m.image_auroc, m.pixel_auroc, m.aupro)]


def axis_table(
    axis: str,
    rows: list[tuple[str, str]],
    records: dict[str, list[dict[str, Any]]],
    datasets: Sequence[str] | None = None,
    grid_dir: Path | None = None,
    dataset_root: str | Path | None = None,
) -> Table:
    """One axis in the paper's layout: rows = settings, columns = five types + Average (+ answered, unparseable).

    The evidence axis adds the evidence's figures (EVIDENCE_COLUMNS); pixel ones need `grid_dir` (the cells'
    heat maps) and `dataset_root` (the masks).
    """
    title = AXES[axis][0]
    extra = EVIDENCE_COLUMNS if axis == "evidence" else []
    cols = ["Setting", *(PAPER_HEADERS[t] for t in PAPER_TYPES), AVERAGE, *extra, "Answered", "Unparseable", "Cell"]
    out: list[list[Any]] = []
    for label, name in rows:
        recs = dedupe(records.get(name, []))
        unparsed = sum(1 for r in recs if not r.get("answer"))
        figures = evidence_scores(recs, grid_dir / name if grid_dir else None, dataset_root) if extra else []
        out.append([label, *row_scores(recs, datasets), *figures, len(recs), unparsed, name])
    answered = {r["dataset"] for recs in records.values() for r in recs}
    note = (
        f"Accuracy (%): {table1_datasets(answered, datasets)[1]} Discrimination is balanced Anomaly Detection; "
        "unparseable is wrong."
    )
    if axis in ("references", "shots", "baseline"):
        note += " Reference modes change only the question types whose plan uses the Reference Extractor."
    if extra:
        note += (
            " Image AUROC, pixel AUROC, AUPRO: the evidence expert's, mean over categories (each cell's "
            "report.md has them per category); – where it did not run."
        )
    return Table(title, cols, out, note)


def grid_tables(grid_dir: str | Path, datasets: Sequence[str] | None = None) -> dict[str, Table]:
    """Every axis table of a grid folder, from the answers on disk (a partly run grid shows what it has)."""
    from services.evaluation.runner import load_run

    grid_dir = Path(grid_dir)
    axes, cells, rows = load_grid(grid_dir)
    runs = {c.name: load_run(grid_dir / c.name) for c in cells}
    records = {name: recs for name, (recs, _) in runs.items()}
    root = next((meta["dataset_path"] for _, meta in runs.values() if meta.get("dataset_path")), None)
    return {axis: axis_table(axis, rows[axis], records, datasets, grid_dir, root) for axis in axes}


def write_grid_report(grid_dir: str | Path, tables: dict[str, Table]) -> list[Path]:
    """ablation.md, one CSV per axis, and shots.png when the grid has the shots axis."""
    grid_dir = Path(grid_dir)
    md = ["# Echo-IAD ablations", ""] + [t.to_markdown() for t in tables.values()]
    paths = [grid_dir / "ablation.md"]
    paths[0].write_text("\n".join(md), encoding="utf-8")
    for axis, t in tables.items():
        p = grid_dir / f"ablation_{axis}.csv"
        t.write_csv(p)
        paths.append(p)
    if "shots" in tables:
        paths.append(shots_chart(tables["shots"], grid_dir / "shots.png"))
    return paths


def shots_chart(table: Table, path: Path) -> Path:
    """The paper's Fig. 6: accuracy per type (and the average) against the number of reference images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r[0]) for r in table.rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for col in [*(PAPER_HEADERS[t] for t in PAPER_TYPES), AVERAGE]:
        ys = [v if isinstance(v, float | int) else float("nan") for v in table.column(col)]
        ax.plot(labels, ys, marker="o", label=col, linewidth=2.5 if col == AVERAGE else 1.2)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel("reference images")
    ax.set_title("Accuracy against reference shots")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


async def run_grid(
    dataset: Any,
    grid_dir: str | Path,
    axes: list[str],
    opts: Any,
    *,
    address: str | None = None,
    settings: Any | None = None,
    start_embedded: Callable[[Any], Awaitable[Any]] | None = None,
    build_memory: bool = True,
    console: Any | None = None,
    datasets: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Table]:
    """Run every distinct cell of the chosen axes (resuming each), write each cell's report and the grid's tables."""
    from services.evaluation.report import report_run
    from services.evaluation.runner import evaluate

    grid_dir = Path(grid_dir)
    cells, rows = grid_cells(axes)
    save_grid(grid_dir, axes, cells, rows)
    await evaluate(
        dataset,
        [(c, grid_dir / c.name) for c in cells],
        opts,
        address=address,
        settings=settings,
        start_embedded=start_embedded,
        build_memory=build_memory,
        console=console,
        meta=meta,
    )
    for c in cells:
        report_run(grid_dir / c.name, write=True, chart=False, datasets=datasets)  # the grid draws its own figure
    tables = grid_tables(grid_dir, datasets)
    write_grid_report(grid_dir, tables)
    return tables
