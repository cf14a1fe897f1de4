"""`echo-iad data synth` then `echo-iad data summary`: counts per type and category, and a contact sheet."""

from __future__ import annotations

from pathlib import Path

from mmad_fixtures import write_real_layout
from PIL import Image
from typer.testing import CliRunner

from app.cli import app

runner = CliRunner()


def test_synth_then_summary_prints_counts_and_writes_a_contact_sheet(tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ["data", "synth", "--out", str(out), "--seed", "0", "--categories", "screw,round_part"]
    res = runner.invoke(app, [*args, "--per-category", "10", "--templates-per-category", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "mmad.json").is_file() and (out / "contact_sheet.png").is_file()
    assert "wrote 20 query images" in res.output

    sheet = tmp_path / "sheet.png"
    res = runner.invoke(app, ["data", "summary", str(out), "--contact-sheet", str(sheet)])
    assert res.exit_code == 0, res.output
    for text in ("Anomaly Detection", "Object Analysis", "screw", "round_part", "contact sheet (6 defects"):
        assert text in res.output
    with Image.open(sheet) as im:
        assert im.width >= 6 * 100 and im.height >= 2 * 100


def test_summary_of_the_real_layout_reports_unknown_types(tmp_path: Path) -> None:
    from mmad_fixtures import real_layout_entries

    entries = real_layout_entries()
    entries["VisA/candle/test/bad/002.JPG"]["conversation"][0]["type"] = "Gloss"
    root = write_real_layout(tmp_path / "MMAD", entries)
    res = runner.invoke(app, ["data", "summary", str(root)])
    assert res.exit_code == 0, res.output
    assert "unknown: Gloss" in res.output and "DS-MVTec" in res.output
    assert (root / "contact_sheet.png").is_file()


def test_summary_of_a_broken_folder_exits_2_naming_the_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "summary", str(tmp_path)])
    assert res.exit_code == 2
    assert "mmad.json" in res.output and "Traceback" not in res.output


def test_synth_with_an_unknown_category_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--categories", "teapot"])
    assert res.exit_code != 0 and "teapot" in res.output
