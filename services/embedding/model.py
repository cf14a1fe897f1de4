"""Load an open_clip model from a name and a weights source, offline, and never silently.

Weights come from exactly one place: a pretrained tag found in the local hub
cache, a checkpoint file, a `local-dir:` folder, or `random` (seeded random
init, the offline test model). Anything missing raises ConfigError naming the
tag or path: a CLIP with random weights where real ones were configured would
serve meaningless references without anyone noticing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError
from services.embedding.config import EmbeddingSettings
from services.embedding.pretrained import LITE_DIM, uses_lite

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "echo-tiny-clip"
_registered = False


def register_model_configs() -> None:
    """Make our own configs (echo-tiny-clip) known to open_clip.create_model*()."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    _registered = True


@dataclass
class LoadedClip:
    """An open_clip model ready for inference, with what the serving code needs to know about it."""

    model: Any  # open_clip.CLIP (torch.nn.Module)
    tokenizer: Any
    preprocess: Any  # torchvision transform: PIL -> normalized CHW float tensor
    preprocess_cfg: dict[str, Any]
    model_id: str
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    dim: int = 0
    info: dict[str, str] = field(default_factory=dict)
    texts: bool = True  # it has a text tower (EmbedTexts answers)


def model_config(model: str) -> dict[str, Any]:
    """The open_clip architecture config (embed_dim, vision_cfg, text_cfg) without building the model."""
    if model.startswith("local-dir:"):
        path = Path(model.removeprefix("local-dir:")) / "open_clip_config.json"
        if not path.is_file():
            raise ConfigError(f"embedding.model {model!r}: {path} does not exist")
        try:
            return json.loads(path.read_text())["model_cfg"]
        except (ValueError, KeyError) as e:
            raise ConfigError(f"embedding.model {model!r}: {path} has no valid 'model_cfg' ({e})") from e
    register_model_configs()
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        known = ", ".join(sorted(open_clip.list_models())[:12])
        raise ConfigError(f"embedding.model {model!r} is not an open_clip model (known include: {known}, ...)")
    return cfg


def embedding_dim(settings: EmbeddingSettings) -> int:
    """The embedding size the configured image encoder gives, read from its config (cheap: nothing is built)."""
    if uses_lite(settings):
        return LITE_DIM
    return int(model_config(settings.model)["embed_dim"])


def _cached_tag_file(model: str, tag: str, cache_dir: str) -> tuple[str, dict[str, Any]]:
    """Path of a pretrained tag's weights in the local cache, or ConfigError; never downloads."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ConfigError(
            f"embedding.weights {tag!r} is neither a checkpoint file nor a pretrained tag of {model} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith(".bin"):
            names.insert(0, filename.removesuffix(".bin") + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir or None)
            if isinstance(found, str) and os.path.isfile(found):
                return found, cfg
            looked.append(f"hf:{repo}/{name}")
    url = cfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path, cfg
        looked.append(path)
    raise ConfigError(
        f"embedding.weights {tag!r} for {model} is not in the local cache (looked for {', '.join(looked)}"
        f"{' in ' + cache_dir if cache_dir else ''}). Nothing is downloaded: copy the weights into the hub cache, "
        "or set embedding.weights to a checkpoint path or 'random' (tests only)."
    )


def _pick_device(settings: EmbeddingSettings) -> tuple[Any, Any]:
    import torch

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("embedding.device is 'cuda' but no CUDA device is available")
    cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    precision = settings.precision if settings.precision != "auto" else ("bf16" if cuda else "fp32")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return device, dtype


def load_clip(settings: EmbeddingSettings) -> LoadedClip:
    """Build the configured model on the configured device, in eval mode, or raise ConfigError."""
    import open_clip
    import torch

    register_model_configs()
    model_config(settings.model)  # a clear error for an unknown name or a bad local-dir
    device, dtype = _pick_device(settings)
    name, weights = settings.model, settings.weights
    kwargs: dict[str, Any] = {}
    pretrained: str | None = None
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        ckpts = [p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in folder.glob(ext)]
        if not ckpts:
            raise ConfigError(f"embedding.model {name!r}: no weights (*.safetensors, *.bin, *.pth) in {folder}")
        model_id = f"{name}"
    elif weights == "random":
        model_id = f"{name}:random(seed={settings.seed})"
    elif os.path.isfile(weights):
        pretrained = weights
        model_id = f"{name}:{Path(weights).name}"
    elif "/" in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise ConfigError(f"embedding.weights: checkpoint {weights!r} does not exist")
    else:
        pretrained, tag_cfg = _cached_tag_file(name, weights, settings.cache_dir)
        model_id = f"{name}:{weights}"
        # The tag's own preprocessing and activation, as open_clip would apply them for the tag itself.
        kwargs.update(
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # every replica builds the same random test model
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, **kwargs)
        except (RuntimeError, FileNotFoundError, ValueError, KeyError) as e:
            raise ConfigError(f"cannot load embedding model {model_id}: {e}") from e
    model = model.to(device=device, dtype=dtype).eval()
    visual = model.visual
    if hasattr(visual, "output_tokens"):
        visual.output_tokens = True  # our forward also returns patch tokens (nearly free)
    loaded = LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        preprocess=preprocess,
        preprocess_cfg=dict(open_clip.get_model_preprocess_cfg(model)),
        model_id=model_id,
        device=device,
        dtype=dtype,
    )
    log.info("embedding model %s on %s (%s)", model_id, device, str(dtype).removeprefix("torch."))
    return loaded
