"""The report's evidence figures (image AUROC, pixel AUROC, AUPRO per category) from constructed traces.

The traces are built the way the runner stores them (MessageToDict of Trace.evidence, the heat map moved to
RUN_DIR/heatmaps/), the masks the way MMAD-format data keeps them; expected figures come from the same
metric functions over the same decoded arrays, and from cases whose answer is known by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evalkit import records_for
from google.protobuf.json_format import MessageToDict
from PIL import Image

from echo.v1 import common_pb2, inspector_pb2
from services.common.anomaly_metrics import aupro, pixel_auroc
from services.evaluation.evidence_report import evidence_report, load_heatmap
from services.evaluation.report import build_report, header_lines, write_report
from services.evaluation.runner import heatmap_questions, keep_heatmap
from services.mmad.loader import MMADDataset
from services.mmad.types import ANOMALY_DETECTION, DEFECT_LOCALIZATION

SCALE = 0.6  # twice a threshold of 0.3
SIZE = 32


def _png(values: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(values.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _square(x0: int, y0: int, side: int, size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def _heat(hot: np.ndarray | None) -> np.ndarray:
    v = np.full((SIZE, SIZE), 20, dtype=np.uint8)
    if hot is not None:
        v[hot] = 200
    return v


def _trace(score: float, anomalous: bool, heat: np.ndarray | None = None) -> dict[str, Any]:
    ev = common_pb2.TraceEvidence(score=score, threshold=SCALE / 2, anomalous=anomalous, backbone_id="lite0")
    if heat is not None:
        ev.heatmap.CopyFrom(common_pb2.HeatMap(png=b"", width=SIZE, height=SIZE, scale=SCALE))
    return MessageToDict(common_pb2.Trace(evidence=ev), preserving_proto_field_name=True)


class Run:
    """A run folder and a dataset folder built record by record."""

    def __init__(self, tmp: Path) -> None:
        self.run_dir = tmp / "run"
        self.root = tmp / "data"
        self.records: list[dict[str, Any]] = []

    def image(
        self,
        category: str,
        name: str,
        *,
        score: float,
        verdict: bool,
        mask: np.ndarray | None = None,
        anomalous: bool | None = None,
        heat: np.ndarray | None = None,
        mask_size: int = SIZE,
        qtype: str = ANOMALY_DETECTION,
    ) -> None:
        image = f"Synthetic/{category}/image/{name}.png"
        rec: dict[str, Any] = {
            "id": f"{image}#0",
            "dataset": "Synthetic",
            "category": category,
            "type": qtype,
            "gold": "A",
            "answer": "A",
            "is_normal": not (mask is not None if anomalous is None else anomalous),
            "image": image,
            "mask": None,
            "trace": _trace(score, verdict, heat),
        }
        if mask is not None:
            rel = f"Synthetic/{category}/ground_truth/{name}_mask.png"
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            m = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
            m.resize((mask_size, mask_size), Image.NEAREST).save(self.root / rel)
            rec["mask"] = rel
        if heat is not None:
            rec["heatmap"] = f"heatmaps/{category}__{name}.png"
            (self.run_dir / "heatmaps").mkdir(parents=True, exist_ok=True)
            (self.run_dir / rec["heatmap"]).write_bytes(_png(heat))
        self.records.append(rec)


def test_image_auroc_verdict_and_false_alarms_per_category_from_the_ad_answers(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.image("a", "n0", score=0.1, verdict=False, anomalous=False)
    run.image("a", "n1", score=0.2, verdict=True, anomalous=False)  # a false alarm
    run.image("a", "d0", score=0.5, verdict=True, anomalous=True)
    run.image("a", "d1", score=0.15, verdict=False, anomalous=True)  # ranked below n1: 3 of 4 pairs right
    run.image("a", "d1", score=0.99, verdict=True, anomalous=True, qtype=DEFECT_LOCALIZATION)  # not AD: ignored
    run.image("b", "n0", score=0.1, verdict=False, anomalous=False)
    run.image("b", "d0", score=0.9, verdict=True, anomalous=True)
    run.records.append({**run.records[0], "id": "x#9", "image": "x", "trace": {"experts_used": ["decision"]}})
    rep = evidence_report(run.records)
    assert rep.ran and rep.answers_with_evidence == 7 and rep.backbones == ["lite0"]
    a, b = rep.categories
    assert (a.category, a.images, a.anomalous) == ("a", 4, 2)
    assert a.image_auroc == pytest.approx(0.75)
    assert a.balanced_accuracy == pytest.approx(0.5)  # half the anomalies found, half the normals flagged
    assert a.false_alarm == pytest.approx(0.5)
    assert b.image_auroc == 1.0 and b.balanced_accuracy == 1.0 and b.false_alarm == 0.0
    assert rep.mean is not None and rep.mean.image_auroc == pytest.approx(0.875)
    assert a.pixel_auroc is None and a.aupro is None  # no heat maps kept


def test_pixel_auroc_and_aupro_from_the_heat_maps_against_the_masks(tmp_path: Path) -> None:
    run = Run(tmp_path)
    hit = _square(2, 2, 8)
    missed = _square(20, 20, 6)
    run.image("a", "n0", score=0.1, verdict=False, anomalous=False, heat=_heat(None))
    run.image("a", "d0", score=0.5, verdict=True, mask=hit, heat=_heat(hit), mask_size=64)  # mask at 2x: resized
    run.image("a", "d1", score=0.4, verdict=True, mask=missed, heat=_heat(_square(0, 24, 6)))
    run.image("b", "n0", score=0.1, verdict=False, anomalous=False, heat=_heat(None))
    run.image("b", "d0", score=0.5, verdict=True, mask=hit, heat=_heat(hit))
    run.image("c", "d0", score=0.5, verdict=True, anomalous=True, heat=_heat(hit))  # no mask: no pixel figures
    run.image("c", "n0", score=0.1, verdict=False, anomalous=False, heat=_heat(None))
    rep = evidence_report(run.records, run.run_dir, run.root)
    a, b, c = rep.categories
    maps = [_heat(None), _heat(hit), _heat(_square(0, 24, 6))]
    decoded = [m.astype(np.float32) / 255 * SCALE for m in maps]
    masks = [np.zeros((SIZE, SIZE), bool), hit, missed]
    assert a.heatmaps == 3
    assert a.pixel_auroc == pytest.approx(pixel_auroc(masks, decoded))
    assert a.aupro == pytest.approx(aupro(masks, decoded))
    assert 0.5 < a.pixel_auroc < 1.0 and a.aupro < 0.75  # one region found, one missed
    assert b.pixel_auroc == pytest.approx(1.0) and b.aupro == pytest.approx(1.0)  # the heat map is the mask
    assert c.pixel_auroc is None and c.aupro is None and c.image_auroc == 1.0
    got = load_heatmap(run.run_dir / run.records[1]["heatmap"], SCALE)
    assert got.max() == pytest.approx(200 / 255 * SCALE) and got.shape == (SIZE, SIZE)


def test_a_large_query_is_compared_at_the_capped_size(tmp_path: Path) -> None:
    run = Run(tmp_path)
    big = 512
    mask = np.zeros((big, big), bool)
    mask[100:200, 300:420] = True
    heat = np.where(mask, 220, 10).astype(np.uint8)
    run.image("a", "n0", score=0.1, verdict=False, anomalous=False, heat=np.full((big, big), 10, np.uint8))
    run.image("a", "d0", score=0.5, verdict=True, mask=mask, heat=heat, mask_size=big)
    rep = evidence_report(run.records, run.run_dir, run.root, max_side=128)
    assert rep.categories[0].pixel_auroc == pytest.approx(1.0)


def test_the_run_report_shows_the_evidence_only_where_it_ran(small_dataset: MMADDataset, tmp_path: Path) -> None:
    run = Run(tmp_path)
    hit = _square(4, 4, 10)
    run.image("a", "n0", score=0.1, verdict=False, anomalous=False, heat=_heat(None))
    run.image("a", "d0", score=0.5, verdict=True, mask=hit, heat=_heat(hit))
    rep = build_report(run.records, {"dataset_path": str(run.root)}, run_dir=run.run_dir)
    table = rep.tables["evidence"]
    assert table.columns[:2] == ["Dataset", "Category"]
    assert {"Image AUROC", "Pixel AUROC", "AUPRO", "Verdict bal. acc.", "False alarms"} <= set(table.columns)
    row = table.row("Synthetic")
    assert row[table.columns.index("Image AUROC")] == pytest.approx(100.0)
    assert row[table.columns.index("Pixel AUROC")] == pytest.approx(100.0)
    assert table.row("Average")[table.columns.index("AUPRO")] == pytest.approx(100.0)
    said = "visual evidence: ran on 2 answers: mean image AUROC 100.0%"
    assert any(line.startswith(said) for line in header_lines(rep))
    paths = write_report(rep, run.run_dir, chart=False)
    assert run.run_dir / "evidence.csv" in paths
    summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["evidence"]["mean"]["pixel_auroc"] == pytest.approx(1.0)
    assert "Visual evidence" in (run.run_dir / "report.md").read_text(encoding="utf-8")

    plain = build_report(records_for(small_dataset, lambda s, q: q.answer))
    assert "evidence" not in plain.tables and plain.summary()["evidence"] is None
    assert any("visual evidence: did not run" in line for line in header_lines(plain))
    failed = records_for(small_dataset, lambda s, q: q.answer)
    failed[0]["trace"]["degraded"] = ["evidence: FAILED_PRECONDITION no evidence bank for Synthetic/round_part"]
    said = [line for line in header_lines(build_report(failed)) if line.startswith("visual evidence")]
    assert said == [
        "visual evidence: asked for but never ran; it failed on 1 answers "
        "(evidence: FAILED_PRECONDITION no evidence bank for Synthetic/round_part)"
    ]


def test_one_question_per_image_asks_for_the_heat_map_and_the_run_keeps_it_as_a_file(
    small_dataset: MMADDataset, tmp_path: Path
) -> None:
    ids = heatmap_questions(small_dataset)
    assert len(ids) == len(small_dataset.samples)
    by_id = {q.id: q for _, q in small_dataset.questions()}
    assert {by_id[i].type for i in ids} == {ANOMALY_DETECTION}
    sample = small_dataset.samples[0]
    resp = inspector_pb2.InspectResponse()
    resp.trace.evidence.score = 0.4
    resp.trace.evidence.heatmap.CopyFrom(common_pb2.HeatMap(png=_png(_heat(None)), width=SIZE, height=SIZE, scale=1))
    resp.trace.evidence.overlay_png = b"overlay"
    rel = keep_heatmap(tmp_path, sample, resp)
    assert rel is not None and rel.startswith("heatmaps/") and "/" not in rel.removeprefix("heatmaps/")
    assert (tmp_path / rel).read_bytes() == _png(_heat(None))
    assert not resp.trace.evidence.heatmap.png and not resp.trace.evidence.overlay_png  # not in answers.jsonl
    assert resp.trace.evidence.heatmap.scale == 1 and resp.trace.evidence.score == pytest.approx(0.4)
    assert keep_heatmap(tmp_path, sample, inspector_pb2.InspectResponse()) is None


def test_eval_runs_the_paper_protocol_without_evidence_unless_product_is_asked_for(
    small_data: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from app.commands.evaluation import EvalOptions, _settings

    assert EvalOptions().protocol == "paper"
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    paper = _settings(config, None, small_data).gateway.expert_map
    product = _settings(config, None, small_data, "product").gateway.expert_map
    assert not any("evidence" in experts for experts in paper.values())
    assert "evidence" in product[ANOMALY_DETECTION] and "evidence" in product[DEFECT_LOCALIZATION]
    out = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "300"}).output
    help_text = " ".join(out.replace("│", " ").split())
    assert "paper (the default here)" in help_text and "no visual evidence expert" in help_text
    assert "--protocol product" in help_text and "image AUROC, pixel AUROC and AUPRO" in help_text
