"""The token, exposure and health rules on their own: no server, every decision spelled out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tlskit import write_tokens

from echo.v1 import embedding_pb2, inspector_pb2
from services.common.auth import Authorizer, TokenBook, bearer, new_token, read_secret, token_sha256
from services.common.config import ServerSettings
from services.common.errors import ConfigError, InvalidArgument, PermissionDenied, Unauthenticated
from services.common.health import StageHealth
from services.common.serving import check_exposure

INSPECTOR = "echo.v1.Inspector"


def _book(tmp_path: Path) -> tuple[TokenBook, dict[str, str]]:
    tokens = {"a": new_token(), "admin": new_token(), "gateway": new_token()}
    entries = [
        {"name": "cam-a", "sha256": token_sha256(tokens["a"]), "lines": ["line-a"]},
        {"name": "admin", "token": tokens["admin"], "lines": ["*"]},
        {"name": "gateway", "sha256": token_sha256(tokens["gateway"]), "lines": ["*"], "stages": True},
    ]
    write_tokens(tmp_path / "tokens.yaml", entries)
    return TokenBook.from_file(tmp_path / "tokens.yaml"), tokens


def test_a_line_token_reaches_its_own_line_only(tmp_path: Path) -> None:
    book, tokens = _book(tmp_path)
    auth = Authorizer(book, [INSPECTOR])
    who = auth.authenticate(INSPECTOR, [bearer(tokens["a"])])
    auth.authorize(who, INSPECTOR, "ListNormalImages", inspector_pb2.ListNormalImagesRequest(line_id="line-a"))
    with pytest.raises(PermissionDenied) as e:
        auth.authorize(who, INSPECTOR, "Inspect", inspector_pb2.InspectRequest(line_id="line-b"))
    assert "line-b" in e.value.message and e.value.field == "line_id"
    with pytest.raises(InvalidArgument):  # no line named: not "every line"
        auth.authorize(who, INSPECTOR, "ListNormalImages", inspector_pb2.ListNormalImagesRequest())
    with pytest.raises(PermissionDenied):  # a stage service: only the gateway's token
        auth.authorize(who, "echo.v1.Embedding", "EmbedTexts", embedding_pb2.EmbedTextsRequest())
    with pytest.raises(PermissionDenied):  # a request not scoped to one line needs every line
        auth.authorize(who, INSPECTOR, "ListLines", inspector_pb2.ListLinesRequest())
    with pytest.raises(PermissionDenied):
        auth.authorize(who, INSPECTOR, "PutKnowledge", inspector_pb2.PutKnowledgeRequest())
    shared = Authorizer(book, [INSPECTOR], [f"{INSPECTOR}/GetKnowledge"])  # what no line owns: any valid token
    shared.authorize(who, INSPECTOR, "GetKnowledge", inspector_pb2.GetKnowledgeRequest(category="bottle"))


def test_admin_and_gateway_tokens_and_the_open_health_service(tmp_path: Path) -> None:
    book, tokens = _book(tmp_path)
    auth = Authorizer(book, [INSPECTOR])
    admin = auth.authenticate(INSPECTOR, [bearer(tokens["admin"])])
    auth.authorize(admin, INSPECTOR, "Inspect", inspector_pb2.InspectRequest(line_id="any-line"))
    with pytest.raises(PermissionDenied):
        auth.authorize(admin, "echo.v1.Retrieval", "Stats", inspector_pb2.ListNormalImagesRequest())
    gateway = auth.authenticate("echo.v1.Retrieval", [bearer(tokens["gateway"])])
    auth.authorize(gateway, "echo.v1.Retrieval", "Stats", inspector_pb2.ListNormalImagesRequest())
    assert auth.authenticate("grpc.health.v1.Health", []) is None


@pytest.mark.parametrize(
    "metadata",
    [[], [("authorization", "Bearer not-a-token-we-know")], [("authorization", "Basic abc")], [("x", "y")]],
)
def test_missing_or_unknown_tokens_are_unauthenticated(tmp_path: Path, metadata: list[tuple[str, str]]) -> None:
    book, _ = _book(tmp_path)
    with pytest.raises(Unauthenticated):
        Authorizer(book, [INSPECTOR]).authenticate(INSPECTOR, metadata)


def test_without_a_token_book_every_call_passes() -> None:
    auth = Authorizer(None, [INSPECTOR])
    assert not auth.enabled and auth.authenticate(INSPECTOR, []) is None
    auth.authorize(None, "echo.v1.Retrieval", "Stats", inspector_pb2.InspectRequest(line_id="x"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tokens: [{name: x, lines: [a]}]", "exactly one of sha256"),
        ("tokens: [{name: x, token: short, lines: [a]}]", "shorter than 16"),
        ("tokens: [{name: x, sha256: nothex, lines: [a]}]", "sha256"),
        ("tokens: [{name: x, token: 0123456789abcdefgh, lines: []}]", "lines"),
        ("tokens: {", "not valid YAML"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_file_and_entry(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        TokenBook.from_file(path)
    assert str(path) in e.value.message and words in e.value.message


def test_secrets_come_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret").write_text("s3cret-token-value\n")
    assert read_secret(str(tmp_path / "secret"), "ECHO_TEST_TOKEN") == "s3cret-token-value"
    monkeypatch.setenv("ECHO_TEST_TOKEN", "from-env")
    assert read_secret("", "ECHO_TEST_TOKEN") == "from-env"
    with pytest.raises(ConfigError):
        read_secret(str(tmp_path / "missing"))


def test_only_loopback_serves_without_tls_and_tokens_unless_insecure() -> None:
    check_exposure("127.0.0.1", ServerSettings())
    check_exposure("::1", ServerSettings())
    with pytest.raises(ConfigError) as e:
        check_exposure("0.0.0.0", ServerSettings())
    assert "server.tls and server.auth" in e.value.message and "--insecure" in e.value.message
    check_exposure("0.0.0.0", ServerSettings(insecure=True))
    secured = ServerSettings(tls={"cert_file": "c", "key_file": "k"}, auth={"tokens_file": "t"})
    check_exposure("0.0.0.0", secured)
    with pytest.raises(ConfigError):
        check_exposure("10.0.0.5", ServerSettings(auth={"tokens_file": "t"}))


async def test_a_stage_health_goes_not_serving_while_broken_and_serving_after() -> None:
    broken = {"now": False, "slow": False}

    async def probe() -> None:
        if broken["slow"]:
            await asyncio.sleep(1)
        if broken["now"]:
            raise RuntimeError("store gone")

    h = StageHealth("echo.v1.X", probe, timeout_s=0.2)
    assert await h.check() is None and h.serving
    broken["now"] = True
    assert await h.check(max_age_s=60) is None  # a fresh result is reused
    assert "store gone" in (await h.check() or "") and not h.serving
    broken["now"], broken["slow"] = False, True
    assert "over 0.2s" in (await h.check() or "")
    broken["slow"] = False
    assert await h.check() is None and h.serving
