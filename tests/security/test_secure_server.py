"""The embedded server with mutual TLS and line-scoped tokens, over real sockets: who gets in, and what they see."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tlskit import Authority, Pem, write_tokens

from app.background import BackgroundServer
from echo.v1 import (
    embedding_pb2,
    embedding_pb2_grpc,
    knowledge_pb2,
    knowledge_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from services.client import InspectorClient
from services.common.auth import bearer, new_token, token_sha256
from services.common.images import encode_png, sha256_hex
from services.mmad.render import render_normal

QUESTION = ("Is there any defect in the object?", {"A": "Yes.", "B": "No."})


def _png(category: str, seed: int) -> bytes:
    return encode_png(render_normal(category, np.random.default_rng(seed), size=96))


@dataclass
class Secure:
    server: BackgroundServer
    ca: Authority
    client_pem: Pem
    rogue_pem: Pem
    tokens: dict[str, str]
    line_b_image: bytes

    def client(self, token: str | None, pem: Pem | None = None, ca: Path | None = None) -> InspectorClient:
        pem = pem or self.client_pem
        return InspectorClient(
            self.server.address,
            token=token or "",
            ca_file=str(ca or self.ca.pem.cert),
            cert_file=str(pem.cert),
            key_file=str(pem.key),
            retries=0,
            timeout_s=60,
        )


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[Secure]:
    from services.config import load_settings

    root = tmp_path_factory.mktemp("secure")
    ca = Authority(root / "ca")
    server_pem, client_pem = ca.issue("server", server=True), ca.issue("client", server=False)
    rogue_pem = Authority(root / "rogue", "rogue-ca").issue("rogue", server=False)
    tokens = {"a": new_token(), "b": new_token(), "admin": new_token(), "stage": new_token()}
    names = {"a": ("cam-a", ["line-a"]), "b": ("cam-b", ["line-b"]), "admin": ("operator", ["*"])}
    entries = [{"name": n, "sha256": token_sha256(tokens[k]), "lines": lines} for k, (n, lines) in names.items()]
    entries.append({"name": "ops-stage", "sha256": token_sha256(tokens["stage"]), "lines": ["*"], "stages": True})
    write_tokens(root / "tokens.yaml", entries)
    settings = load_settings(
        data_dir=str(root / "data"),
        server={
            "port": 0,
            "tls": {
                "cert_file": str(server_pem.cert),
                "key_file": str(server_pem.key),
                "client_ca_file": str(ca.pem.cert),
            },
            "auth": {"tokens_file": str(root / "tokens.yaml")},
        },
        decision={"model_cache": str(offline_model_cache), "backend": "random"},
    )
    srv = BackgroundServer(settings).start()
    s = Secure(srv, ca, client_pem, rogue_pem, tokens, _png("screw", 100))
    with s.client(tokens["a"]) as a:
        a.add_normal_images("line-a", "round_part", [_png("round_part", i) for i in range(3)], dataset="Synthetic")
    with s.client(tokens["b"]) as b:
        b.add_normal_images("line-b", "screw", [s.line_b_image, _png("screw", 101)], dataset="Synthetic")
    try:
        yield s
    finally:
        srv.stop()


def _code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details() or ""


def test_without_a_client_certificate_of_our_ca_no_call_gets_through(secure: Secure) -> None:
    with secure.client(secure.tokens["a"], pem=secure.rogue_pem) as rogue:
        code, _ = _code(lambda: rogue.health(timeout_s=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    plain = InspectorClient(secure.server.address, token=secure.tokens["a"], retries=0)
    with plain:
        code, _ = _code(lambda: plain.health(timeout_s=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    with secure.client(None) as good:  # the right certificate: health needs no token
        assert good.health() == "SERVING"


def test_calls_without_a_valid_token_are_unauthenticated(secure: Secure) -> None:
    for token in (None, "x" * 43):
        with secure.client(token) as c:
            for call in (
                lambda: c.list_normal_images("line-a"),
                lambda: c.inspect(_png("round_part", 0), *QUESTION, line_id="line-a", category="round_part"),
                lambda: c.add_normal_images("line-a", "round_part", [_png("round_part", 9)]),
            ):
                code, details = _code(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED, details
                assert "token" in details
            reflection = reflection_pb2_grpc.ServerReflectionStub(c.channel)
            stream = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            code, _ = _code(lambda stream=stream: list(stream))
            assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_line_token_is_denied_every_other_lines_memory_and_results(secure: Secure) -> None:
    with secure.client(secure.tokens["a"]) as a:
        calls = {
            "list": lambda: a.list_normal_images("line-b"),
            "add": lambda: a.add_normal_images("line-b", "screw", [_png("screw", 7)]),
            "delete": lambda: a.delete_normal_images("line-b", category="screw"),
            "inspect": lambda: a.inspect(secure.line_b_image, *QUESTION, line_id="line-b", category="screw"),
            "inspections": lambda: a.list_inspections("line-b"),  # the audit trail's results
            "inspection": lambda: a.get_inspection("line-b", "any-request"),
            "image": lambda: a.get_image("line-b", sha256_hex(secure.line_b_image)),
            "products": lambda: a.list_products("line-b"),
        }
        for name, call in calls.items():
            code, details = _code(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED, name
            assert "cam-a" in details and "line-b" in details
        # the same words whether the line exists or not: nothing to learn from the refusal
        _, existing = _code(lambda: a.list_normal_images("line-b"))
        _, missing = _code(lambda: a.list_normal_images("line-zz"))
        assert existing.replace("line-b", "?") == missing.replace("line-zz", "?")
        # its own line works, and only its own images are listed
        listing = a.list_normal_images("line-a")
        assert listing.total == 3 and {i.line_id for i in listing.items} == {"line-a"}
        a.inspect(_png("round_part", 60), *QUESTION, line_id="line-a", category="round_part", dataset="Synthetic")
        with secure.client(secure.tokens["b"]) as b:
            b.inspect(secure.line_b_image, *QUESTION, line_id="line-b", category="screw", dataset="Synthetic")
        records = a.list_inspections("line-a").records
        assert records and {r.line_id for r in records} == {"line-a"}


def test_a_line_token_cannot_call_the_stages_behind_the_inspector(secure: Secure) -> None:
    with secure.client(secure.tokens["a"]) as a:
        md = a.auth_metadata
        stubs = [
            lambda: retrieval_pb2_grpc.RetrievalStub(a.channel).Stats(
                retrieval_pb2.StatsRequest(line_id="line-b"), metadata=md
            ),
            lambda: embedding_pb2_grpc.EmbeddingStub(a.channel).EmbedTexts(
                embedding_pb2.EmbedTextsRequest(texts=["x"]), metadata=md
            ),
            lambda: knowledge_pb2_grpc.KnowledgeStub(a.channel).ListEntries(
                knowledge_pb2.ListEntriesRequest(), metadata=md
            ),
        ]
        for call in stubs:
            code, details = _code(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "factory-line tokens call" in details
        for call in (a.list_lines, lambda: a.put_knowledge(knowledge_pb2.KnowledgeEntry(category="x"))):
            code, details = _code(call)  # every line's names, or knowledge all lines read: the operator's
            assert code == grpc.StatusCode.PERMISSION_DENIED and "not scoped to one line" in details
        assert a.get_knowledge("Synthetic", "screw").entry.category == "screw"  # a product type's: any token


def test_category_inference_votes_only_over_the_callers_line(secure: Secure) -> None:
    with secure.client(secure.tokens["a"]) as a:
        for seed in range(3):  # a screw image: line-b's product, which line-a never onboarded
            r = a.inspect(_png("screw", 200 + seed), *QUESTION, line_id="line-a", dataset="Synthetic")
            assert r.trace.category_inferred and r.trace.category == "round_part"
            assert all(ref.category == "round_part" for ref in r.trace.references)


def test_content_ids_resolve_only_in_the_callers_line_and_traces_carry_no_server_paths(secure: Secure) -> None:
    with secure.client(secure.tokens["a"]) as a:
        r = a.inspect(_png("round_part", 50), *QUESTION, line_id="line-a", category="round_part", dataset="Synthetic")
        ref = r.trace.references[0]
        assert ref.uri == f"sha256:{ref.sha256}" and "/" not in ref.uri
        item = a.list_normal_images("line-a").items[0]
        assert item.uri == f"sha256:{item.sha256}"
        again = a.inspect(item.uri, *QUESTION, line_id="line-a", category="round_part", dataset="Synthetic")
        assert again.answer in QUESTION[1]
        # line-b's image (it exists in the store) and an unknown hash read exactly alike
        theirs = f"sha256:{sha256_hex(secure.line_b_image)}"
        nobody = "sha256:" + "0" * 64
        outcomes = [
            _code(lambda u=u: a.inspect(u, *QUESTION, line_id="line-a", category="round_part"))
            for u in (theirs, nobody)
        ]
        assert [c for c, _ in outcomes] == [grpc.StatusCode.NOT_FOUND] * 2
        assert outcomes[0][1].replace(theirs, "?") == outcomes[1][1].replace(nobody, "?")
        for uri in ("/etc/passwd", "file:///etc/hostname", "http://169.254.169.254/latest"):
            code, details = _code(
                lambda uri=uri: a.inspect(uri, *QUESTION, line_id="line-a", category="round_part", send_uri=True)
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "content id" in details


def test_no_answer_shows_server_paths_for_any_token_nor_replica_addresses_to_line_tokens(secure: Secure) -> None:
    with secure.client(secure.tokens["a"]) as a:
        a.inspect(_png("round_part", 70), *QUESTION, line_id="line-a", category="round_part", dataset="Synthetic")
        records = a.list_inspections("line-a").records
        assert records and all(r.gateway == "" for r in records)
        assert a.get_inspection("line-a", records[0].request_id).record.gateway == ""
    with secure.client(secure.tokens["stage"]) as ops:
        stats = retrieval_pb2_grpc.RetrievalStub(ops.channel).Stats(
            retrieval_pb2.StatsRequest(line_id="line-a", list_limit=10), metadata=ops.auth_metadata
        )
        assert stats.points and all(p.uri == f"sha256:{p.sha256}" for p in stats.points)
        assert all(r.gateway for r in ops.list_inspections("line-a").records)  # the operator's view keeps it


def test_the_operator_token_reaches_every_line_and_undecodable_bodies_are_invalid_argument(secure: Secure) -> None:
    with secure.client(secure.tokens["admin"]) as op:
        assert op.list_normal_images("line-b").total == 2
        raw = op.channel.unary_unary("/echo.v1.Inspector/ListNormalImages")
        code, details = _code(lambda: raw(b"\x0a\xff\xff\xff", metadata=op.auth_metadata, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request: cannot be decoded")
        code, _ = _code(lambda: raw(b"\x0a\xff\xff\xff", timeout=10))  # the token is checked first
        assert code == grpc.StatusCode.UNAUTHENTICATED


def test_the_client_takes_its_token_from_the_environment(secure: Secure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_IAD_TOKEN", secure.tokens["b"])
    monkeypatch.setenv("ECHO_IAD_CA_FILE", str(secure.ca.pem.cert))
    monkeypatch.setenv("ECHO_IAD_CERT_FILE", str(secure.client_pem.cert))
    monkeypatch.setenv("ECHO_IAD_KEY_FILE", str(secure.client_pem.key))
    with InspectorClient(secure.server.address, retries=0) as b:
        assert b.list_normal_images("line-b").total == 2
        assert bearer(secure.tokens["b"]) in b.auth_metadata
