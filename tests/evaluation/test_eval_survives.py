"""Evaluation that survives: transient failures are retried with backoff, questions that still fail are recorded
and a rerun resumes them, and settings that cannot answer the dataset are refused before the first request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from evalkit import ServerThread

from services.client import AsyncInspectorClient
from services.common.errors import FailedPrecondition
from services.common.images import sha256_hex
from services.config import load_settings
from services.evaluation.answers import read_answers
from services.evaluation.cells import FULL, Cell
from services.evaluation.runner import (
    RunOptions,
    ensure_memory,
    evaluate,
    incompatible,
    questions_in_scope,
    run_cell,
    with_retries,
)
from services.mmad.loader import MMADDataset


def _unavailable() -> grpc.aio.AioRpcError:
    md = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, md, md, "decision stage: not serving (restarting)")


class _StageDown:
    """A real client whose Inspects fail UNAVAILABLE, as while a stage is killed and restarted: for the next
    `outage` calls, or always for the images (sha256) in `down_for`."""

    def __init__(self, client: AsyncInspectorClient, outage: int = 0, down_for: set[str] | None = None) -> None:
        self.client = client
        self.outage = outage
        self.down_for = down_for or set()
        self.calls = 0

    async def inspect_request(self, req: Any, *, timeout_s: float | None = None) -> Any:
        self.calls += 1
        if self.outage > 0 or sha256_hex(req.image.data) in self.down_for:
            self.outage -= 1
            raise _unavailable()
        return await self.client.inspect_request(req, timeout_s=timeout_s)


async def _run(server: ServerThread, dataset: MMADDataset, run: Path, opts: RunOptions, **down: Any) -> Any:
    async with AsyncInspectorClient(server.address, retries=0) as client:
        await ensure_memory(client, dataset, opts.line_id)
        flaky = _StageDown(client, **down)
        return await run_cell(flaky, dataset, run, FULL, opts), flaky  # type: ignore[arg-type]


async def test_a_call_is_retried_on_transient_statuses_and_not_on_others() -> None:
    failures = [_unavailable(), _unavailable()]

    async def flaky() -> str:
        if failures:
            raise failures.pop()
        return "answered"

    assert await with_retries(flaky, retries=2, backoff_s=0.001) == "answered"
    md = grpc.aio.Metadata()
    refused = grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, md, md, "line_id: bad")
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise refused

    with pytest.raises(grpc.aio.AioRpcError):
        await with_retries(bad, retries=3, backoff_s=0.001)
    assert calls == 1


def test_a_stage_restarting_midway_costs_no_question(
    random_server: ServerThread, small_dataset: MMADDataset, tmp_path: Path
) -> None:
    opts = RunOptions(limit=8, concurrency=2, retries=4, backoff_s=0.01)
    result, flaky = asyncio.run(_run(random_server, small_dataset, tmp_path / "run", opts, outage=3))
    assert (result.answered, result.errors) == (8, 0) and result.complete
    assert flaky.calls == 8 + 3  # three failed tries, each retried


def test_questions_failing_past_their_retries_are_recorded_and_a_rerun_completes_them(
    random_server: ServerThread, small_dataset: MMADDataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    opts = RunOptions(limit=8, concurrency=2, retries=1, backoff_s=0.01)
    scope = questions_in_scope(small_dataset, opts.limit)
    down_images = {scope[0][0].image_path, scope[-1][0].image_path}  # down for these through the first session
    down = {sha256_hex(small_dataset.abspath(p).read_bytes()) for p in down_images}
    hit = [q.id for s, q in scope if s.image_path in down_images]
    first, _ = asyncio.run(_run(random_server, small_dataset, run, opts, down_for=down))
    assert first.errors == len(hit) and first.answered == 8 - len(hit) and not first.complete
    errors = [json.loads(x) for x in (run / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {e["id"] for e in errors} == set(hit) and all("UNAVAILABLE" in e["error"] for e in errors)
    again, _ = asyncio.run(_run(random_server, small_dataset, run, opts))  # the stage is back
    assert (again.skipped, again.answered, again.errors) == (8 - len(hit), len(hit), 0) and again.complete
    assert sorted(r["id"] for r in read_answers(run / "answers.jsonl")) == sorted(q.id for _, q in scope)


def test_the_evidence_backend_is_refused_before_the_first_request_where_it_cannot_answer(
    small_dataset: MMADDataset, tmp_path: Path
) -> None:
    paper = load_settings(None, protocol="paper", data_dir=str(tmp_path), decision={"backend": "evidence"})
    only = "answers Anomaly Detection, Defect Localization and Defect Classification only"
    with pytest.raises(FailedPrecondition, match=only):
        asyncio.run(evaluate(small_dataset, [(FULL, tmp_path / "run")], RunOptions(), settings=paper))
    assert not (tmp_path / "run").exists()  # nothing was asked
    detection = {"Anomaly Detection"}
    assert "protocol 'paper' does not run" in (incompatible(paper, detection, FULL) or "")
    assert incompatible(paper, detection, Cell("ev", experts=(("evidence", True),))) is None
    product = load_settings(None, protocol="product", data_dir=str(tmp_path), decision={"backend": "evidence"})
    assert incompatible(product, detection, FULL) is None
