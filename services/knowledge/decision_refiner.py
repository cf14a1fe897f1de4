"""The Knowledge Guide's refiner: the decision stage's model, reached over its Complete RPC (text only).

The paper condenses context-specific knowledge with an LLM and reviews it by
hand. Here the LLM is whatever the decision stage serves (the local Qwen2-VL,
any OpenAI-compatible endpoint, vLLM), so a deployment needs no second model.
The address is configured (knowledge.refine_address; cluster mode adds the Ray
Serve application as metadata); in embedded mode it is this process's own port,
set once the server is bound.
"""

from __future__ import annotations

import grpc

from echo.v1 import decision_pb2, decision_pb2_grpc
from services.common.auth import bearer, read_secret
from services.common.errors import Unavailable, from_rpc_error
from services.common.serving import channel_options
from services.common.telemetry import client_interceptors
from services.knowledge.refine import RefineInput, refine_prompt


class DecisionRefiner:
    """Callable refiner (RefineInput -> text) over the decision stage's Complete RPC.

    Args:
        address: host:port of the decision stage; "" until `connect` (embedded mode).
        application: Ray Serve application name sent as `application` metadata ("" on one port).
        timeout_s: deadline of one refinement.
        max_tokens: most new tokens of the refined text.
    """

    def __init__(self, address: str = "", *, application: str = "", timeout_s: float = 60.0, max_tokens: int = 256):
        self.address = address
        stage_token = read_secret("", "ECHO_IAD_STAGE_TOKEN")  # cluster mode, as the gateway's
        routing = (("application", application),) if application else ()
        self.metadata = (*routing, *((bearer(stage_token),) if stage_token else ())) or None
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.model_id = "decision-stage"  # the served model's id once it has answered
        self._channel: grpc.aio.Channel | None = None

    def connect(self, address: str, token: str = "") -> None:
        """Point at the decision stage unless an address was configured (embedded mode calls this on bind);
        `token`: the bearer token the decision stage takes, when it checks tokens."""
        if not self.address:
            self.address = address
        if token:
            self.metadata = (*(self.metadata or ()), bearer(token))

    async def __call__(self, inp: RefineInput) -> str:
        if not self.address:
            raise Unavailable("knowledge refinement: no decision stage to call (set knowledge.refine_address)")
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.address, options=channel_options(), interceptors=client_interceptors()
            )
        stub = decision_pb2_grpc.DecisionStub(self._channel)
        request = decision_pb2.CompleteRequest(prompt=refine_prompt(inp), max_tokens=self.max_tokens)
        try:
            reply = await stub.Complete(request, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e, "decision") from None
        self.model_id = reply.model_id or self.model_id
        return reply.text

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
