"""Image I/O shared by every stage: decoding with limits, URIs, the image store.

One decode path for all stages, so the embedding and decision stages see the
same pixels (a lesson from anomalib's exported backends drifting apart).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
from PIL import Image, UnidentifiedImageError

from services.common.errors import InvalidArgument, NotFound

Image.MAX_IMAGE_PIXELS = None  # we enforce our own, configurable limit


@dataclass(frozen=True)
class ImageLimits:
    """Refuse images above these before spending compute on them.

    `section` is the settings section they come from (e.g. "embedding"), so a refusal names the setting
    that controls it: `over the limit of 40000000 (embedding.max_image_pixels)`.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    section: str = ""

    def over(self, what: str, limit: int) -> str:
        """`over the limit of N (section.max_image_<what>)`: the words of every refusal."""
        return f"over the limit of {limit}" + (f" ({self.section}.max_image_{what})" if self.section else "")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """A file's sha256, read in 1 MiB chunks (weights and exported graphs are too big to hold twice)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png", "image/png"), (b"\xff\xd8\xff", ".jpg", "image/jpeg"))


def check_sha256(value: str, field: str = "sha256") -> str:
    """A sha256 as 64 lowercase hex digits; anything else is INVALID_ARGUMENT naming the field."""
    if not _SHA256.fullmatch(value):
        raise InvalidArgument(f"{value[:80]!r} is not 64 lowercase hex digits", field=field)
    return value


def _kind(data: bytes) -> tuple[str, str]:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp", "image/webp"
    return next(((suffix, ctype) for magic, suffix, ctype in _MAGIC if data.startswith(magic)), (".img", ""))


def image_suffix(data: bytes) -> str:
    """The file suffix an image store gives these bytes, from their magic number."""
    return _kind(data)[0]


def content_type_of(data: bytes) -> str:
    """The media type of encoded image bytes, from their magic number."""
    return _kind(data)[1] or "application/octet-stream"


CONTENT_ID = re.compile(r"^sha256:([0-9a-f]{64})$")


def content_id(sha256: str) -> str:
    """The id clients see for a stored image ("sha256:<hex>"): its content, never where the server keeps it."""
    return f"sha256:{sha256}" if sha256 else ""


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


_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn: markers without a length


def jpeg_complete(data: bytes) -> bool:
    """True when a JPEG's marker structure runs from SOI to EOI with every segment whole.

    PIL refuses a JPEG cut short ("image file is truncated"); nvjpeg decodes what is
    there and fills the rest. Checking the structure before any decoder makes every
    path refuse the same truncated files.
    """
    if data[:2] != b"\xff\xd8":
        return False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:
            return True
        if marker in _STANDALONE:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # entropy-coded data follows: skip to the next marker that is not FF00 or RSTn
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return False
                nxt = data[i + 1]
                if nxt == 0x00 or nxt in _STANDALONE or nxt == 0xFF:
                    i += 1 if nxt == 0xFF else 2
                    continue
                break
    return i + 2 <= n and data[i : i + 2] == b"\xff\xd9"


_OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def undecodable(err: Exception) -> str:
    """Why bytes are no image, in words: PIL's own message names its in-memory file by repr
    (`cannot identify image file <_io.BytesIO object at 0x7f...>`), which no message may show."""
    if isinstance(err, UnidentifiedImageError):
        return "cannot be decoded as an image (not PNG, JPEG or another format Pillow reads)"
    return f"cannot be decoded as an image ({type(err).__name__}: {_OBJECT_REPR.sub('', str(err))})"


def check_header(data: bytes, limits: ImageLimits = ImageLimits(), field: str = "image") -> tuple[int, int]:
    """Refuse empty, oversized, unreadable or truncated images without decoding pixels; returns (w, h).

    Cheap enough for the gateway's hot path; the stages that need pixels decode them once, with decode().
    """
    if not data:
        raise InvalidArgument("is empty", field=field)
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"is {len(data)} bytes, {limits.over('bytes', limits.max_bytes)}", field=field)
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InvalidArgument(undecodable(e), field=field) from e
    if w * h > limits.max_pixels:
        raise InvalidArgument(f"is {w}x{h} = {w * h} pixels, {limits.over('pixels', limits.max_pixels)}", field=field)
    if data[:3] == b"\xff\xd8\xff" and not jpeg_complete(data):  # every decoder, GPU or PIL, refuses it alike
        raise InvalidArgument(
            "cannot be decoded as an image (truncated JPEG: it ends before its last segment)", field=field
        )
    return w, h


def decode(data: bytes, limits: ImageLimits = ImageLimits(), *, field: str = "image") -> Image.Image:
    """Decode to RGB, enforcing the byte and pixel limits; INVALID_ARGUMENT names the problem."""
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"is {len(data)} bytes, {limits.over('bytes', limits.max_bytes)}", field=field)
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > limits.max_pixels:
            raise InvalidArgument(
                f"is {w}x{h} = {w * h} pixels, {limits.over('pixels', limits.max_pixels)}", field=field
            )
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InvalidArgument(undecodable(e), field=field) from e
    return img if img.mode == "RGB" else img.convert("RGB")  # convert() copies even an RGB image: a full copy


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

    def put(self, data: bytes, suffix: str = ".png", *, durable: bool = False) -> str:
        """Store bytes; return the URI to put in a memory payload.

        On a local disk the file appears whole or not at all (written aside, then renamed), and with
        durable=True it is fsynced before this returns; object stores give both on every PUT.
        """
        digest = sha256_hex(data)
        rel = f"{digest[:2]}/{digest}{suffix}"
        path = f"{self.root}/{rel}"
        if not self.fs.exists(path):
            self.fs.makedirs(f"{self.root}/{digest[:2]}", exist_ok=True)
            if self._local:
                _write_whole(Path(path), data, durable)
            else:
                with self.fs.open(path, "wb") as f:
                    f.write(data)
        return self._uri(path)

    def get(self, uri: str) -> bytes:
        return read_uri(uri)

    def _path_of(self, sha256: str) -> str | None:
        found = self.fs.glob(f"{self.root}/{sha256[:2]}/{sha256}.*")
        return found[0] if found else None

    def get_by_sha256(self, sha256: str) -> bytes | None:
        """The stored image with this content hash, or None."""
        path = self._path_of(check_sha256(sha256))
        if path is None:
            return None
        with self.fs.open(path, "rb") as f:
            return f.read()

    def delete_by_sha256(self, sha256: str) -> bool:
        path = self._path_of(check_sha256(sha256))
        if path is None:
            return False
        self.fs.rm(path)
        return True

    @property
    def _local(self) -> bool:
        return self._protocol in ("file", "local")

    @property
    def _protocol(self) -> str:
        return self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]

    def _uri(self, path: str) -> str:
        if self._local:
            return str(Path(path).resolve())
        return f"{self._protocol}://{path}"


def _write_whole(path: Path, data: bytes, durable: bool) -> None:
    """Write to a temporary name and rename, so a crash never leaves a partial file under the final name.

    The temporary name is this call's own: concurrent requests storing the same image (one image, several
    lines) each rename a whole file of their own onto the same content-addressed name.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (the directory entry itself is fsynced)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
