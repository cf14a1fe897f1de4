"""A real offline image encoder: EfficientNet-Lite0's pooled ImageNet features, where no CLIP weights exist.

Offline, the embedding stage's CLIP has random weights: every reference looks alike ("similarity 0.999") and
category inference votes on noise. The ImageNet weights of EfficientNet-Lite0 ship with Echo-IAD (the evidence
stage's backbone), and its global-average-pooled pre-logit features (1280-d) tell products apart. This module
makes them a `LoadedClip` that `ClipEncoder` serves like any image tower: open_clip-style preprocessing (short
side to 224, centre crop, ImageNet normalisation), L2-normalised vectors, no patch tokens, and no text tower
(EmbedTexts is refused; category inference then votes on image neighbours alone).

The model id names the weights file and its hash, so a memory built with another encoder is refused by the
retrieval stage's dimension check (1280 against CLIP's) and the id shows in every trace.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common.errors import ConfigError, FailedPrecondition
from services.common.images import file_digest
from services.common.runtime import Runner, compile_features
from services.embedding.config import EmbeddingSettings
from services.embedding.model import LoadedClip, _pick_device
from services.embedding.pretrained import (
    LITE_DIM,
    LITE_ENCODER,
    load_weights,
    packaged_weights_path,
    read_state_dict,
)

log = logging.getLogger(__name__)

LITE_SIZE = 224  # its ImageNet training resolution
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SETTING = "embedding.image_encoder"


class NoTextTokenizer:
    """The tokenizer of an encoder without a text tower: refuses, naming the field."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __call__(self, texts: list[str]) -> Any:
        raise FailedPrecondition(
            f"model {self.model_id} embeds images only (no text tower); configure CLIP weights for text embeddings",
            field="texts",
        )


def load_lite(settings: EmbeddingSettings) -> LoadedClip:
    """EfficientNet-Lite0 with the packaged ImageNet weights as an image tower; ConfigError names what is wrong."""
    import open_clip
    import timm
    import torch

    device, dtype = _pick_device(settings)
    path = packaged_weights_path(SETTING)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_weights(model, read_state_dict(path, SETTING), "positional", repr(path.name), "efficientnet_lite0", SETTING)
    model_id = f"efficientnet_lite0[{path.name}@{file_digest(path)[:12]}]/pool=avg/size={LITE_SIZE}"

    class Tower(torch.nn.Module):
        """The CLIP-like surface ClipEncoder calls: `visual` (no patch tokens) and `encode_image`."""

        def __init__(self) -> None:
            super().__init__()
            self.visual = model

        def encode_image(self, x: Any) -> Any:
            return self.visual.forward_head(self.visual.forward_features(x), pre_logits=True)

        def encode_text(self, tokens: Any) -> Any:
            raise FailedPrecondition(f"model {model_id} embeds images only (no text tower)", field="texts")

    tower = Tower().to(device=device, dtype=dtype).eval()
    try:
        preprocess = open_clip.image_transform(
            LITE_SIZE,
            is_train=False,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            resize_mode="shortest",
            interpolation="bicubic",
        )
    except Exception as e:  # an open_clip without these arguments
        raise ConfigError(f"{SETTING} {LITE_ENCODER!r}: cannot build its preprocessing: {e}") from e
    cfg = {
        "size": LITE_SIZE,
        "mode": "RGB",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    log.info("embedding model %s on %s (the offline image encoder: no CLIP weights configured)", model_id, device)
    return LoadedClip(tower, NoTextTokenizer(model_id), preprocess, cfg, model_id, device, dtype, LITE_DIM, texts=False)


def lite_runner(settings: EmbeddingSettings, loaded: LoadedClip) -> Runner | None:
    """embedding.runtime's runner of the lite encoder's pooled features (None: torch runs it: on CUDA, at a half
    precision, or when the runtime is torch). ConfigError names embedding.runtime if the graph cannot run."""
    import torch

    if settings.runtime == "torch" or loaded.device.type != "cpu" or loaded.dtype != torch.float32:
        return None
    tower = loaded.model
    runner = compile_features(
        settings.runtime,
        tower.encode_image,
        tower,
        LITE_SIZE,
        f"{loaded.model_id}/graph=encode_image",
        settings.runtime_cache,
        setting="embedding.runtime",
    )
    log.info("embedding model %s on %s", loaded.model_id, settings.runtime)
    return runner
