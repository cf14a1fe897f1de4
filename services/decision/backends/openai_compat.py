"""Any OpenAI-compatible chat endpoint: `vllm serve`, a Ray Serve LLM app, `transformers serve`, a hosted model.

The request is the builder's chat messages with images as PNG data URLs. The
answer constraint is requested in the way the endpoint understands
(decision.openai_constraint) and the reply is parsed regardless, since some
servers ignore constraints silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from services.common.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from services.decision.backends.base import Backend, Reply
from services.decision.config import DecisionSettings
from services.decision.offline_model import OFFLINE_MODEL
from services.decision.prompt import ChatPrompt, openai_messages

Constraint = str  # "structured_outputs" | "response_format" | "logit_bias" | "none"
_CONTEXT_WORDS = ("context", "max_model_len", "too long", "maximum model length", "max_tokens")


def answer_schema(choices: tuple[str, ...]) -> dict[str, Any]:
    """OpenAI structured output: {"answer": one of the choices}."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "enum": list(choices)}},
                "required": ["answer"],
                "additionalProperties": False,
            },
        },
    }


def chat_request(
    prompt: ChatPrompt,
    *,
    model: str,
    constraint: Constraint = "structured_outputs",
    choice_token_ids: dict[str, int] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The /v1/chat/completions body for one ChatPrompt (pure; `messages` skips re-encoding images).

    A constrained prompt asks for exactly one of prompt.choices: vLLM's
    `structured_outputs.choice`, an OpenAI JSON-schema enum, or a +100 logit
    bias on the choices' token ids.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": messages if messages is not None else openai_messages(prompt),
        "max_tokens": prompt.max_tokens,
        "temperature": 0.0,
        "stream": False,
    }
    if not prompt.choices or constraint == "none":
        return body
    if constraint == "structured_outputs":
        body["structured_outputs"] = {"choice": list(prompt.choices)}
    elif constraint == "response_format":
        body["response_format"] = answer_schema(prompt.choices)
        body["max_tokens"] = max(prompt.max_tokens, 16)  # {"answer": "A"} is a few tokens
    elif constraint == "logit_bias":
        if not choice_token_ids:
            raise FailedPrecondition("logit_bias needs the choices' token ids (set decision.tokenizer)")
        # floats: transformers serve rejects integer biases
        body["logit_bias"] = {str(choice_token_ids[c]): 100.0 for c in prompt.choices}
    else:
        raise FailedPrecondition(f"unknown answer constraint {constraint!r}")
    return body


def reply_text(response: dict[str, Any]) -> tuple[str, int, int]:
    """(text, prompt tokens, completion tokens) of a chat completion; a JSON {"answer": X} reply unwraps to X."""
    choices = response.get("choices") or []
    if not choices:
        raise Unavailable(f"reply has no choices: {str(response)[:200]}")
    text = (choices[0].get("message") or {}).get("content") or ""
    usage = response.get("usage") or {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
            if isinstance(obj, dict) and isinstance(obj.get("answer"), str):
                text = obj["answer"]
        except json.JSONDecodeError:
            pass
    return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def letter_token_ids(tokenizer_path: str, choices: list[str]) -> dict[str, int]:
    """Token ids of single-token choices, read from a local tokenizer folder (for logit_bias)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    out = {}
    for c in choices:
        ids = tok.encode(c, add_special_tokens=False)
        if len(ids) == 1:
            out[c] = ids[0]
    return out


class OpenAIBackend(Backend):
    """POSTs each ChatPrompt to base_url/chat/completions with httpx."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str = "EMPTY",
        constraint: Constraint = "structured_outputs",
        timeout_s: float = 60.0,
        max_images: int = 4,
        choice_token_ids: dict[str, int] | None = None,
        name: str = "openai",
    ) -> None:
        if not base_url:
            raise FailedPrecondition(f"decision.base_url is empty: the {name} backend needs an endpoint")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.constraint = constraint
        self.timeout_s = timeout_s
        self.max_images = max_images
        self.choice_token_ids = choice_token_ids
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: DecisionSettings) -> OpenAIBackend:
        ids = None
        if settings.openai_constraint == "logit_bias":
            from services.decision.offline_model import resolve_model

            tok = settings.tokenizer or settings.model
            if tok == OFFLINE_MODEL:
                tok = resolve_model(tok, settings.model_cache, seed=settings.seed)
            if not Path(tok).is_dir():
                raise FailedPrecondition(f"decision.tokenizer: {tok!r} is not a local tokenizer folder (logit_bias)")
            ids = letter_token_ids(tok, [*"ABCDEFGH", "Yes", "No"])
        return cls(
            settings.base_url,
            model=settings.served_model or settings.model,
            api_key=settings.api_key,
            constraint=settings.openai_constraint,
            timeout_s=settings.timeout_s,
            max_images=settings.max_images,
            choice_token_ids=ids,
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=self._headers)
        return self._client

    async def complete(self, prompt: ChatPrompt) -> Reply:
        body = chat_request(
            prompt, model=self.model_id, constraint=self.constraint, choice_token_ids=self.choice_token_ids
        )
        data = await self.post("/chat/completions", body)
        text, n_prompt, n_out = reply_text(data)
        return Reply(text, n_prompt, n_out)

    async def post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + route
        where = f"{self.name} backend at {self.base_url}"
        try:
            resp = await self._http().post(url, json=body)
        except httpx.TimeoutException as e:
            raise DeadlineExceeded(f"{where}: no reply within {self.timeout_s:g}s ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise Unavailable(f"{where}: {type(e).__name__}: {e}") from e
        if resp.status_code >= 400:
            raise http_error(where, resp.status_code, resp.text)
        try:
            return resp.json()
        except ValueError as e:
            raise Unavailable(f"{where}: reply is not JSON: {resp.text[:200]}") from e

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def http_error(where: str, status: int, text: str) -> Exception:
    """Map an endpoint's HTTP error to our error: context overflow is the caller's, outages are retryable."""
    detail = text.strip()[:500]
    if status in (429, 502, 503, 504) or status >= 500:
        return Unavailable(f"{where}: HTTP {status}: {detail}")
    if status in (400, 413, 422) and any(w in detail.lower() for w in _CONTEXT_WORDS):
        return InvalidArgument(f"{where} refused it: {detail}", field="prompt")
    return FailedPrecondition(f"{where} refused the request (HTTP {status}): {detail}")
