"""Report layouts from answers: Table 1 (paper), MMAD's seven types with overkill/miss, per category, latency, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from evalkit import records_for

from services.evaluation.report import PAPER_HEADERS, PAPER_TYPES, build_report, write_report
from services.mmad.loader import MMADDataset
from services.mmad.types import ANOMALY_DETECTION, DEFECT_LOCALIZATION, QUESTION_TYPES


def _other(q) -> str:  # type: ignore[no-untyped-def]
    return next(k for k in q.options if k != q.answer)


def _scripted(dataset: MMADDataset) -> list[dict]:
    """Right everywhere except: one normal AD answered 'defect', one anomalous AD unparseable, every DL wrong."""
    state = {"normal": 0, "anomalous": 0}

    def answer(s, q) -> str:  # type: ignore[no-untyped-def]
        if q.type == ANOMALY_DETECTION:
            kind = "normal" if s.is_normal else "anomalous"
            state[kind] += 1
            if state[kind] == 1:
                return _other(q) if s.is_normal else ""
        if q.type == DEFECT_LOCALIZATION:
            return _other(q)
        return q.answer

    return records_for(dataset, answer)


def test_table1_has_the_paper_layout_and_balanced_discrimination(small_dataset: MMADDataset) -> None:
    rep = build_report(_scripted(small_dataset))
    t1 = rep.tables["table1"]
    assert t1.columns == [
        "Dataset",
        "Discrimination",
        "Classification",
        "Localization",
        "Description",
        "Analysis",
        "Average",
    ]
    assert [r[0] for r in t1.rows] == ["Synthetic", "Average"]
    # normals 3/4 right, anomalous 3/4 right (the unparseable one counts wrong): balanced 75
    assert t1.row("Synthetic")[1:] == [pytest.approx(v) for v in (75.0, 100.0, 0.0, 100.0, 100.0, 75.0)]
    assert t1.row("Average")[1:] == t1.row("Synthetic")[1:]
    # MMAD's scripts drop the unparseable answer: AD becomes (75 + 100) / 2
    assert rep.paper.dropped.headline == pytest.approx((87.5 + 100 + 0 + 100 + 100) / 5)
    assert "77.50" in t1.note


def test_mmad_table_has_seven_types_with_overkill_and_miss(small_dataset: MMADDataset) -> None:
    rep = build_report(_scripted(small_dataset))
    mm = rep.tables["mmad"]
    assert mm.columns[1:8] == list(QUESTION_TYPES)
    assert mm.columns[8:] == ["Average", "AD overkill %", "AD miss %", "Unparseable"]
    row = mm.row("Synthetic")
    assert row[8] == pytest.approx((75 + 100 + 0 + 100 + 100 + 100 + 100) / 7)
    # overkill: 1 of 4 normals called defective; miss: no anomalous image called normal (the unparseable is neither)
    assert row[9] == pytest.approx(25.0) and row[10] == pytest.approx(0.0) and row[11] == 1


def test_per_category_rows_and_counts(small_dataset: MMADDataset) -> None:
    rep = build_report(_scripted(small_dataset))
    cat = rep.tables["per_category"]
    assert [(r[0], r[1]) for r in cat.rows] == [("Synthetic", "round_part"), ("Synthetic", "screw")]
    assert sum(r[-1] for r in cat.rows) == len(rep.records) == 40  # type: ignore[misc]
    assert cat.column(DEFECT_LOCALIZATION) == [0.0, 0.0]


def test_datasets_are_rows_and_average_is_their_unweighted_mean(small_dataset: MMADDataset) -> None:
    good = records_for(small_dataset, lambda s, q: q.answer, dataset_name="DS-MVTec")
    bad = records_for(small_dataset, lambda s, q: _other(q), dataset_name="VisA")
    t1 = build_report(good + bad).tables["table1"]
    assert [r[0] for r in t1.rows] == ["DS-MVTec", "VisA", "Average"]
    assert t1.row("DS-MVTec")[1:] == [100.0] * 6
    assert t1.row("VisA")[1:] == [0.0] * 6
    assert t1.row("Average")[1:] == [50.0] * 6


def test_table1_averages_mvtec_ad_and_visa_only_unless_told(small_dataset: MMADDataset) -> None:
    """The paper's Table 1 reports MVTec-AD (MMAD's DS-MVTec) and VisA; the seven-type table covers every dataset."""
    good = records_for(small_dataset, lambda s, q: q.answer, dataset_name="DS-MVTec")
    bad = records_for(small_dataset, lambda s, q: _other(q), dataset_name="VisA")
    loco = records_for(small_dataset, lambda s, q: q.answer, dataset_name="MVTec-LOCO")
    rep = build_report(good + bad + loco)
    assert [r[0] for r in rep.tables["table1"].rows] == ["DS-MVTec", "VisA", "Average"]
    assert rep.tables["table1"].row("Average")[-1] == 50.0 and rep.headline() == 50.0
    assert [r[0] for r in rep.tables["mmad"].rows] == ["DS-MVTec", "VisA", "MVTec-LOCO", "Average"]
    assert "the paper's datasets: DS-MVTec, VisA" in rep.meta["table1_note"]
    everything = build_report(good + bad + loco, datasets=["all"]).tables["table1"]
    assert [r[0] for r in everything.rows] == ["DS-MVTec", "VisA", "MVTec-LOCO", "Average"]
    chosen = build_report(good + bad + loco, datasets=["MVTec-AD", "MVTec-LOCO"])  # MVTec-AD names DS-MVTec
    assert [r[0] for r in chosen.tables["table1"].rows] == ["DS-MVTec", "MVTec-LOCO", "Average"]
    # without the paper's datasets (the synthetic set), Table 1 averages what was answered and says so
    synthetic = build_report(records_for(small_dataset, lambda s, q: q.answer))
    assert [r[0] for r in synthetic.tables["table1"].rows] == ["Synthetic", "Average"]
    assert "were not answered" in synthetic.meta["table1_note"]


def test_the_report_says_per_category_where_knowledge_was_missing(small_dataset: MMADDataset) -> None:
    recs = records_for(small_dataset, lambda s, q: q.answer)
    for r in recs:
        if r["type"] == "Defect Classification":
            had = r["category"] == "round_part"
            r["trace"] |= {"knowledge_mode": "CONTEXT_SPECIFIC", "experts_used": ["knowledge"] if had else []}
            if not had:
                r["trace"]["degraded"] = ["knowledge: knowledge stage: NOT_FOUND: unknown category 'screw'"]
    rep = build_report(recs)
    table = rep.tables["knowledge"]
    asked = sum(1 for r in recs if r["type"] == "Defect Classification" and r["category"] == "screw")
    assert table.rows == [
        ["Synthetic", "screw", asked, asked, "knowledge: knowledge stage: NOT_FOUND: unknown category 'screw'"]
    ]
    assert "knowledge" not in build_report(records_for(small_dataset, lambda s, q: q.answer)).tables


def test_latency_and_throughput_from_the_answers(small_dataset: MMADDataset) -> None:
    rep = build_report(records_for(small_dataset, lambda s, q: q.answer))
    lat = rep.tables["latency"]
    e2e = lat.row("end_to_end")
    assert e2e[1] == 40 and e2e[2] == pytest.approx(29.5)  # latencies 10..49 ms
    assert lat.row("total")[2] == pytest.approx(24.5)
    assert "10.00 answers/s" in lat.note  # 40 answers over 4 s of session


def test_files_are_written_md_csv_per_category_chart(small_dataset: MMADDataset, tmp_path: Path) -> None:
    rep = build_report(_scripted(small_dataset), {"questions": 40, "dataset_path": "x", "cell": {"name": "full"}})
    paths = write_report(rep, tmp_path)
    names = {p.name for p in paths}
    assert names == {"report.md", "report.csv", "per_category.csv", "latency.csv", "summary.json", "chart.png"}
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "### Table 1" in md and "| Dataset | " + " | ".join(PAPER_HEADERS[t] for t in PAPER_TYPES) in md
    rows = list(csv.DictReader((tmp_path / "report.csv").open(encoding="utf-8")))
    ad = next(r for r in rows if r["type"] == ANOMALY_DETECTION)
    assert float(ad["accuracy"]) == 75.0 and float(ad["accuracy_dropped"]) == 87.5
    assert float(ad["overkill_pct"]) == 25.0 and float(ad["miss_pct"]) == 0.0
    dc = next(r for r in rows if r["type"] == "Defect Classification")
    assert float(dc["ci95_low"]) < 100.0 == float(dc["accuracy"])
    per_cat = list(csv.DictReader((tmp_path / "per_category.csv").open(encoding="utf-8")))
    assert len(per_cat) == 2 * 7
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["answered"] == 40 and summary["paper_average"] == pytest.approx(75.0)


def test_an_incomplete_run_says_so(small_dataset: MMADDataset) -> None:
    from services.evaluation.report import header_lines

    rep = build_report(records_for(small_dataset, lambda s, q: q.answer)[:10], {"questions": 40})
    assert any(line.startswith("INCOMPLETE: 30 questions unanswered") for line in header_lines(rep))


def test_planned_types_agreement_is_reported(small_dataset: MMADDataset) -> None:
    from services.evaluation.report import header_lines

    records = records_for(small_dataset, lambda s, q: q.answer)
    for i, r in enumerate(records):  # the planner got every fourth question's type wrong
        r["trace"]["question_type"] = "OBJECT_ANALYSIS" if i % 4 == 0 else r["type"].upper().replace(" ", "_")
    expected = 100 * sum(1 for i, r in enumerate(records) if i % 4 or r["type"] == "Object Analysis") / 40
    lines = header_lines(build_report(records, {"options": {"plan_types": True}}))
    assert f"question types planned by the gateway: {expected:.2f}% agree with the dataset's types" in lines


def test_report_cli_prints_and_rewrites_from_the_answers_on_disk(small_dataset: MMADDataset, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from services.evaluation.answers import AnswerLog

    with AnswerLog.open(tmp_path / "run") as log:
        for r in _scripted(small_dataset):
            log.append(r)
    res = CliRunner().invoke(app, ["eval", "report", str(tmp_path / "run"), "--no-show-categories"])
    assert res.exit_code == 0, res.output
    assert "Table 1" in res.output and "Discrimination" in res.output and "Per category" not in res.output
    assert (tmp_path / "run" / "report.md").exists() and (tmp_path / "run" / "chart.png").exists()
    res = CliRunner().invoke(app, ["eval", "report", str(tmp_path)])
    flat = " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box
    assert res.exit_code == 2 and "no answers.jsonl or grid.json here" in flat
