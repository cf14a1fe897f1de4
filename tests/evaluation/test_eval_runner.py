"""Runner behaviour against a real server: failures are logged and retried, runs refuse mixed settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from evalkit import ServerThread

from services.common.errors import FailedPrecondition
from services.evaluation.answers import read_answers
from services.evaluation.cells import FULL, Cell
from services.evaluation.runner import RunOptions, TooManyErrors, evaluate
from services.mmad.loader import MMADDataset


def test_failed_requests_are_logged_not_answered_and_stop_the_run(
    random_server: ServerThread, small_dataset: MMADDataset, tmp_path: Path
) -> None:
    opts = RunOptions(line_id="not a valid line!", concurrency=2, max_errors=3)  # every request: INVALID_ARGUMENT
    run = tmp_path / "run"
    with pytest.raises(TooManyErrors, match="INVALID_ARGUMENT"):
        asyncio.run(evaluate(small_dataset, [(FULL, run)], opts, address=random_server.address, build_memory=False))
    assert read_answers(run / "answers.jsonl") == []
    errors = [json.loads(x) for x in (run / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 4 <= len(errors) <= 5 and all("line_id" in e["error"] for e in errors)


def test_a_run_folder_refuses_answers_under_other_settings(
    random_server: ServerThread, small_dataset: MMADDataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    opts = RunOptions(limit=3)
    (first,) = asyncio.run(evaluate(small_dataset, [(FULL, run)], opts, address=random_server.address))
    assert first.answered == 3 and first.complete
    other = Cell("full", knowledge_mode="dk")  # same name, different requests
    with pytest.raises(FailedPrecondition, match="other settings"):
        asyncio.run(evaluate(small_dataset, [(other, run)], opts, address=random_server.address))
    # a larger scope resumes: the three answered are skipped
    (more,) = asyncio.run(evaluate(small_dataset, [(FULL, run)], RunOptions(limit=6), address=random_server.address))
    assert (more.skipped, more.answered) == (3, 3)
    assert len(read_answers(run / "answers.jsonl")) == 6


def test_an_unreadable_run_json_stops_a_resume_instead_of_dropping_the_guard(
    random_server: ServerThread, small_dataset: MMADDataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    opts = RunOptions(limit=2)
    asyncio.run(evaluate(small_dataset, [(FULL, run)], opts, address=random_server.address, build_memory=False))
    (run / "run.json").write_text('{"cell": {"name": "full"', encoding="utf-8")  # torn by a crash
    other = Cell("full", knowledge_mode="dk")
    with pytest.raises(FailedPrecondition, match=r"run\.json cannot be read"):
        asyncio.run(evaluate(small_dataset, [(other, run)], opts, address=random_server.address, build_memory=False))
    assert len(read_answers(run / "answers.jsonl")) == 2  # nothing was added under the other settings
