"""`echo-iad eval ablate`: one command runs the grid and prints the paper's Tables 1-4, Fig. 5 and Fig. 6."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit import ServerThread
from typer.testing import CliRunner

from services.evaluation.ablation import grid_tables
from services.evaluation.cells import AXES


def test_ablation_grid_runs_every_cell_and_prints_the_paper_tables(
    random_server: ServerThread, small_data: Path, tmp_path: Path
) -> None:
    from app.cli import app

    grid = tmp_path / "grid"
    args = ["eval", "ablate", "--data", str(small_data), "--server", random_server.address, "--out", str(grid)]
    args += ["--limit", "8", "-j", "4"]  # every axis (the default grid)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    for axis, (title, cells) in AXES.items():
        assert title in res.output, axis
        for c in cells:
            assert c.label in res.output
    cell_dirs = sorted(p.name for p in grid.iterdir() if p.is_dir())
    assert len(cell_dirs) == 15 and "full" in cell_dirs and "format_mc" not in cell_dirs
    for name in cell_dirs:
        lines = (grid / name / "answers.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 8 and {json.loads(x)["cell"] for x in lines} == {name}
        assert (grid / name / "report.md").exists()
    tables = grid_tables(grid)
    t2 = tables["experts"]
    assert t2.columns == [
        "Setting",
        "Discrimination",
        "Classification",
        "Localization",
        "Description",
        "Analysis",
        "Average",
        "Answered",
        "Unparseable",
        "Cell",
    ]
    assert [r[0] for r in t2.rows] == ["w/o REr", "w/o KG", "w/o REx", "w/o all", "Echo"]
    ev = tables["evidence"]
    assert ev.columns[7:10] == ["Image AUROC", "Pixel AUROC", "AUPRO"]
    assert [r[0] for r in ev.rows] == ["w/o VE", "with VE"]
    assert ev.row("w/o VE")[7:10] == [None, None, None]  # the expert did not run: no figures
    # the switch reached the server: forced on, the evidence ran on every question (and its heat maps were kept)
    ve_on = [json.loads(x) for x in (grid / "evidence_on" / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all("evidence" in r["trace"]["experts_used"] and r["trace"]["evidence"]["threshold"] > 0 for r in ve_on)
    assert {r["heatmap"] for r in ve_on if "heatmap" in r} == {
        f"heatmaps/{p.name}" for p in (grid / "evidence_on" / "heatmaps").iterdir()
    }
    ve_off = [json.loads(x) for x in (grid / "evidence_off" / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert not any("evidence" in r["trace"] for r in ve_off)
    assert tables["shots"].row("1-shot*")[1:] == t2.row("Echo")[1:]  # the same cell
    assert tables["references"].row("1-shot*")[1:] == t2.row("Echo")[1:]
    # the baseline ran MMAD's 1-shot protocol: the dataset's random template as the one reference, no other expert
    baseline = [json.loads(x) for x in (grid / "baseline" / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["trace"]["experts_used"] == ["reference", "decision"] for r in baseline)
    assert all([x["id"] for x in r["trace"]["references"]] == ["request:0"] for r in baseline)
    # the settings reached the server: w/o all used no expert but the decision maker
    wo_all = [json.loads(x) for x in (grid / "wo_all" / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["trace"]["experts_used"] == ["decision"] for r in wo_all)
    k3 = [json.loads(x) for x in (grid / "shots_3" / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any(len(r["trace"].get("references", [])) == 3 for r in k3)
    assert {p.name for p in grid.iterdir()} >= {"grid.json", "ablation.md", "ablation_shots.csv", "shots.png"}
    # rerunning resumes: nothing left to answer, same tables
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert grid_tables(grid)["experts"].rows == t2.rows
