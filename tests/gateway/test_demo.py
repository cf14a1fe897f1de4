"""`echo-iad demo` runs the whole product offline and prints a per-type table."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from services.cli import app
from services.mmad.types import QUESTION_TYPES


def test_demo_runs_end_to_end_and_says_which_models_ran(tmp_path: Path, offline_model_cache: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ECHO_IAD__DECISION__MODEL_CACHE", str(offline_model_cache))
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
    # a second run reuses the dataset and finds the memory already built
    again = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--per-category", "2", "--per-type", "1"])
    assert again.exit_code == 0 and " 0 added" in again.output
