"""The Knowledge Guide's refiner: the decision stage's model, reached over its Complete RPC (text only).

The paper condenses context-specific knowledge with an LLM and reviews it by
hand. Here the LLM is whatever the decision stage serves (the local Qwen2-VL,
any OpenAI-compatible endpoint, vLLM), so a deployment needs no second model.
The address is configured (knowledge.refine_address; cluster mode adds the Ray
Serve application as metadata); in embedded mode it is this process's own port,
set once the server is bound.
"""

from __future__ import annotations

from echo.v1 import decision_pb2
from services.common.auth import read_secret
from services.common.errors import Unavailable
from services.common.stage_client import Deadline, StageClient, StageEndpoint, connect_stage
from services.knowledge.refine import RefineInput, refine_prompt


class DecisionRefiner:
    """Callable refiner (RefineInput -> text) over the decision stage's Complete RPC.

    It calls through the one stage-client path (services/common/stage_client.py): gRPC's retry policy on
    UNAVAILABLE, and a call that fails or stalls asks the stage's health, so a dead decision stage fails fast
    with UNAVAILABLE naming it.

    Args:
        address: host:port of the decision stage; "" until `connect` (embedded mode).
        application: Ray Serve application name sent as `application` metadata ("" on one port).
        timeout_s: deadline of one refinement.
        max_tokens: most new tokens of the refined text.
    """

    def __init__(self, address: str = "", *, application: str = "", timeout_s: float = 60.0, max_tokens: int = 256):
        self.address = address
        self.token = read_secret("", "ECHO_IAD_STAGE_TOKEN")  # cluster mode, as the gateway's
        self.endpoint = StageEndpoint(application=application, timeout_share=1.0)
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.model_id = "decision-stage"  # the served model's id once it has answered
        self._client: StageClient | None = None

    def connect(self, address: str, token: str = "") -> None:
        """Point at the decision stage unless an address was configured (embedded mode calls this on bind);
        `token`: the bearer token the decision stage takes, when it checks tokens."""
        if not self.address:
            self.address = address
        if token:
            self.token = token

    async def __call__(self, inp: RefineInput) -> str:
        if not self.address:
            raise Unavailable("knowledge refinement: no decision stage to call (set knowledge.refine_address)")
        if self._client is None:
            self._client = connect_stage("decision", self.address, self.endpoint, token=self.token)
        request = decision_pb2.CompleteRequest(prompt=refine_prompt(inp), max_tokens=self.max_tokens)
        reply = await self._client.call("Complete", request, Deadline.after_ms(self.timeout_s * 1000))
        self.model_id = reply.model_id or self.model_id
        return reply.text

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
