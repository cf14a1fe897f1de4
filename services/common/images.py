"""Image I/O shared by every stage: decoding with limits, URIs, the image store.

One decode path for all stages, so the embedding and decision stages see the
same pixels (a lesson from anomalib's exported backends drifting apart).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import fsspec
from PIL import Image, UnidentifiedImageError

from services.common.errors import InvalidArgument, NotFound

Image.MAX_IMAGE_PIXELS = None  # we enforce our own, configurable limit


@dataclass(frozen=True)
class ImageLimits:
    """Refuse images above these before spending compute on them."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_suffix(data: bytes) -> str:
    """The file suffix an image store gives these bytes, from their magic number."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:4] in (b"RIFF",) and data[8:12] == b"WEBP":
        return ".webp"
    return ".img"


def read_uri(uri: str, *, field: str = "image.uri", root: str | None = None) -> bytes:
    """Read bytes from a local path, file:// or any fsspec URL; relative paths resolve against root."""
    if not uri:
        raise InvalidArgument("is empty", field=field)
    path = uri
    if root and "://" not in uri and not os.path.isabs(uri):
        path = os.path.join(root, uri)
    try:
        with fsspec.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise NotFound(f"no image at {uri!r}", field=field) from e
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read {uri!r}: {e}", field=field) from e


def image_bytes(image: object, *, field: str = "image", root: str | None = None) -> bytes:
    """Bytes of an echo.v1.Image (data or uri), refusing an empty one."""
    which = image.WhichOneof("source") if image is not None else None  # type: ignore[attr-defined]
    if which == "data":
        data = image.data  # type: ignore[attr-defined]
        if not data:
            raise InvalidArgument("data is empty", field=field)
        return data
    if which == "uri":
        return read_uri(image.uri, field=f"{field}.uri", root=root)  # type: ignore[attr-defined]
    raise InvalidArgument("is missing: set data (encoded JPEG/PNG bytes) or uri", field=field)


def check_header(data: bytes, limits: ImageLimits = ImageLimits(), field: str = "image") -> tuple[int, int]:
    """Refuse empty, oversized or unreadable images from the header alone (no pixel decode); returns (w, h).

    Cheap enough for the gateway's hot path; the stages that need pixels decode them once, with decode().
    """
    if not data:
        raise InvalidArgument("is empty", field=field)
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"is {len(data)} bytes, over the limit of {limits.max_bytes}", field=field)
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InvalidArgument(f"cannot be decoded as an image ({type(e).__name__}: {e})", field=field) from e
    if w * h > limits.max_pixels:
        raise InvalidArgument(f"is {w}x{h} = {w * h} pixels, over the limit of {limits.max_pixels}", field=field)
    return w, h


def decode(data: bytes, limits: ImageLimits = ImageLimits(), *, field: str = "image") -> Image.Image:
    """Decode to RGB, enforcing the byte and pixel limits; INVALID_ARGUMENT names the problem."""
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"is {len(data)} bytes, over the limit of {limits.max_bytes}", field=field)
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > limits.max_pixels:
            raise InvalidArgument(f"is {w}x{h} = {w * h} pixels, over the limit of {limits.max_pixels}", field=field)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InvalidArgument(f"cannot be decoded as an image ({type(e).__name__}: {e})", field=field) from e
    return img.convert("RGB")


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ImageStore:
    """Where reference pixels live: a local folder by default, any fsspec URL otherwise.

    Images are content-addressed (sha256), so storing twice is a no-op.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.fs.makedirs(self.root, exist_ok=True)

    def put(self, data: bytes, suffix: str = ".png") -> str:
        """Store bytes; return the URI to put in a memory payload."""
        digest = sha256_hex(data)
        rel = f"{digest[:2]}/{digest}{suffix}"
        path = f"{self.root}/{rel}"
        if not self.fs.exists(path):
            self.fs.makedirs(f"{self.root}/{digest[:2]}", exist_ok=True)
            with self.fs.open(path, "wb") as f:
                f.write(data)
        return self._uri(path)

    def get(self, uri: str) -> bytes:
        return read_uri(uri)

    def _uri(self, path: str) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol in ("file", "local"):
            return str(Path(path).resolve())
        return f"{protocol}://{path}"
