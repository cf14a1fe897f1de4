"""The vLLM path as pure functions: vLLM cannot be installed on our machines (no GPU), so its builders are tested here.

The LLMConfig keys are checked against the installed Ray's own schema, read from its source (importing
ray.serve.llm needs vLLM).
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import io
from pathlib import Path

from PIL import Image

from services.decision.backends.vllm_serve import (
    VLLMBackend,
    deployment_name,
    llm_config_kwargs,
    vllm_chat_request,
)
from services.decision.config import DecisionSettings
from services.decision.prompt import PromptInput, final_prompts, reasoning_prompt


def _ray_fields(cls_name: str) -> set[str]:
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations
    src = Path(next(iter(spec.submodule_search_locations))) / "llm/_internal/serve/core/configs/llm_config.py"
    for node in ast.parse(src.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            return {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    raise AssertionError(f"{cls_name} not found in {src}")


def _settings(**kw: object) -> DecisionSettings:
    s = DecisionSettings(backend="vllm", model="Qwen/Qwen2.5-VL-7B-Instruct", max_images=3, max_model_len=4096, **kw)
    s.vllm.accelerator_type = "H100"
    return s


def test_llm_config_kwargs_set_the_image_limit_pixels_and_context() -> None:
    kw = llm_config_kwargs(_settings(min_pixels=3136, max_pixels=200704))
    eng = kw["engine_kwargs"]
    assert eng["limit_mm_per_prompt"] == {"image": 3, "video": 0}
    assert eng["max_model_len"] == 4096
    assert eng["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}
    assert kw["model_loading_config"] == {
        "model_id": "Qwen/Qwen2.5-VL-7B-Instruct",
        "model_source": "Qwen/Qwen2.5-VL-7B-Instruct",
    }
    assert kw["accelerator_type"] == "H100"
    assert kw["deployment_config"]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 1}


def test_llm_config_kwargs_use_only_fields_of_rays_llm_config() -> None:
    kw = llm_config_kwargs(_settings(served_model="qwen-vl"))
    assert set(kw) <= _ray_fields("LLMConfig")
    assert set(kw["model_loading_config"]) <= _ray_fields("ModelLoadingConfig")
    assert kw["model_loading_config"]["model_id"] == "qwen-vl"
    assert "accelerator_type" not in llm_config_kwargs(DecisionSettings(backend="vllm"))


def test_deployment_name_follows_ray_serve_llm_naming() -> None:
    assert deployment_name(_settings()) == "LLMServer:Qwen--Qwen2_5-VL-7B-Instruct"
    s = _settings()
    s.vllm.deployment = "my-llm"
    assert deployment_name(s) == "my-llm"


def test_chat_request_constrains_the_letters_with_structured_outputs_and_inlines_images() -> None:
    s = _settings()
    q, ref = Image.new("RGB", (56, 84), (1, 2, 3)), Image.new("RGB", (56, 56), (4, 5, 6))
    (p,) = final_prompts(
        PromptInput("Is there any defect in the object?", {"A": "Yes.", "B": "No."}, n_references=1), q, [ref]
    )
    body = vllm_chat_request(p, s)
    assert body["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert body["structured_outputs"] == {"choice": ["A", "B"]}
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0 and body["stream"] is False
    urls = [part["image_url"]["url"] for part in body["messages"][0]["content"] if part["type"] == "image_url"]
    assert len(urls) == 2
    first = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert first.size == (56, 56) and first.getpixel((0, 0)) == (4, 5, 6)  # the reference comes first


def test_reasoning_pass_request_is_free_text_with_bounded_tokens() -> None:
    pin = PromptInput("Is there any defect in the object?", {"A": "Yes.", "B": "No."}, reasoning=True)
    body = vllm_chat_request(reasoning_prompt(pin, Image.new("RGB", (56, 56)), [], max_tokens=96), _settings())
    assert body["max_tokens"] == 96 and "structured_outputs" not in body


def test_vllm_backend_over_http_uses_the_openai_transport_with_structured_outputs() -> None:
    b = VLLMBackend(_settings(base_url="http://serve:8000/v1"))
    assert b._http is not None and b._http.constraint == "structured_outputs" and b._http.name == "vllm"
    assert b.max_images == 3 and b.model_id == "Qwen/Qwen2.5-VL-7B-Instruct"
