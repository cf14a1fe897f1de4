"""The OpenAI-compatible backend against a real server on loopback: `transformers serve` with the offline model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from services.common.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from services.common.ports import free_port
from services.decision.backends.openai_compat import (
    OpenAIBackend,
    chat_request,
    http_error,
    letter_token_ids,
    reply_text,
)
from services.decision.core import DecisionInput, DecisionMaker
from services.decision.prompt import PromptInput, final_prompts
from services.decision.server import build_decider

QUESTION = "Is there any defect in the object?"
TYPES = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}


@pytest.fixture(scope="module")
def choice_ids(offline_model_dir: Path) -> dict[str, int]:
    return letter_token_ids(str(offline_model_dir), [*"ABCDE", "Yes", "No"])


@pytest.fixture
async def remote(served: str, offline_model_dir: Path, choice_ids: dict[str, int], settings) -> DecisionMaker:
    backend = OpenAIBackend(served, model=str(offline_model_dir), constraint="logit_bias", choice_token_ids=choice_ids)
    dm = DecisionMaker(backend, settings)
    yield dm
    await dm.close()


async def test_the_configured_openai_backend_reaches_the_server(
    served: str, offline_model_dir: Path, settings, png
) -> None:
    """Built from settings: the offline model's tokenizer supplies the letter ids for the logit bias."""
    s = settings.model_copy(
        update={
            "backend": "openai",
            "base_url": served,
            "openai_constraint": "logit_bias",
            "served_model": str(offline_model_dir),
        }
    )
    decider = build_decider(s)
    try:
        await decider.check_health()
        r = await decider.decide(DecisionInput(png(5), QUESTION, {"A": "Yes.", "B": "No."}, [png(6)]))
        assert r.answer in "AB" and r.raw_reply == r.answer and r.model_id == str(offline_model_dir)
    finally:
        await decider.close()


async def test_a_decision_with_images_over_http_returns_a_valid_letter(remote: DecisionMaker, png) -> None:
    r = await remote.decide(DecisionInput(png(1, (84, 56)), "What is the type of the defect?", TYPES, [png(2)]))
    assert r.answer in TYPES and not r.unparsed
    assert r.raw_reply == r.answer  # the logit bias held the reply to one letter
    assert r.prompt_tokens > 20 and r.completion_tokens == 1


async def test_the_server_answers_like_the_local_backend(remote: DecisionMaker, maker: DecisionMaker, png) -> None:
    """Same weights, same pixels (lossless PNG), same chat template: the same letter over HTTP and in-process."""
    for seed in range(4):
        inp = DecisionInput(png(10 + seed), "What is the type of the defect?", TYPES, [png(20 + seed)])
        here, there = await maker.decide(inp), await remote.decide(inp)
        assert there.answer == here.answer


async def test_two_passes_and_true_false_over_http(remote: DecisionMaker, png) -> None:
    r = await remote.decide(
        DecisionInput(
            png(3), QUESTION, {"A": "Yes.", "B": "No."}, reasoning=True, max_reasoning_tokens=8, return_prompt=True
        )
    )
    assert r.reasoning and r.answer in "AB" and not r.unparsed
    assert json.dumps(r.reasoning, ensure_ascii=False)[1:-1] in r.prompt  # the trace shows the replayed reasoning
    tf = await remote.decide(
        DecisionInput(png(3), "What is the type of the defect?", TYPES, answer_format="true_false")
    )
    assert [part.split(": ")[1] in ("Yes", "No") for part in tf.raw_reply.split("; ")] == [True] * 3
    assert tf.unparsed == (tf.answer == "")


async def test_a_backend_that_is_down_is_unavailable_naming_it(settings, png) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    dm = DecisionMaker(OpenAIBackend(url, model="m", constraint="none"), settings)
    with pytest.raises(Unavailable, match=f"openai backend at {url}"):
        await dm.decide(DecisionInput(png(0), QUESTION, {"A": "Yes.", "B": "No."}))
    await dm.close()


async def test_a_backend_that_never_answers_is_deadline_exceeded_naming_it(settings, png) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await asyncio.sleep(2)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    dm = DecisionMaker(OpenAIBackend(url, model="m", constraint="none", timeout_s=0.3), settings)
    try:
        with pytest.raises(DeadlineExceeded, match=f"openai backend at {url}: no reply within 0.3s"):
            await dm.decide(DecisionInput(png(0), QUESTION, {"A": "Yes.", "B": "No."}))
    finally:
        await dm.close()
        server.close()


def test_the_answer_constraint_is_requested_in_the_endpoints_own_terms() -> None:
    from PIL import Image

    (p,) = final_prompts(PromptInput(QUESTION, {"A": "Yes.", "B": "No."}), Image.new("RGB", (56, 56)), [])
    vllm = chat_request(p, model="m", constraint="structured_outputs")
    assert vllm["structured_outputs"] == {"choice": ["A", "B"]} and vllm["temperature"] == 0.0
    hosted = chat_request(p, model="m", constraint="response_format")
    schema = hosted["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == ["A", "B"] and hosted["max_tokens"] >= 16
    biased = chat_request(p, model="m", constraint="logit_bias", choice_token_ids={"A": 32, "B": 33})
    assert biased["logit_bias"] == {"32": 100.0, "33": 100.0} and biased["max_tokens"] == 1
    plain = chat_request(p, model="m", constraint="none")
    assert not {"structured_outputs", "response_format", "logit_bias"} & set(plain)
    with pytest.raises(FailedPrecondition, match="token ids"):
        chat_request(p, model="m", constraint="logit_bias")


def test_replies_are_unwrapped_and_http_errors_mapped() -> None:
    body = {
        "choices": [{"message": {"content": '{"answer": "B"}'}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5},
    }
    assert reply_text(body) == ("B", 9, 5)
    assert reply_text({"choices": [{"message": {"content": "A."}}]}) == ("A.", 0, 0)
    too_long = http_error("x", 400, "This model's maximum context length is 8192 tokens. However, you requested 9000")
    assert isinstance(too_long, InvalidArgument) and "8192" in str(too_long)
    assert isinstance(http_error("x", 503, "overloaded"), Unavailable)
    assert isinstance(http_error("x", 401, "bad key"), FailedPrecondition)
