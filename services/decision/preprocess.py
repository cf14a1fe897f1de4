"""One image path for every decision backend: decode, then resize to a fixed pixel budget.

Qwen2-VL turns each 28x28 pixel block into one token, so the pixel budget is the
token budget. Resizing here, before any backend, means vLLM, a hosted endpoint
and the local model all see the same pixels, the model's own processor has
nothing left to resize (vLLM users saw `max_pixels` ignored and GPUs starved by
single-threaded resizing), and the time is reported on its own (preprocess_ms).
"""

from __future__ import annotations

import math

from PIL import Image

from services.common.errors import InvalidArgument
from services.common.images import ImageLimits, decode

PATCH = 14  # Qwen2-VL vision patch
MERGE = 2  # 2x2 patches merge into one LLM token
FACTOR = PATCH * MERGE


def fit_size(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = FACTOR) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor` with min_pixels <= h*w <= max_pixels, aspect kept.

    The same rule as Qwen2-VL's `smart_resize`, so the processor leaves our output as it is
    (tests/decision/test_decision_preprocess.py holds the two equal). Not transformers' own function:
    importing it loads torch (4.5 s and 742 MiB measured here), which a decision stage on an
    OpenAI-compatible endpoint (backends/openai_compat.py) never otherwise loads, and it raises a
    bare ValueError where a request's error must name its field.
    """
    if height <= 0 or width <= 0:
        raise InvalidArgument(f"has no pixels ({width}x{height})", field="image")
    if max(height, width) / min(height, width) > 200:
        raise InvalidArgument(f"aspect ratio of {width}x{height} is over 200", field="image")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def fit_pixels(img: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """Resize an RGB image to the pixel budget (bicubic, as the Qwen2-VL processor does)."""
    h, w = fit_size(img.height, img.width, min_pixels, max_pixels)
    if (h, w) == (img.height, img.width):
        return img
    return img.resize((w, h), Image.Resampling.BICUBIC)


def image_tokens(img: Image.Image) -> int:
    """LLM tokens one budget-fitted image costs in Qwen2-VL."""
    return (img.height // FACTOR) * (img.width // FACTOR)


def prepare_images(
    images: list[tuple[str, bytes]], min_pixels: int, max_pixels: int, limits: ImageLimits = ImageLimits()
) -> list[Image.Image]:
    """Decode and fit each (field name, encoded bytes); errors name the field."""
    out = []
    for field, data in images:
        img = decode(data, limits, field=field)
        try:
            out.append(fit_pixels(img, min_pixels, max_pixels))
        except InvalidArgument as e:
            raise InvalidArgument(str(e).removeprefix("image: "), field=field) from None
    return out
