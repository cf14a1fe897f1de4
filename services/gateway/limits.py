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
# What one inspection holds at once in embedded mode, per image, measured by `python -m loadtests.drills.memory
# --per-stage` (each stage's own decode-and-preprocess path in a fresh process, peak RSS over the RSS before, on a
# 16-megapixel JPEG and a 36-megapixel flat PNG; the larger figure of the two): Pillow keeps RGB at 4 bytes a pixel,
# and each stage that needs pixels decodes the image once (decoding once and sharing the pixels would cross the
# stages' gRPC contracts: the in-process channel serializes on purpose, so embedded mode behaves as the cluster).
STAGE_BYTES_PER_PIXEL = {"embedding": 4.45, "evidence": 4.65, "decision": 5.32}
# The embedding and evidence stages run at once (the gateway's fan-out), the decision stage after both answered,
# so an inspection holds at most the larger of the two phases; the memory drill's burst peak matched this model
# (11 inspections of the 16 MP JPEG in flight grew the RSS by 234 MB each: the fan-out's pixels plus ~5 copies of
# the encoded bytes).
# In a burst each admitted inspection held more than the stages' one-image probes add up to: the memory drill's
# 200-request bursts (2026-12-08, 12 of the 16 MP JPEG admitted, 2 malloc arenas, bodies gated at
# server.max_concurrent_rpcs 32) grew the RSS by 213-226 MB per admitted inspection against 175 MB charged: freed
# pages held between threads, and the stages' copies alive together. The charge carries that measured factor.
BURST_OVERHEAD = 1.4
BYTES_PER_PIXEL = BURST_OVERHEAD * max(
    STAGE_BYTES_PER_PIXEL["embedding"] + STAGE_BYTES_PER_PIXEL["evidence"], STAGE_BYTES_PER_PIXEL["decision"]
)
# The encoded bytes held at once: the Inspector's received message and its parsed request, then for each of the two
# stages called at once the serialized request on the in-process channel and the stage's parsed copy.
ENCODED_COPIES = 6


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
    """The bytes an inspection holds at once for this image (its pixels at BYTES_PER_PIXEL, its encoded bytes
    ENCODED_COPIES times), read from its header before any pixel is allocated; an image over RATIO_FLOOR_PIXELS
    that decodes to more than `max_pixels_per_byte` pixels per encoded byte (a flat PNG bomb) is refused.
    The header was checked (check_header) first, so it opens."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
    pixels = w * h
    if pixels > RATIO_FLOOR_PIXELS and pixels > max_pixels_per_byte * len(data):
        raise InvalidArgument(
            f"is {w}x{h} = {pixels} pixels from {len(data)} bytes, {pixels / len(data):.0f} pixels per byte, over "
            f"the limit of {max_pixels_per_byte:g} (gateway.max_pixels_per_byte): a decompression bomb",
            field=field,
        )
    return math.ceil(pixels * BYTES_PER_PIXEL) + len(data) * ENCODED_COPIES
