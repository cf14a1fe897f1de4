"""The embedded gateway's in-process channel passes the same guard as the socket: tokens, bodies, permissions.

The in-process channel skips only the socket: a call on it without the server's
minted stage token, or with a factory-line token, is refused with the very code
and words a call on the port gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from tlskit import write_tokens

from echo.v1 import embedding_pb2, embedding_pb2_grpc
from services.common.auth import bearer, new_token
from services.common.config import ServerSettings
from services.common.serving import Internal, Stage, start_server

EMBED_TEXTS = "/echo.v1.Embedding/EmbedTexts"


class Texts(embedding_pb2_grpc.EmbeddingServicer):
    """A stage that answers EmbedTexts with how many texts it got."""

    async def EmbedTexts(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return embedding_pb2.EmbedTextsResponse(model_id=str(len(request.texts)))

    async def check_health(self) -> None:
        return None


@dataclass
class Guarded:
    port: int
    internal: Internal
    tokens: dict[str, str]


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Guarded]:
    tokens = {"camera": new_token(), "gateway": new_token()}
    write_tokens(
        tmp_path / "tokens.yaml",
        [
            {"name": "camera", "token": tokens["camera"], "lines": ["line-a"]},
            {"name": "gateway", "token": tokens["gateway"], "lines": ["*"], "stages": True},
        ],
    )
    settings = ServerSettings(port=0, auth={"tokens_file": str(tmp_path / "tokens.yaml")})
    bound: list[Internal] = []
    stage = Stage(
        "echo.v1.Embedding", Texts(), lambda server, s: embedding_pb2_grpc.add_EmbeddingServicer_to_server(s, server)
    )
    server, port, _ = await start_server([stage], on_bound=bound.append, settings=settings)
    try:
        yield Guarded(port, bound[0], tokens)
    finally:
        await server.stop(None)


async def _outcome(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], body: bytes) -> tuple[Any, str]:
    call = channel.unary_unary(EMBED_TEXTS)  # raw bytes both ways: the guard decodes the body itself
    try:
        answer = await call(body, metadata=metadata, timeout=5)
        return grpc.StatusCode.OK, embedding_pb2.EmbedTextsResponse.FromString(answer).model_id
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""


async def test_in_process_calls_get_the_same_token_checks_and_answers_as_the_port(guarded: Guarded) -> None:
    assert guarded.internal.channel is not None and guarded.internal.token
    body = embedding_pb2.EmbedTextsRequest(texts=["a", "b"]).SerializeToString()
    cases = {
        "no token": ((), body),
        "unknown token": ((bearer(new_token()),), body),
        "a line's token on a stage": ((bearer(guarded.tokens["camera"]),), body),
        "the minted stage token": ((bearer(guarded.internal.token),), body),
        "a stage token from the file": ((bearer(guarded.tokens["gateway"]),), body),
        "undecodable body": ((bearer(guarded.internal.token),), b"\xff\xff\xff"),
    }
    remote = grpc.aio.insecure_channel(f"127.0.0.1:{guarded.port}")
    try:
        seen = {
            name: (await _outcome(remote, md, data), await _outcome(guarded.internal.channel, md, data))
            for name, (md, data) in cases.items()
        }
    finally:
        await remote.close()
    for name, (over_port, in_process) in seen.items():
        assert in_process == over_port, name
    codes = {name: in_process[0] for name, (_, in_process) in seen.items()}
    assert codes == {
        "no token": grpc.StatusCode.UNAUTHENTICATED,
        "unknown token": grpc.StatusCode.UNAUTHENTICATED,
        "a line's token on a stage": grpc.StatusCode.PERMISSION_DENIED,
        "the minted stage token": grpc.StatusCode.OK,
        "a stage token from the file": grpc.StatusCode.OK,
        "undecodable body": grpc.StatusCode.INVALID_ARGUMENT,
    }
    assert seen["the minted stage token"][1] == (grpc.StatusCode.OK, "2")
