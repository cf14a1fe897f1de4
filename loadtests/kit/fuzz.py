"""What the fuzzers share: every RPC of every echo.v1 service, nasty inputs, a request builder, the verdict.

Used by the structured fuzz tests (hypothesis, tests/security/test_fuzz_rpcs.py) and the
byte-level fuzzer (atheris, loadtests/drills/fuzz_rpcs.py). Both draw through a `Source`, so
one builder turns either fuzzer's choices into requests for any service, including
services added later (the list comes from the generated stubs).
"""

from __future__ import annotations

import importlib
import io
import math
import random
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import echo.v1

ALLOWED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Statuses a fuzzed request may get from a healthy server: OK or a defined refusal. UNKNOWN, INTERNAL
(a crash or a bug), UNAVAILABLE and DEADLINE_EXCEEDED (a stall) are failures."""


@dataclass(frozen=True)
class Rpc:
    service: str
    method: str
    request: type[Message]
    response: type[Message] | None = None

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


def rpcs() -> list[Rpc]:
    """Every unary RPC of every echo.v1 service whose stubs are generated (new services included)."""
    for path in sorted(Path(echo.v1.__file__).parent.glob("*_pb2.py")):
        importlib.import_module(f"echo.v1.{path.stem}")
    pool = descriptor_pool.Default()
    out = []
    for path in sorted(Path(echo.v1.__file__).parent.glob("*.proto")):
        for service in pool.FindFileByName(f"echo/v1/{path.name}").services_by_name.values():
            for m in service.methods:
                if not (m.client_streaming or m.server_streaming):
                    out.append(
                        Rpc(service.full_name, m.name, GetMessageClass(m.input_type), GetMessageClass(m.output_type))
                    )
    return out


# ---- nasty inputs ------------------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header announcing width x height pixels, with a few hundred bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encoded(fmt: str, size: tuple[int, int], seed: int, **kw: Any) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _flip(data: bytes, seed: int, n: int = 4) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(n):
        i = rng.randrange(8, len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def image_corpus() -> list[bytes]:
    """Valid, corrupt, truncated, bomb-headed and odd images: small, so a fuzz run stays fast."""
    jpeg = _encoded("JPEG", (64, 48), 1, quality=90)
    progressive = _encoded("JPEG", (40, 40), 2, quality=70, progressive=True)
    png = _encoded("PNG", (48, 64), 3)
    return [
        jpeg,
        png,
        progressive,
        jpeg[: len(jpeg) // 2],  # truncated JPEGs: the GPU decoder would fill the rest in
        jpeg[:-2],
        progressive[: len(progressive) - 40],
        png[: len(png) // 2],
        _flip(jpeg, 4),
        _flip(png, 5),
        png_bomb(),  # 10^10 pixels announced
        png_bomb(1, 30_000),  # within the pixel limit, aspect ratio 30000
        _encoded("PNG", (1, 1), 6),
        _encoded("GIF", (16, 16), 7),
        _encoded("BMP", (16, 16), 8),
        b"",
        b"\xff\xd8\xff",
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\x00\x00\x00\x00WEBP",
        b"not an image at all",
        bytes(random.Random(9).randrange(256) for _ in range(300)),
    ]


BAD_STRINGS = [
    "",
    " ",
    "line-1",
    "x" * 100_000,  # huge
    "\u202eevil\u202c",  # right-to-left override
    "a\u0000b",  # NUL
    "ｌｉｎｅ",  # full-width
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\U0001f600" * 50,  # emoji
    "\u200b\u200d\ufeff",  # zero-width
    "../../../../etc/passwd",
    "line/with/slashes",
    "*",
    "A",
    "Z",
    "%s%n%x",
    "${HOME}",
    "'; DROP TABLE x; --",
]
BAD_URIS = [
    "/etc/passwd",
    "file:///etc/hostname",
    "http://169.254.169.254/latest/meta-data",
    "sha256:" + "0" * 64,
    "sha256:xyz",
    "memory://nothing",
    "../../secret.png",
    "",
]


# ---- building requests from a fuzzer's choices ------------------------------------------------------------------
class Source(Protocol):
    """Where a fuzzer's choices come from (hypothesis' data object, atheris' FuzzedDataProvider)."""

    def integer(self, lo: int, hi: int) -> int: ...
    def floating(self) -> float: ...
    def text(self) -> str: ...
    def blob(self) -> bytes: ...


_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_EDGE_INTS = [0, 1, -1, 2, 3, 8, 64, 1000, 10_001, 2**31 - 1, -(2**31)]


def _scalar(f: FieldDescriptor, src: Source, images: list[bytes]) -> Any:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return src.text()
    if t == FieldDescriptor.TYPE_BYTES:
        pick = src.integer(0, len(images))
        return images[pick] if pick < len(images) else src.blob()
    if t == FieldDescriptor.TYPE_BOOL:
        return bool(src.integer(0, 1))
    if t == FieldDescriptor.TYPE_ENUM:
        return src.integer(-3, 12)  # proto3 enums are open: undefined values arrive as they are
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        x = src.floating()
        if t == FieldDescriptor.TYPE_FLOAT and math.isfinite(x) and abs(x) > 3.4e38:
            x = math.copysign(math.inf, x)
        return x
    lo, hi = _INTS[t]
    if src.integer(0, 1):
        return max(lo, min(hi, _EDGE_INTS[src.integer(0, len(_EDGE_INTS) - 1)]))
    return src.integer(lo, hi)


def build(cls: type[Message], src: Source, images: list[bytes], depth: int = 0) -> Message:
    """A request of type `cls` with each field left unset or filled from `src` (nested up to depth 3)."""
    msg = cls()
    if cls.DESCRIPTOR.full_name == "echo.v1.Image":
        if src.integer(0, 3) == 0:
            msg.uri = BAD_URIS[src.integer(0, len(BAD_URIS) - 1)]
        else:
            msg.data = _scalar(cls.DESCRIPTOR.fields_by_name["data"], src, images)
        return msg
    for f in cls.DESCRIPTOR.fields:
        if src.integer(0, 3) == 0:
            continue
        try:
            _fill(msg, f, src, images, depth)
        except (ValueError, TypeError):  # e.g. a lone surrogate no proto string can hold
            continue
    return msg


def _fill(msg: Message, f: FieldDescriptor, src: Source, images: list[bytes], depth: int) -> None:
    target = getattr(msg, f.name)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        for _ in range(src.integer(0, 4)):
            key = _scalar(key_f, src, images)
            if value_f.message_type is not None:
                if depth < 3:
                    target[key].CopyFrom(build(GetMessageClass(value_f.message_type), src, images, depth + 1))
            else:
                target[key] = _scalar(value_f, src, images)
        return
    repeated = f.is_repeated
    n = (512 if src.integer(0, 5) == 0 else src.integer(0, 4)) if repeated else 1
    for _ in range(n):
        if f.message_type is not None:
            if depth >= 3:
                return
            value = build(GetMessageClass(f.message_type), src, images, depth + 1)
            if repeated:
                target.add().CopyFrom(value)
            else:
                target.CopyFrom(value)
        elif repeated:
            target.append(_scalar(f, src, images))
        else:
            setattr(msg, f.name, _scalar(f, src, images))


def malformed(seed_bytes: bytes) -> Iterator[bytes]:
    """Bodies that are not valid protobuf: wrong wire types, overlong lengths, bad UTF-8, bare garbage."""
    yield seed_bytes
    yield b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length far past the end
    yield b"\x12\x02\xff\xfe"  # field 2 (a string in most requests) holding invalid UTF-8
    yield b"\x0d\x00\x00"  # field 1 as a truncated fixed32
    yield b"\x08" + b"\xff" * 11  # a varint longer than ten bytes
    yield b"\x0b\x0c"  # a group start and a mismatched end
    yield b"\x07"  # wire type 7 does not exist


LEAKS = re.compile(
    r"(?P<path>(?<![\w.:/])/(?:[\w.-]+/)+[\w.-]+|[A-Za-z]:\\[\w\\.-]+)"  # /srv/data/images/ef/x.png
    r"|(?P<address>(?<!\w)0x[0-9a-fA-F]{6,}|\b(?:\d{1,3}\.){3}\d{1,3}:\d+|\blocalhost:\d+|\b[A-Za-z][\w.-]*:\d{3,5}\b)"
    r"|(?P<repr><[\w.]+ object at |<(?:class|function|module|bound method) )"
)
"""What no message may carry: a server path, an address (heap, host:port, host:pid) or an object's repr."""


def leak(details: str, sent: bytes = b"") -> str | None:
    """The first path, address or repr in a message that the caller did not send itself (an echo is no leak)."""
    for m in LEAKS.finditer(details):
        if m.group().encode() not in sent:
            return f"{m.lastgroup} {m.group()!r}"
    return None


def _strings(msg: Message) -> Iterator[str]:
    """Every string an answer carries, in nested messages, lists and maps (keys and values) alike."""
    for f, value in msg.ListFields():
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            for k, v in value.items():
                yield from (k,) if isinstance(k, str) else ()
                yield from _strings(v) if isinstance(v, Message) else ((v,) if isinstance(v, str) else ())
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            for m in value if f.is_repeated else (value,):
                yield from _strings(m)
        elif f.type == FieldDescriptor.TYPE_STRING:
            yield from value if f.is_repeated else (value,)


def answer_leak(rpc: Rpc, reply: bytes, sent: bytes = b"") -> str | None:
    """A server path or an object's repr in any string of an OK answer (Search's references, Stats' points...),
    not only in error messages: no answer names where the server keeps a file (issue 25). Addresses stay with
    the message check: the host:port pattern is too loose for free answer text such as prompts."""
    if rpc.response is None or not reply:
        return None
    answer = rpc.response.FromString(reply)
    for text in _strings(answer):
        for m in LEAKS.finditer(text):
            if m.lastgroup in ("path", "repr") and m.group().encode() not in sent:
                return f"answer shows a {m.lastgroup} {m.group()!r}"
    return None


def verdict(code: grpc.StatusCode, details: str, sent: bytes = b"") -> str | None:
    """None when a reply is a defined status with a clear message; else what is wrong with it. `sent`: the
    request's bytes, so that a message echoing the caller's own input is not counted as a leak."""
    if code != grpc.StatusCode.OK and (found := leak(details, sent)):
        return f"status {code.name} shows a {found}: {details[:300]}"
    if code not in ALLOWED:
        return f"status {code.name}: {details[:300]}"
    if code != grpc.StatusCode.OK:
        if not details.strip():
            return f"status {code.name} with no message"
        if "Traceback" in details or "\n" in details.strip():
            return f"status {code.name} with a multi-line message: {details[:300]}"
    return None


def call(channel: grpc.Channel, rpc: Rpc, body: bytes, timeout_s: float = 60.0) -> tuple[grpc.StatusCode, str]:
    """Send raw bytes as the request of `rpc` and return (status, details); the response is not decoded."""
    code, details, _ = call_reply(channel, rpc, body, timeout_s)
    return code, details


def call_reply(
    channel: grpc.Channel, rpc: Rpc, body: bytes, timeout_s: float = 60.0
) -> tuple[grpc.StatusCode, str, bytes]:
    """`call`, with the answer's bytes as well (empty unless OK), for `answer_leak`."""
    stub = channel.unary_unary(rpc.path)  # no serializers: bytes go out and come back as they are
    try:
        return grpc.StatusCode.OK, "", stub(body, timeout=timeout_s)
    except grpc.RpcError as e:
        return e.code(), e.details() or "", b""
