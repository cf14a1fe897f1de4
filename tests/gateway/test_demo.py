"""`echo-iad demo` runs the whole product offline and prints a per-type table, with the visual evidence expert's
accuracy beside the MLLM's and a few heat-map overlays written where it says."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from app.cli import app
from services.mmad.types import QUESTION_TYPES


def test_demo_runs_end_to_end_and_says_which_models_ran(tmp_path: Path, offline_model_cache: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ECHO_IAD__DECISION__MODEL_CACHE", str(offline_model_cache))
    monkeypatch.setenv("ECHO_IAD__EVIDENCE__INPUT_SIZE", "160")  # small banks: the test stays quick on 2 CPUs
    result = CliRunner().invoke(
        app, ["demo", "--workdir", str(tmp_path), "--per-category", "2", "--per-type", "2", "--concurrency", "2"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for step in (
        "1. synthesize",
        "2. build the memory",
        "3. start the embedded server",
        "4. send questions",
        "5. results",
    ):
        assert step in out
    for qtype in QUESTION_TYPES:
        assert qtype.split()[0] in out
    assert "0 degraded" in out
    assert "models that ran: decision=echo-tiny-qwen2-vl" in out and "RANDOM weights" in out
    # the evidence expert answers AD and DL itself: its accuracy is shown beside the MLLM's, the others have none
    assert "VE accuracy" in out and "evidence=efficientnet_lite0" in out
    assert re.search(r"Anomaly Detection .*\d+% \(\d/2\)", out) and re.search(r"Localization .*\d+% \(\d/2\)", out)
    assert re.search(r"Object Analysis +│ 2 +│ \d +│ +\d+% +│ – ", out)
    # a few heat-map overlays, written where the demo says, each the query's size
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert 1 <= len(overlays) <= 4 and f"overlays written to {tmp_path / 'overlays'}\n" in out
    for path in overlays:
        assert str(path) in out
        with Image.open(path) as img:
            assert img.size == (256, 256) and img.mode == "RGB"
    assert any(p.name.endswith("_anomalous.png") for p in overlays)
    # a second run reuses the dataset and finds the memory already built
    again = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--per-category", "2", "--per-type", "1"])
    assert again.exit_code == 0 and " 0 added" in again.output
