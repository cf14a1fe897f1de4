"""Building the memory of normal images and the evidence banks from an MMAD-format dataset, in-process.

The images take the one ingest path (app/ingest.py: Inspector.add_normal_images over the
ingest stages served in this process), so the memory and the banks hold the same images. Resumable and
idempotent: images already there (same content hash, line, dataset and category) are skipped by both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.common.progress import progress_bar
from services.config import EchoSettings


@dataclass
class BuildRow:
    dataset: str
    category: str
    added: int = 0
    existing: int = 0
    in_memory: int = 0
    bank_images: int = 0  # in the product's evidence bank
    threshold: float = 0.0  # the bank's calibrated threshold


@dataclass
class BuildReport:
    line_id: str
    engine: str
    model_id: str
    dim: int
    total: int = 0
    rows: list[BuildRow] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(r.added for r in self.rows)

    @property
    def existing(self) -> int:
        return sum(r.existing for r in self.rows)


def build_memory(
    settings: EchoSettings, data: str | Path, *, line_id: str = "", batch_size: int = 32, progress: bool = True
) -> BuildReport:
    """Ingest the normal templates of every (dataset, category) of `data` into the memory and the evidence banks.

    Blocking; it runs its own event loop on a worker thread, so it may be called from inside a running one.
    """
    from services.mmad.loader import load_dataset

    line_id = line_id or settings.retrieval.default_line
    ds = load_dataset(data)
    templates = ds.templates()
    if not templates:
        raise FailedPrecondition(f"{data} lists no normal templates (similar_templates / random_templates)")
    groups: dict[tuple[str, str], list[Path]] = {}
    for dataset, category, rel in templates:
        groups.setdefault((dataset, category), []).append(ds.abspath(rel))
    ingest = _ingest(settings, groups, line_id, batch_size, progress)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memory-build") as pool:
        return pool.submit(asyncio.run, ingest).result()


async def _ingest(
    settings: EchoSettings, groups: dict[tuple[str, str], list[Path]], line_id: str, batch_size: int, progress: bool
) -> BuildReport:
    from app.ingest import ingest_inspector
    from services.common.stage_client import Deadline

    async with ingest_inspector(settings) as inspector:
        report = BuildReport(line_id, "", "", 0)
        with progress_bar("memory", sum(len(p) for p in groups.values()), enabled=progress) as advance:
            for (dataset, category), paths in groups.items():
                row = BuildRow(dataset, category)
                for start in range(0, len(paths), batch_size):
                    chunk = [p.read_bytes() for p in paths[start : start + batch_size]]
                    res = await inspector.add_normal_images(
                        line_id, dataset, category, chunk, Deadline.after_ms(settings.gateway.default_deadline_ms * 20)
                    )
                    row.added += res.added
                    row.existing += res.existing
                    if res.bank is not None:
                        row.bank_images, row.threshold = res.bank.images, res.bank.threshold
                    advance(len(chunk))
                report.rows.append(row)
        deadline = Deadline.after_ms(settings.gateway.default_deadline_ms)
        stats = await inspector.clients.stats(line_id, "", "", deadline)
        report.model_id = (await inspector.clients.embedding_info(deadline)).model_id
    totals = {(c.dataset, c.category): c.count for c in stats.counts}
    for row in report.rows:
        row.in_memory = totals.get((row.dataset, row.category), 0)
    report.total, report.engine, report.dim = stats.total, stats.engine, stats.dim
    return report
