"""vLLM for Qwen2-VL / Qwen2.5-VL on GPU, through Ray Serve LLM (`ray[llm]`, the `[gpu]` extra).

The builders here are pure functions (tested on CPU machines, where vLLM
cannot be installed): the `LLMConfig` keyword arguments and the chat request.
vllm and ray.serve.llm are imported only inside the functions that deploy or
call the engine.

Two ways to reach the engine: by Serve deployment handle from inside the
cluster (default), or over HTTP through the Serve LLM app's OpenAI route or a
plain `vllm serve` when decision.base_url is set.
"""

from __future__ import annotations

from typing import Any

from services.common.errors import DeadlineExceeded, FailedPrecondition, Unavailable
from services.decision.backends.base import Backend, Reply
from services.decision.backends.openai_compat import OpenAIBackend, chat_request, http_error
from services.decision.config import DecisionSettings
from services.decision.prompt import ChatPrompt


def served_model_id(settings: DecisionSettings) -> str:
    return settings.served_model or settings.model


def llm_config_kwargs(settings: DecisionSettings) -> dict[str, Any]:
    """Keyword arguments of `ray.serve.llm.LLMConfig` for the decision model (Ray 2.60 schema).

    The pixel budget is applied before the model (preprocess.py) and again as
    the processor's limit, so no image can blow the context or the memory.
    """
    v = settings.vllm
    engine_kwargs: dict[str, Any] = {
        "max_model_len": settings.max_model_len,
        "limit_mm_per_prompt": {"image": settings.max_images, "video": 0},
        "mm_processor_kwargs": {"min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels},
        "tensor_parallel_size": v.tensor_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "enable_prefix_caching": v.enable_prefix_caching,
        "dtype": v.dtype,
        "seed": settings.seed,
    }
    kwargs: dict[str, Any] = {
        "model_loading_config": {"model_id": served_model_id(settings), "model_source": settings.model},
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "autoscaling_config": {"min_replicas": v.min_replicas, "max_replicas": v.max_replicas},
            "max_ongoing_requests": v.max_ongoing_requests,
        },
    }
    if v.accelerator_type:
        kwargs["accelerator_type"] = v.accelerator_type
    return kwargs


def deployment_name(settings: DecisionSettings) -> str:
    """The LLMServer deployment Ray Serve LLM creates for the model id (its own naming rule)."""
    if settings.vllm.deployment:
        return settings.vllm.deployment
    return "LLMServer:" + served_model_id(settings).replace("/", "--").replace(".", "_")


def vllm_chat_request(prompt: ChatPrompt, settings: DecisionSettings) -> dict[str, Any]:
    """The chat request for vLLM: constrained prompts carry `structured_outputs: {"choice": [...]}`."""
    return chat_request(prompt, model=served_model_id(settings), constraint="structured_outputs")


def build_llm_app(settings: DecisionSettings) -> Any:  # pragma: no cover - needs ray[llm] and a GPU
    """The Ray Serve LLM application (OpenAI router + LLMServer) for the decision model."""
    from ray.serve.llm import LLMConfig, build_openai_app

    return build_openai_app({"llm_configs": [LLMConfig(**llm_config_kwargs(settings))]})


class VLLMBackend(Backend):
    """Calls the Ray Serve LLM deployment by handle (or, with base_url, over HTTP)."""

    name = "vllm"

    def __init__(self, settings: DecisionSettings) -> None:
        self.settings = settings
        self.model_id = served_model_id(settings)
        self.max_images = settings.max_images
        self._http: OpenAIBackend | None = None
        self._handle: Any = None
        if settings.base_url:
            self._http = OpenAIBackend(
                settings.base_url,
                model=self.model_id,
                api_key=settings.api_key,
                constraint="structured_outputs",
                timeout_s=settings.timeout_s,
                max_images=settings.max_images,
                name="vllm",
            )

    async def complete(self, prompt: ChatPrompt) -> Reply:
        if self._http is not None:
            return await self._http.complete(prompt)
        return await self._complete_by_handle(vllm_chat_request(prompt, self.settings))

    async def _complete_by_handle(self, body: dict[str, Any]) -> Reply:  # pragma: no cover - needs ray[llm]
        where = f"vllm backend (Serve deployment {deployment_name(self.settings)!r})"
        try:
            from ray import serve
            from ray.serve.llm.openai_api_models import ChatCompletionRequest
        except ImportError as e:
            raise FailedPrecondition(f"{where}: ray[llm] and vllm are not installed (the [gpu] extra): {e}") from e
        if self._handle is None:
            try:
                self._handle = serve.get_deployment_handle(
                    deployment_name(self.settings), app_name=self.settings.vllm.app_name
                ).options(stream=True)
            except Exception as e:
                raise Unavailable(f"{where}: no such deployment: {e}") from e
        try:
            stream = self._handle.chat.remote(ChatCompletionRequest(**body))
            response = None
            async for item in stream:
                response = item
                break
        except TimeoutError as e:
            raise DeadlineExceeded(f"{where}: no reply: {e}") from e
        except Exception as e:
            raise Unavailable(f"{where}: {type(e).__name__}: {e}") from e
        if response is None:
            raise Unavailable(f"{where}: empty reply")
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        if "error" in data and "choices" not in data:
            err = data["error"] or {}
            raise http_error(where, int(err.get("code") or 500), str(err.get("message") or err))
        msg = data["choices"][0]["message"]
        usage = data.get("usage") or {}
        return Reply(
            msg.get("content") or "", int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
