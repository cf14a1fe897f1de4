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


def test_a_memory_without_its_evidence_bank_gets_the_bank_and_a_complete_one_is_left_alone(
    random_server: ServerThread, small_dataset: MMADDataset
) -> None:
    from services.client.client import AsyncInspectorClient
    from services.common.stage_client import Deadline
    from services.evaluation.runner import ensure_memory

    line = "bank-less-line"

    async def ensure() -> dict[str, int]:
        client = AsyncInspectorClient(random_server.address)
        try:
            return await ensure_memory(client, small_dataset, line)
        finally:
            await client.close()

    async def products() -> dict[str, tuple[int, int]]:
        client = AsyncInspectorClient(random_server.address)
        try:
            listing = await client.list_products(line)
        finally:
            await client.close()
        return {f"{p.dataset}/{p.category}": (p.normal_images, p.evidence_bank_images) for p in listing.products}

    first = asyncio.run(ensure())
    assert all(n > 0 for n in first.values())
    assert asyncio.run(ensure()) == dict.fromkeys(first, 0)  # memory and bank complete: nothing sent again
    dataset, category = next(iter(first)).split("/")
    inspector = random_server.embedded.inspector  # as a memory built before the evidence stage: no bank
    asyncio.run_coroutine_threadsafe(
        inspector.clients.delete_bank(line, dataset, category, Deadline.after_ms(30_000)), random_server.loop
    ).result(60)
    assert asyncio.run(products())[f"{dataset}/{category}"][1] == 0
    again = asyncio.run(ensure())
    assert again[f"{dataset}/{category}"] == first[f"{dataset}/{category}"]
    assert sum(again.values()) == first[f"{dataset}/{category}"]  # only the bank-less category was sent
    assert all(bank == memory for memory, bank in asyncio.run(products()).values())
