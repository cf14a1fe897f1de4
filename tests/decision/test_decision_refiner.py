"""CSK refinement connected: the Knowledge Guide calls the decision stage's Complete RPC, caches, and takes reviews.

Real gRPC on one port (the knowledge and decision stages, as in embedded mode), the real knowledge stage
(MiniLM CSK) and real models: the offline Qwen2-VL in-process, and `transformers serve` serving it as an
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from echo.v1 import common_pb2, decision_pb2, decision_pb2_grpc, knowledge_pb2, knowledge_pb2_grpc
from services.common.serving import start_server
from services.config import load_settings
from services.decision.core import Decider, DecisionMaker
from services.decision.server import build_decider, stage_for
from services.knowledge.server import build_stage, connect_refiner
from services.knowledge.servicer import DEGRADED_METADATA_KEY

KB = Path(__file__).parents[1] / "knowledge" / "fixtures" / "kb"
Q_DC = "There is a defect in the object. What is the type of the defect?"
OPTIONS = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}


def _request(options: dict[str, str] = OPTIONS, refine: bool = True) -> knowledge_pb2.GetContextRequest:
    question = common_pb2.Question(text=Q_DC, options=options, type=common_pb2.DEFECT_CLASSIFICATION)
    return knowledge_pb2.GetContextRequest(
        dataset="Synthetic", category="round_part", question=question, mode=common_pb2.CONTEXT_SPECIFIC, refine=refine
    )


class Stages:
    """The knowledge and decision stages on one port; the refiner points at it, as in embedded mode."""

    def __init__(self, channel: grpc.aio.Channel, address: str, cache: Path) -> None:
        self.knowledge = knowledge_pb2_grpc.KnowledgeStub(channel)
        self.decision = decision_pb2_grpc.DecisionStub(channel)
        self.address = address
        self.cache = cache


@pytest.fixture
def settings_for(tmp_path: Path):
    def make(**knowledge: object):
        kb = tmp_path / "kb"
        if not kb.exists():
            shutil.copytree(KB, kb)
        return load_settings(
            data_dir=str(tmp_path), knowledge={"dir": str(kb), "refine_max_tokens": 24, "reload_s": 0.2, **knowledge}
        )

    return make


async def _serve(settings, decider: Decider) -> AsyncIterator[Stages]:
    knowledge = await build_stage(settings.knowledge)
    decision = stage_for(decider)
    server, port, _ = await start_server(
        [knowledge, decision], "127.0.0.1", 0, on_bound=lambda i: connect_refiner(knowledge, i.address, i.token)
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Stages(channel, f"127.0.0.1:{port}", Path(settings.knowledge.refine_cache))
    finally:
        await channel.close()
        await server.stop(None)
        await knowledge.close()


@pytest.fixture
async def offline(settings_for, maker: DecisionMaker) -> AsyncIterator[Stages]:
    async for stages in _serve(settings_for(), maker):
        yield stages


async def test_the_offline_model_refines_csk_through_the_decision_stage(offline: Stages) -> None:
    plain = await offline.knowledge.GetContext(_request(refine=False))
    refined = await offline.knowledge.GetContext(_request())
    assert refined.refined == "model" and refined.text and refined.text != plain.text
    assert refined.model_id.endswith("+refined:echo-tiny-qwen2-vl")
    assert refined.entry_ids == plain.entry_ids and list(refined.passages) == list(plain.passages)
    # cached per (category, question type, option set): the same options again are not refined again
    again = await offline.knowledge.GetContext(_request())
    assert again.text == refined.text
    items = json.loads(offline.cache.read_text())["items"]
    assert len(items) == 1 and items[0]["refiner"] == "echo-tiny-qwen2-vl" and not items[0]["reviewed"]
    assert items[0]["options"] == ["crack", "hole", "scratch"] and items[0]["question_type"] == "Defect Classification"
    await offline.knowledge.GetContext(_request({"A": "Crack.", "B": "Contamination."}))
    assert len(json.loads(offline.cache.read_text())["items"]) == 2


async def test_complete_validates_its_input(offline: Stages) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await offline.decision.Complete(decision_pb2.CompleteRequest(prompt="  "))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("prompt")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await offline.decision.Complete(decision_pb2.CompleteRequest(prompt="Say hi.", max_tokens=-1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("max_tokens")
    r = await offline.decision.Complete(decision_pb2.CompleteRequest(prompt="Say hi.", max_tokens=3))
    assert 1 <= r.completion_tokens <= 3 and r.model_id == "echo-tiny-qwen2-vl"


async def test_transformers_serve_refines_as_an_openai_compatible_model(
    settings_for, settings, served: str, offline_model_dir: Path
) -> None:
    """Any OpenAI-compatible model can refine: the decision stage's openai backend, here `transformers serve`."""
    decider = build_decider(
        settings.model_copy(
            update={
                "backend": "openai",
                "base_url": served,
                "served_model": str(offline_model_dir),
                "openai_constraint": "logit_bias",
            }
        )
    )
    async for stages in _serve(settings_for(), decider):
        refined = await stages.knowledge.GetContext(_request())
        assert refined.refined == "model" and refined.text
        assert refined.model_id.endswith(f"+refined:{offline_model_dir}")
        (item,) = json.loads(stages.cache.read_text())["items"]
        assert item["refiner"] == str(offline_model_dir) and item["refined"] == refined.text


async def test_the_review_loop_export_edit_import_serves_the_reviewed_text(offline: Stages, tmp_path: Path) -> None:
    from app.commands.knowledge import app

    model_text = (await offline.knowledge.GetContext(_request())).text
    exported = tmp_path / "review.json"
    runner = CliRunner()
    res = runner.invoke(app, ["refine-export", str(exported), "--cache", str(offline.cache)])
    assert res.exit_code == 0 and "1 refined texts written" in res.output, res.output
    data = json.loads(exported.read_text())
    (item,) = data["items"]
    assert item["refined"] == model_text
    reviewed = "Round part: a scratch is a thin bright line; a crack is dark and jagged; a hole shows the background."
    item.update(refined=reviewed, reviewed=True)
    exported.write_text(json.dumps(data))
    res = runner.invoke(app, ["refine-import", str(exported), "--cache", str(offline.cache)])
    assert res.exit_code == 0 and "1 reviewed texts imported" in res.output, res.output
    deadline = time.monotonic() + 5  # the running stage re-reads the cache file within knowledge.reload_s
    while True:
        got = await offline.knowledge.GetContext(_request())
        if got.refined == "reviewed" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert got.text == reviewed and got.refined == "reviewed" and got.model_id.endswith("(reviewed)")


async def test_a_backend_without_a_language_model_degrades_to_unrefined_csk(settings_for, settings) -> None:
    decider = build_decider(settings.model_copy(update={"backend": "random"}))
    async for stages in _serve(settings_for(), decider):
        call = stages.knowledge.GetContext(_request())
        resp = await call
        trailers = dict(await call.trailing_metadata())
        assert resp.text and resp.refined == ""
        assert "refinement failed" in trailers[DEGRADED_METADATA_KEY]
        assert "FAILED_PRECONDITION" in trailers[DEGRADED_METADATA_KEY]


async def test_knowledge_refine_precomputes_the_cache_for_a_dataset(offline: Stages, tmp_path: Path) -> None:
    """`echo-iad knowledge refine --data DIR --server ADDR`: one refinement per distinct key, then all cached."""
    from app.commands.knowledge import app
    from services.knowledge.refine import RefineKey
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = synthesize(
        tmp_path / "d", seed=3, categories=["round_part"], per_category=3, templates_per_category=2, progress=False
    )
    keys = {
        RefineKey.of(s.dataset, s.category, q.type, list(q.options.values()))
        for s, q in load_dataset(root).questions()
        if q.type in ("Defect Classification", "Defect Description")
    }
    address = offline.address
    args = ["refine", "--data", str(root), "--server", address]
    res = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert res.exit_code == 0, res.output
    assert f"{len(keys)} (category, question type, option set) keys: {len(keys)} refined by the model" in res.output
    assert len(json.loads(offline.cache.read_text())["items"]) == len(keys) > 0
    again = await asyncio.to_thread(CliRunner().invoke, app, args)  # from the cache: nothing new
    assert again.exit_code == 0 and len(json.loads(offline.cache.read_text())["items"]) == len(keys)
