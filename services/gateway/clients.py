"""The gateway's calls to the stages: one channel per address, deadlines, retries.

The same code serves both modes: in embedded mode every stage address is this
process's own port; in the cluster, addresses and the Ray Serve `application`
metadata come from config.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import grpc

from echo.v1 import decision_pb2_grpc, embedding_pb2_grpc, knowledge_pb2_grpc, retrieval_pb2_grpc
from services.common.errors import EchoError
from services.common.serving import channel_options
from services.gateway.config import GatewaySettings, StageEndpoint

_STUBS = {
    "embedding": embedding_pb2_grpc.EmbeddingStub,
    "retrieval": retrieval_pb2_grpc.RetrievalStub,
    "knowledge": knowledge_pb2_grpc.KnowledgeStub,
    "decision": decision_pb2_grpc.DecisionStub,
}
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE}
DEGRADED_METADATA_KEY = "echo-degraded"  # trailing metadata a stage sends when it served in a reduced way
_MIN_STAGE_TIMEOUT_S = 0.005


@dataclass
class Deadline:
    """An absolute deadline on the monotonic clock."""

    expires_at: float

    @classmethod
    def after_ms(cls, ms: float) -> Deadline:
        return cls(time.monotonic() + ms / 1000.0)

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()


class StageCallError(EchoError):
    """A stage failed; the Inspector answers with the same code, the stage named in the message."""

    def __init__(self, stage: str, code: grpc.StatusCode, details: str) -> None:
        self.stage = stage
        self.code = code
        super().__init__(f"{stage} stage: {code.name}: {details}")


class StageClient:
    """Calls one stage's RPCs under a share of the request's deadline, retrying idempotent calls."""

    def __init__(self, name: str, channel: grpc.aio.Channel, endpoint: StageEndpoint) -> None:
        self.name = name
        self.endpoint = endpoint
        self.channel = channel
        self.stub = _STUBS[name](channel)
        self.metadata = (("application", endpoint.application),) if endpoint.application else None

    async def call(
        self, method: str, request: Any, deadline: Deadline, *, idempotent: bool = True, degraded: Any = None
    ) -> Any:
        """One RPC under a share of the deadline; a stage's `echo-degraded` trailer is appended to `degraded`."""
        rpc = getattr(self.stub, method)
        attempts = 1 + (self.endpoint.retries if idempotent else 0)
        for attempt in range(attempts):
            remaining = deadline.remaining()
            if remaining <= _MIN_STAGE_TIMEOUT_S:
                raise StageCallError(self.name, grpc.StatusCode.DEADLINE_EXCEEDED, "no time left before the deadline")
            timeout = max(_MIN_STAGE_TIMEOUT_S, remaining * self.endpoint.timeout_share)
            try:
                call = rpc(request, timeout=timeout, metadata=self.metadata)
                response = await call
                if degraded is not None:
                    for key, value in await call.trailing_metadata() or ():
                        if key == DEGRADED_METADATA_KEY:
                            degraded.append(f"{self.name}: {value}")
                return response
            except grpc.aio.AioRpcError as e:
                if e.code() in _RETRYABLE and attempt + 1 < attempts:
                    backoff = min(0.5, 0.02 * (2**attempt)) * (0.5 + random.random())
                    if deadline.remaining() > backoff + _MIN_STAGE_TIMEOUT_S:
                        await asyncio.sleep(backoff)
                        continue
                raise StageCallError(self.name, e.code(), e.details() or "") from None
        raise AssertionError("unreachable")


class StageClients:
    """All four stages; channels are shared between stages at the same address."""

    def __init__(self, settings: GatewaySettings, default_address: str, max_message_mb: int = 32) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.clients: dict[str, StageClient] = {}
        for name in _STUBS:
            endpoint: StageEndpoint = getattr(settings, name)
            address = endpoint.address or default_address
            if address not in self._channels:
                self._channels[address] = grpc.aio.insecure_channel(address, options=channel_options(max_message_mb))
            self.clients[name] = StageClient(name, self._channels[address], endpoint)

    def __getitem__(self, name: str) -> StageClient:
        return self.clients[name]

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
