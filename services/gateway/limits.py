"""The Inspector's limits at the door: one table that validation reads.

Every numeric request setting and every limit a later stage enforces is a row here, so a request that a stage
would refuse after seconds of work is refused at the Inspector, before any stage is called, with
INVALID_ARGUMENT naming the field and the setting that sets the bound. A limit of another stage (the decision
stage's images per prompt, the embedding stage's image sizes) reaches this table through the gateway's own
settings or the ImageLimits the composition root passes, never by importing that stage.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image

from services.common.errors import InvalidArgument
from services.common.images import ImageLimits
from services.gateway.config import GatewaySettings

MAX_QUESTION_CHARS = 4000
MAX_OPTION_CHARS = 1000
MAX_OPTIONS = 5  # the letters A to E
RATIO_FLOOR_PIXELS = 4_000_000  # below this an image costs little whatever it compresses to
# What one inspection holds in embedded mode, per image: the encoded bytes once per stage call (the Inspector's
# request, then for each of the embedding, evidence and decision calls the request message, its serialized form on
# the in-process channel and the stage's parsed copy), and three full-size RGB decodes, one per stage that needs
# pixels (CLIP, patch features, the MLLM's processor), each resized to its own input size. Decoding once and
# sharing the pixels would cross the stages' gRPC contracts (the in-process channel serializes on purpose, so
# embedded mode behaves as the cluster), so it is not done. loadtests/drills/memory.py measured about 4.6 RGB copies
# per 16-megapixel inspection in flight while decode() still copied every RGB image once more (since fixed); the
# charge is the three decodes and one copy of headroom:
DECODES_PER_IMAGE = 4


@dataclass(frozen=True)
class Bound:
    """One row: a request field's closed range [low, high], and the setting that sets `high` (named when set)."""

    field: str
    low: float
    high: float
    setting: str = ""

    def check(self, value: float, field: str | None = None, what: str = "") -> None:
        """Refuse NaN, infinities and values out of range; `field` overrides the row's name (e.g. an index)."""
        name = field or self.field
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(f"must be a finite number, got {value}", field=name)
        if not self.low <= value <= self.high:
            source = f" ({self.setting})" if self.setting else ""
            raise InvalidArgument(
                f"must be between {self.low:g} and {self.high:g}{what}{source}, got {value:g}", field=name
            )


@dataclass(frozen=True)
class DoorLimits:
    """The table: every bound the Inspector checks before it calls a stage."""

    deadline_ms: Bound
    k_shots: Bound
    references: Bound  # how many images the caller sends as references
    question_chars: Bound
    option_chars: Bound
    options: Bound
    images: ImageLimits  # bytes, pixels and pixels per encoded byte of every image

    def rows(self) -> list[Bound]:
        return [self.deadline_ms, self.k_shots, self.references, self.question_chars, self.option_chars, self.options]


def door_limits(gateway: GatewaySettings, images: ImageLimits = ImageLimits()) -> DoorLimits:
    """The table from the gateway's section and the image limits of the stages that decode the images."""
    room = gateway.max_prompt_images - 1  # the query takes one image of the prompt
    return DoorLimits(
        deadline_ms=Bound("settings.deadline_ms", 0, gateway.max_deadline_ms, "gateway.max_deadline_ms"),
        k_shots=Bound("settings.k_shots", 0, room, "gateway.max_prompt_images less the query"),
        references=Bound("references", 0, room, "gateway.max_prompt_images less the query"),
        question_chars=Bound("question.text", 1, MAX_QUESTION_CHARS),
        option_chars=Bound("question.options", 1, MAX_OPTION_CHARS),
        options=Bound("question.options", 2, MAX_OPTIONS),
        images=images,
    )


def decoded_bytes(data: bytes, max_pixels_per_byte: float, field: str) -> int:
    """The bytes an image's pixels take once decoded by every stage that decodes it (width x height x channels,
    at least RGB's 3, x DECODES_PER_IMAGE), read from its header before any pixel is allocated; an image over
    RATIO_FLOOR_PIXELS that
    decodes to more than `max_pixels_per_byte` pixels per encoded byte (a flat PNG bomb) is refused.
    The header was checked (check_header) first, so it opens."""
    with Image.open(io.BytesIO(data)) as img:
        (w, h), bands = img.size, len(img.getbands())
    pixels = w * h
    if pixels > RATIO_FLOOR_PIXELS and pixels > max_pixels_per_byte * len(data):
        raise InvalidArgument(
            f"is {w}x{h} = {pixels} pixels from {len(data)} bytes, {pixels / len(data):.0f} pixels per byte, over "
            f"the limit of {max_pixels_per_byte:g} (gateway.max_pixels_per_byte): a decompression bomb",
            field=field,
        )
    return pixels * max(3, bands) * DECODES_PER_IMAGE
