"""Building the memory of normal images from an MMAD-format dataset, in-process (no server needed).

Resumable and idempotent: images already in the memory (same content hash, line,
dataset and category) are skipped by the memory itself without a second write.
"""

from __future__ import annotations

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
    """Ingest the normal templates of every (dataset, category) of `data`: store pixels, embed, index."""
    from services.embedding.core import ClipEncoder
    from services.mmad.loader import load_dataset
    from services.retrieval.server import open_memory

    line_id = line_id or settings.retrieval.default_line
    ds = load_dataset(data)
    templates = ds.templates()
    if not templates:
        raise FailedPrecondition(f"{data} lists no normal templates (similar_templates / random_templates)")
    encoder = ClipEncoder.from_settings(settings.embedding)
    memory = open_memory(settings, encoder.embed_batch)
    groups: dict[tuple[str, str], list[str]] = {}
    for dataset, category, rel in templates:
        groups.setdefault((dataset, category), []).append(rel)
    report = BuildReport(line_id, memory.store.engine, encoder.model_id, memory.dim)
    try:
        with progress_bar("memory", len(templates), enabled=progress) as advance:
            for (dataset, category), rels in groups.items():
                row = BuildRow(dataset, category)
                for start in range(0, len(rels), batch_size):
                    chunk = rels[start : start + batch_size]
                    res = memory.add_images(line_id, dataset, category, [ds.abspath(r).read_bytes() for r in chunk])
                    row.added += res.added
                    row.existing += res.existing
                    advance(len(chunk))
                report.rows.append(row)
        stats = memory.stats(line_id)
    finally:
        memory.close()
    totals = {(c.dataset, c.category): c.count for c in stats.counts}
    for row in report.rows:
        row.in_memory = totals.get((row.dataset, row.category), 0)
    report.total = stats.total
    return report
