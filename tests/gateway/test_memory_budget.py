"""The memory budget: inspections are admitted by the decoded bytes of their images, read from the headers before
any pixel is allocated; flat PNG bombs are refused by their decompression ratio."""

from __future__ import annotations

import asyncio
import io
import math
from pathlib import Path

import pytest
from PIL import Image

from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.images import ImageStore
from services.common.memory import rss_bytes, trim_heap
from services.gateway.admission import Admission
from services.gateway.config import GatewaySettings
from services.gateway.core import Inspector
from services.gateway.domain import Inspection
from services.gateway.limits import BYTES_PER_PIXEL, ENCODED_COPIES, STAGE_BYTES_PER_PIXEL, decoded_bytes


class _NoStage:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"a stage was called ({name}) before the refusal")


def _png(w: int, h: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def _inspection(image: bytes) -> Inspection:
    return Inspection(
        "line-a", image, "Is there any defect?", {"A": "Yes.", "B": "No."}, "Anomaly Detection", category="screw"
    )


def _inspector(tmp_path: Path, **gateway: object) -> Inspector:
    return Inspector(_NoStage(), None, GatewaySettings(**gateway), ImageStore(str(tmp_path)))  # type: ignore[arg-type]


def test_past_the_budget_an_inspection_is_resource_exhausted_naming_the_setting() -> None:
    a = Admission(64, max_bytes=1000)
    first = a.admit(10, charge=900)
    with pytest.raises(ResourceExhausted) as e:
        a.admit(10, charge=200)
    assert "gateway.max_inflight_bytes" in str(e.value)
    a.finished(first, answered=True)
    assert a.bytes_in_flight == 0
    a.finished(a.admit(10, charge=5000), answered=True)  # alone, even one larger than the budget runs


def test_the_charge_is_read_from_the_header_before_any_stage_is_called(tmp_path: Path) -> None:
    inspector = _inspector(tmp_path, max_inflight_bytes=3_000_000)
    held = inspector.admission.admit(10, charge=1)  # another inspection in flight
    with pytest.raises(ResourceExhausted) as e:
        asyncio.run(inspector.inspect(_inspection(image := _png(1000, 400))))
    charge = math.ceil(1000 * 400 * BYTES_PER_PIXEL) + len(image) * ENCODED_COPIES  # about 3.6 MB
    assert f"this inspection's {charge} " in str(e.value) and "gateway.max_inflight_bytes" in str(e.value)
    inspector.admission.finished(held, answered=False)


def test_the_charge_holds_the_fan_out_stages_pixels_at_pillows_four_bytes_each_and_the_encoded_copies() -> None:
    image = _png(2000, 1000)
    fan_out = STAGE_BYTES_PER_PIXEL["embedding"] + STAGE_BYTES_PER_PIXEL["evidence"]
    assert max(fan_out, STAGE_BYTES_PER_PIXEL["decision"]) <= BYTES_PER_PIXEL  # two stages decode at once
    assert BYTES_PER_PIXEL >= 2 * 4  # each at four bytes a pixel
    assert decoded_bytes(image, 100, "image") == math.ceil(2_000_000 * BYTES_PER_PIXEL) + len(image) * ENCODED_COPIES


def test_a_flat_png_bomb_under_the_pixel_limit_is_refused_by_its_ratio(tmp_path: Path) -> None:
    bomb = _png(6000, 6000, "1")  # 36 megapixels in a few kilobytes
    assert len(bomb) < 120_000
    with pytest.raises(InvalidArgument) as e:
        asyncio.run(_inspector(tmp_path).inspect(_inspection(bomb)))
    assert e.value.field == "image" and "gateway.max_pixels_per_byte" in str(e.value)


def test_trimming_the_heap_after_a_burst_returns_freed_memory() -> None:
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 256 MB in blocks below the mmap threshold
    for b in blocks[::2]:
        b[0] = 1
    del blocks[1:]  # all but the first: glibc keeps the freed pages under the first for reuse
    before = rss_bytes()
    assert trim_heap()
    assert rss_bytes() < before
