"""The visual evidence expert's figures in a run's report: image AUROC, pixel AUROC and AUPRO per category.

They come from the answers' traces, so they exist only where the evidence expert ran (the product protocol,
or `--experts evidence=on`):

- image AUROC: `trace.evidence.score` of each image's Anomaly Detection answer against MMAD's ground truth
  (the image is anomalous), one score per image; beside it the verdict's balanced accuracy and false alarms
  (normal images judged anomalous) at the product's calibrated threshold.
- pixel AUROC and AUPRO (services/common/anomaly_metrics.py): the heat maps the run kept
  (RUN_DIR/heatmaps/, one per image, see runner.heatmap_questions), decoded with their scale, against the
  dataset's masks; a normal image's mask is empty, an anomalous image without a mask is left out, and a
  category whose anomalous images have no mask gets none.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.anomaly_metrics import aupro, auroc, pixel_auroc
from services.mmad.types import ANOMALY_DETECTION

PIXEL_MAX_SIDE = 256
"""Pixel metrics compare maps and masks at the query's size up to this side; larger images are resized to it
(map bilinear, mask nearest), as PatchCore and anomalib evaluate, so a 1024 px category fits in memory. The
synthetic set's images are 256 px: evaluated at their own size."""


@dataclass
class EvidenceFigures:
    """One category's (or the mean's) evidence figures; metrics are fractions (0..1), None when undefined."""

    dataset: str
    category: str
    images: int = 0
    anomalous: int = 0
    image_auroc: float | None = None
    balanced_accuracy: float | None = None
    false_alarm: float | None = None
    heatmaps: int = 0
    pixel_auroc: float | None = None
    aupro: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class EvidenceReport:
    """Per (dataset, category) figures and their unweighted mean; `ran` is False when no trace had evidence."""

    categories: list[EvidenceFigures] = field(default_factory=list)
    mean: EvidenceFigures | None = None
    answers_with_evidence: int = 0
    backbones: list[str] = field(default_factory=list)
    degraded: int = 0  # answers whose trace says the evidence expert failed (e.g. no bank for the category)
    degraded_reason: str = ""

    @property
    def ran(self) -> bool:
        return self.answers_with_evidence > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "answers_with_evidence": self.answers_with_evidence,
            "backbones": self.backbones,
            "degraded": self.degraded,
            "categories": [c.to_dict() for c in self.categories],
            "mean": self.mean.to_dict() if self.mean else None,
        }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def image_key(record: dict[str, Any]) -> str:
    """The record's image (dataset-relative path); older records only carry it in their id."""
    return record.get("image") or str(record["id"]).rsplit("#", 1)[0]


def evidence_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The trace's evidence (MessageToDict form: defaults omitted), or None when the expert did not run."""
    ev = (record.get("trace") or {}).get("evidence")
    return ev if isinstance(ev, dict) else None


def load_heatmap(path: Path, scale: float) -> np.ndarray:
    """A HeatMap PNG back to scores: pixel value v means v / 255 * scale (the contract's fixed scale)."""
    from PIL import Image

    with Image.open(path) as img:
        v = np.asarray(img.convert("L"), dtype=np.float32)
    return v / 255.0 * float(scale)


def load_mask(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """The ground-truth mask as bool at `size` (width, height); None (a normal image) is all False.

    Any non-zero pixel is defect: MVTec's masks are 0/255, VisA's hold small class numbers.
    """
    from PIL import Image

    if path is None:
        return np.zeros((size[1], size[0]), dtype=bool)
    with Image.open(path) as img:
        m = img.convert("L")
        if m.size != size:
            m = m.resize(size, Image.NEAREST)
        return np.asarray(m) > 0


def _eval_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    side = max(width, height)
    if side <= max_side:
        return width, height
    return max(1, round(width * max_side / side)), max(1, round(height * max_side / side))


def _map_at(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if (scores.shape[1], scores.shape[0]) == size:
        return scores
    return np.asarray(Image.fromarray(scores, mode="F").resize(size, Image.BILINEAR), dtype=np.float32)


def _verdict_figures(items: Sequence[tuple[bool, float, bool]]) -> tuple[float | None, float | None, float | None]:
    """(image AUROC, balanced accuracy, false-alarm rate) from (anomalous truth, score, anomalous verdict)."""
    truth = [t for t, _, _ in items]
    score = auroc(truth, [s for _, s, _ in items]) if items else float("nan")
    normal = [v for t, _, v in items if not t]
    anom = [v for t, _, v in items if t]
    false_alarm = sum(normal) / len(normal) if normal else None
    hit = sum(anom) / len(anom) if anom else None
    balanced = (hit + 1.0 - false_alarm) / 2 if hit is not None and false_alarm is not None else None
    return _finite(score), balanced, false_alarm


def _pixel_figures(
    items: Sequence[tuple[Path, float, Path | None]], max_side: int
) -> tuple[int, float | None, float | None]:
    """(heat maps used, pixel AUROC, AUPRO) from (heat map, scale, mask or None for a normal image)."""
    maps, masks = [], []
    for heat, scale, mask in items:
        scores = load_heatmap(heat, scale)
        size = _eval_size(scores.shape[1], scores.shape[0], max_side)
        maps.append(_map_at(scores, size))
        masks.append(load_mask(mask, size))
    if not any(m.any() for m in masks):
        return len(maps), None, None
    return len(maps), _finite(pixel_auroc(masks, maps)), _finite(aupro(masks, maps))


def evidence_report(
    records: Iterable[dict[str, Any]],
    run_dir: str | Path | None = None,
    dataset_root: str | Path | None = None,
    *,
    max_side: int = PIXEL_MAX_SIDE,
) -> EvidenceReport:
    """The evidence figures of a run's records (see the module doc).

    Args:
        records: answers.jsonl records (deduplicated by the caller).
        run_dir: the run folder the records' `heatmap` paths are relative to; None: no pixel metrics.
        dataset_root: the dataset folder the records' `mask` paths are relative to; None: no pixel metrics.
        max_side: see PIXEL_MAX_SIDE.
    """
    verdicts: dict[tuple[str, str], dict[str, tuple[bool, float, bool]]] = defaultdict(dict)
    heat: dict[tuple[str, str], dict[str, tuple[Path, float, Path | None]]] = defaultdict(dict)
    rep = EvidenceReport()
    backbones: set[str] = set()
    for r in records:
        ev = evidence_of(r)
        failed = [d for d in (r.get("trace") or {}).get("degraded") or [] if d.startswith("evidence")]
        if failed:
            rep.degraded += 1
            rep.degraded_reason = rep.degraded_reason or failed[0]
        if ev is None:
            continue
        rep.answers_with_evidence += 1
        backbones.add(ev.get("backbone_id", ""))
        key = (r["dataset"], r["category"])
        img = image_key(r)
        anomalous = not r["is_normal"]
        if r["type"] == ANOMALY_DETECTION and img not in verdicts[key]:
            verdicts[key][img] = (anomalous, float(ev.get("score", 0.0)), bool(ev.get("anomalous", False)))
        if r.get("heatmap") and run_dir is not None and dataset_root is not None and img not in heat[key]:
            mask = r.get("mask")
            if anomalous and not mask:
                continue
            scale = float((ev.get("heatmap") or {}).get("scale", 0.0))
            heat[key][img] = (Path(run_dir) / r["heatmap"], scale, Path(dataset_root) / mask if mask else None)
    rep.backbones = sorted(b for b in backbones if b)
    for key in sorted(set(verdicts) | set(heat)):
        items = list(verdicts[key].values())
        fig = EvidenceFigures(*key, images=len(items), anomalous=sum(t for t, _, _ in items))
        fig.image_auroc, fig.balanced_accuracy, fig.false_alarm = _verdict_figures(items)
        if heat[key]:
            fig.heatmaps, fig.pixel_auroc, fig.aupro = _pixel_figures(list(heat[key].values()), max_side)
        rep.categories.append(fig)
    if rep.categories:
        rep.mean = _mean_figures(rep.categories)
    return rep


def _mean_figures(rows: Sequence[EvidenceFigures]) -> EvidenceFigures:
    def mean(name: str) -> float | None:
        vals = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        return sum(vals) / len(vals) if vals else None

    return EvidenceFigures(
        "Average",
        "",
        images=sum(r.images for r in rows),
        anomalous=sum(r.anomalous for r in rows),
        image_auroc=mean("image_auroc"),
        balanced_accuracy=mean("balanced_accuracy"),
        false_alarm=mean("false_alarm"),
        heatmaps=sum(r.heatmaps for r in rows),
        pixel_auroc=mean("pixel_auroc"),
        aupro=mean("aupro"),
    )


def pct(x: float | None) -> float | None:
    """A fraction as %, None kept."""
    return None if x is None else 100.0 * x


def evidence_line(rep: EvidenceReport) -> str:
    """The report header's one line on the evidence expert: what it scored, or that it did not run (and why)."""
    failed = f"; it failed on {rep.degraded} answers ({rep.degraded_reason})" if rep.degraded else ""
    if not rep.ran and rep.degraded:
        return f"visual evidence: asked for but never ran{failed}"
    if not rep.ran:
        return (
            "visual evidence: did not run in this run (no trace carries it: the paper protocol leaves it off; "
            "--protocol product or --experts evidence=on turns it on), so no image AUROC, pixel AUROC or AUPRO"
        )
    m = rep.mean
    figures = ""
    if m is not None:
        figures = f": mean image AUROC {_fmt(m.image_auroc)}, pixel AUROC {_fmt(m.pixel_auroc)}, AUPRO {_fmt(m.aupro)}"
    return f"visual evidence: ran on {rep.answers_with_evidence} answers{figures}{failed}"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"
