"""`echo-iad decision`: build the offline model, preview a prompt, ask one question."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.commands.decision import app

runner = CliRunner()


def test_preview_prints_both_passes_without_loading_a_model() -> None:
    args = ["preview", "--reasoning", "--references", "2", "--format", "true_false", "--option", "A=Scratch."]
    res = runner.invoke(app, [*args, "--style", "echo", "--type", "Defect Classification"])
    assert res.exit_code == 0, res.output
    assert "# pass 1: Reasoning Expert" in res.output and "# final pass 1 (choices: Yes, No)" in res.output
    assert "Following is 2 images of normal sample" in res.output
    assert "The type of the defect in the query image is: Scratch." in res.output


def test_preview_shows_mmads_prompt_by_default() -> None:
    res = runner.invoke(app, ["preview", "--category", "bottle", "--type", "Anomaly Detection"])
    assert res.exit_code == 0, res.output
    assert "Following is/are 1 image of normal sample" in res.output and "Question 1: Is there any" in res.output


def test_a_malformed_option_is_refused_with_the_expected_form() -> None:
    res = runner.invoke(app, ["preview", "--option", "A:Yes"])
    assert res.exit_code != 0 and "LETTER=TEXT" in res.output


def test_build_offline_model_reuses_a_built_folder(offline_model_dir: Path) -> None:
    res = runner.invoke(app, ["build-offline-model", "--out", str(offline_model_dir)])
    assert res.exit_code == 0 and "already built" in res.output


def test_ask_runs_the_configured_backend_on_an_image(tmp_path: Path, model_cache: Path, png) -> None:
    img = tmp_path / "q.png"
    img.write_bytes(png(1))
    cfg = tmp_path / "echo.yaml"
    cfg.write_text(f"decision:\n  model_cache: {model_cache}\n  device: cpu\n")
    args = ["ask", "--image", str(img), "--reference", str(img), "--show-prompt", "--config", str(cfg)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # stderr carries the model-loading progress
    assert out["answer"] in ("A", "B") and out["prompt"].count("<|image_pad|>") == 2
