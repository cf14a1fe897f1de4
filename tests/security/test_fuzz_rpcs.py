"""Structured fuzzing (hypothesis) of every RPC of every service on a real embedded server: each reply is a
defined status with a one-line message, never UNKNOWN or INTERNAL, and the server stays healthy.

Bounded and derandomized, so the suite stays fast and deterministic; `python -m loadtests.drills.fuzz_rpcs` runs the
byte-level fuzzer (atheris) for as long as you like.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.background import BackgroundServer
from echo.v1 import common_pb2, embedding_pb2, retrieval_pb2
from loadtests.kit.fuzz import (
    BAD_STRINGS,
    Rpc,
    answer_leak,
    build,
    call,
    image_corpus,
    malformed,
    png_bomb,
    rpcs,
    verdict,
)
from services.client import InspectorClient
from services.common.images import encode_png
from services.mmad.render import render_normal

pytestmark = pytest.mark.slow  # hundreds of fuzzed RPCs per service

RPCS = rpcs()
IMAGES = image_corpus()
EXAMPLES = 20  # per RPC


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[grpc.Channel]:
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("fuzz")),
        server={"port": 0},
        decision={"model_cache": str(offline_model_cache), "backend": "random"},
    )
    with BackgroundServer(settings) as srv:
        with InspectorClient(srv.address) as c:
            images = [encode_png(render_normal("screw", np.random.default_rng(i), size=96)) for i in range(3)]
            c.add_normal_images("line-1", "screw", images, dataset="Synthetic")
        with grpc.insecure_channel(srv.address) as ch:
            yield ch


class _Drawn:
    """hypothesis' choices as a kit.fuzz Source."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def floating(self) -> float:
        return self.data.draw(st.floats(allow_nan=True, allow_infinity=True))

    def text(self) -> str:
        return self.data.draw(st.one_of(st.sampled_from(BAD_STRINGS), st.text(max_size=40)))

    def blob(self) -> bytes:
        return self.data.draw(st.binary(max_size=512))


def test_every_service_of_the_contracts_is_fuzzed() -> None:
    services = {r.service for r in RPCS}
    assert {"echo.v1.Inspector", "echo.v1.Embedding", "echo.v1.Retrieval", "echo.v1.Knowledge"} <= services
    assert "echo.v1.Decision" in services and len(RPCS) >= 15


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: f"{r.service.rsplit('.', 1)[-1]}.{r.method}")
def test_fuzzed_requests_get_a_defined_status_with_a_clear_message(channel: grpc.Channel, rpc: Rpc) -> None:
    seen: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        body = build(rpc.request, _Drawn(data), IMAGES).SerializeToString()
        code, details = call(channel, rpc, body)
        seen[code.name] = seen.get(code.name, 0) + 1
        problem = verdict(code, details, body)
        assert problem is None, f"{rpc.path}: {problem}"

    run()
    assert sum(seen.values()) >= 1  # hypothesis stops early when a request has few shapes (ListLines has none)


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: f"{r.service.rsplit('.', 1)[-1]}.{r.method}")
def test_malformed_protobuf_is_invalid_argument_naming_the_request(channel: grpc.Channel, rpc: Rpc) -> None:
    for body in malformed(b"\xff" * 7):
        code, details = call(channel, rpc, body)
        assert verdict(code, details, body) is None, (rpc.path, body, code, details)
        if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request:"):
            assert rpc.path.lstrip("/") in details


def test_bombs_and_giant_images_are_refused_by_their_headers_or_handled(channel: grpc.Channel) -> None:
    from PIL import Image

    embed = next(r for r in RPCS if r.method == "EmbedImages")
    bomb = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=png_bomb())])
    code, details = call(channel, embed, bomb.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "over the limit" in details
    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, format="PNG")  # 36 Mpx in a few kB: within the limit, so decoded
    giant = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=buf.getvalue())])
    code, details = call(channel, embed, giant.SerializeToString())
    assert code == grpc.StatusCode.OK, details


def test_the_server_is_still_healthy_after_the_fuzzing(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("image: cannot be decoded (cannot identify image file <_io.BytesIO object at 0x7f3a2b1c0d90>)", "repr"),
        ("uri: /srv/echo-data/images/ef/0a1b.png was not found", "path"),
        ("gateway replica build-7:41234 is draining", "address"),
        ("stage at 10.0.0.7:50051 did not answer", "address"),
    ],
)
def test_the_leak_check_finds_paths_addresses_and_reprs_but_not_the_callers_own_words(message: str, kind: str) -> None:
    from loadtests.kit.fuzz import leak

    found = leak(message)
    assert found is not None and found.startswith(kind)
    assert leak("image.uri: '/etc/passwd' is not a content id", b"\x12\x0b/etc/passwd") is None


def test_the_answer_check_flags_a_server_path_in_a_search_answer_but_not_a_content_id() -> None:
    search = next(r for r in RPCS if r.path == "/echo.v1.Retrieval/Search")
    sha = "ef" * 32

    def hits(uri: str) -> bytes:
        hit = common_pb2.Reference(id="a", uri=uri, sha256=sha)
        return retrieval_pb2.SearchResponse(hits=[hit]).SerializeToString()

    found = answer_leak(search, hits(f"/srv/echo-data/images/ef/{sha}.png"))
    assert found is not None and found.startswith("answer shows a path")
    assert answer_leak(search, hits(f"sha256:{sha}")) is None
    assert answer_leak(search, hits("/data/mine.png"), b"\x12\x0d/data/mine.png") is None  # the caller's own words
