"""One decode path with limits; bad images are refused with the field named."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from PIL import Image

from echo.v1 import common_pb2
from services.common.errors import InvalidArgument, NotFound
from services.common.images import (
    ImageLimits,
    ImageStore,
    check_header,
    decode,
    encode_png,
    image_bytes,
    sha256_hex,
)


def _png(w: int = 8, h: int = 8) -> bytes:
    return encode_png(Image.new("RGB", (w, h), (10, 20, 30)))


def test_decode_returns_rgb_pixels() -> None:
    img = decode(_png(5, 7))
    assert img.mode == "RGB" and img.size == (5, 7)


def test_undecodable_bytes_are_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as e:
        decode(b"not an image", field="image.data")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(e.value).startswith("image.data:") and "cannot be decoded" in str(e.value)


@pytest.mark.parametrize("data", [b"plain text, not an image", b"\x89PNG but not really", _png()[:40]])
def test_an_undecodable_image_says_so_in_words_without_an_object_repr(data: bytes) -> None:
    for read in (decode, check_header):
        with pytest.raises(InvalidArgument) as err:
            read(data, field="image")
        message = err.value.message
        assert message.startswith("image: cannot be decoded as an image (")
        assert "0x" not in message and "BytesIO" not in message and "<" not in message


def test_limits_on_bytes_and_pixels_are_enforced() -> None:
    with pytest.raises(InvalidArgument, match="over the limit of 10"):
        decode(_png(), ImageLimits(max_bytes=10))
    with pytest.raises(InvalidArgument, match="pixels, over the limit of 100"):
        decode(_png(20, 20), ImageLimits(max_pixels=100))


def test_image_message_resolves_data_uri_and_refuses_empty(tmp_path: Path) -> None:
    data = _png()
    (tmp_path / "a.png").write_bytes(data)
    assert image_bytes(common_pb2.Image(data=data)) == data
    assert image_bytes(common_pb2.Image(uri=str(tmp_path / "a.png"))) == data
    assert image_bytes(common_pb2.Image(uri="a.png"), root=str(tmp_path)) == data
    with pytest.raises(InvalidArgument, match="image: is missing"):
        image_bytes(common_pb2.Image())
    with pytest.raises(NotFound, match=r"image\.uri"):
        image_bytes(common_pb2.Image(uri=str(tmp_path / "missing.png")))


def test_image_store_is_content_addressed(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "store"))
    data = _png()
    uri = store.put(data)
    assert store.put(data) == uri and sha256_hex(data) in uri
    assert store.get(uri) == data
    mem = ImageStore("memory://echo-test-store")
    assert mem.get(mem.put(data)) == data


def test_the_same_image_stored_by_many_threads_at_once_is_stored_whole(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = ImageStore(str(tmp_path / "store"))
    data = _png()
    for _ in range(20):  # the race is between a write and another's rename: repeat it
        (tmp_path / "store").joinpath(sha256_hex(data)[:2]).mkdir(parents=True, exist_ok=True)
        for f in (tmp_path / "store" / sha256_hex(data)[:2]).iterdir():
            f.unlink()
        with ThreadPoolExecutor(8) as pool:
            uris = list(pool.map(lambda _: store.put(data, durable=True), range(8)))
        assert len(set(uris)) == 1
        assert store.get_by_sha256(sha256_hex(data)) == data
    assert not list((tmp_path / "store").rglob("*.tmp"))
