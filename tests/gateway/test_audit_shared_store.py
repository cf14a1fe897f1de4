"""Cluster mode's audit store: gateway replicas share one Redis; a record that cannot be kept withholds the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from redis_server import RedisServer

from app.background import BackgroundServer
from services.client import InspectorClient, build_inspect_request
from services.common.images import encode_png, sha256_hex
from services.common.ports import free_port
from services.mmad.synth import render_normal

QUESTION = ("There is a defect in the object. Where is the defect?", {"A": "Top left.", "B": "Center."})


@pytest.fixture(scope="module")
def redis_aof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, redis_aof: RedisServer) -> Iterator[BackgroundServer]:
    """An embedded server whose audit log is the shared Redis (what every cluster gateway replica writes to)."""
    from services.config import load_settings

    images = tmp_path_factory.mktemp("shared-audit-images")
    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("state")),
        server={"port": 0},
        decision={"backend": "random"},
        audit={"store": "redis", "redis_url": redis_aof.url, "image_store": str(images)},
    )
    srv = BackgroundServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def _image(seed: int) -> bytes:
    return encode_png(render_normal("screw", np.random.default_rng(seed)))


def _request(seed: int, request_id: str):  # type: ignore[no-untyped-def]
    return build_inspect_request(
        _image(seed), *QUESTION, line_id="line-r", category="screw", question_type="Defect Localization",
        request_id=request_id,
    )  # fmt: skip


def _second_replica(srv: BackgroundServer):  # type: ignore[no-untyped-def]
    """Another gateway, alone on its own port as in the cluster: the same stages, the same shared audit store."""
    from services.common.serving import start_server
    from services.stages import gateway as build_stage

    async def start():  # type: ignore[no-untyped-def]
        stage = await build_stage(srv.settings, srv.address)
        server, port, _ = await start_server([stage], port=0)
        return server, stage, f"127.0.0.1:{port}"

    return srv.run(start())


def test_records_from_every_replica_land_in_one_shared_log(shared: BackgroundServer) -> None:
    server, stage, address = _second_replica(shared)
    try:
        with InspectorClient(address, retries=0) as other:
            other.inspect_request(_request(1, "from-replica-2"))
    finally:
        shared.run(server.stop(None))
        shared.run(stage.close())
    with InspectorClient(shared.address, retries=0) as client:
        client.inspect_request(_request(2, "from-replica-1"))
        listed = [r.request_id for r in client.list_inspections("line-r").records]
        assert listed[:2] == ["from-replica-1", "from-replica-2"]
        record = client.get_inspection("line-r", "from-replica-2").record
        assert client.get_image("line-r", record.image_sha256).data == _image(1)  # the shared image store
        assert record.image_sha256 == sha256_hex(_image(1))


def test_without_the_audit_store_the_answer_is_withheld_or_degraded_as_configured(
    shared: BackgroundServer, redis_aof: RedisServer
) -> None:
    audit = shared.embedded.audit
    redis_aof.stop()
    try:
        with InspectorClient(shared.address, retries=0) as client:
            with pytest.raises(grpc.RpcError) as e:
                client.inspect_request(_request(3, "while-down"))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert e.value.details().startswith("audit: the record of request while-down was not kept")
            audit.settings.required = False
            resp = client.inspect_request(_request(3, "while-down-2"))
            assert resp.answer in "AB" and resp.trace.degraded[-1].startswith("audit: the record of request")
    finally:
        audit.settings.required = True
        redis_aof.start()
    with InspectorClient(shared.address, retries=0) as client:
        client.inspect_request(_request(4, "after-restart"))  # the pool reconnects by itself
        assert client.get_inspection("line-r", "after-restart").record.request_id == "after-restart"


def test_with_the_audit_log_off_its_queries_say_so(shared: BackgroundServer) -> None:
    servicer = shared.embedded.stages[-1].servicer
    audit, servicer.audit = servicer.audit, None
    try:
        with InspectorClient(shared.address, retries=0) as client:
            assert client.inspect_request(_request(5, "unrecorded")).answer in "AB"
            with pytest.raises(grpc.RpcError) as e:
                client.list_inspections("line-r")
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "audit.enabled: false" in e.value.details()
    finally:
        servicer.audit = audit


def test_the_files_store_is_the_embedded_default(tmp_path: Path) -> None:
    from services.config import load_settings

    settings = load_settings(data_dir=str(tmp_path))
    assert settings.audit.store == "files" and settings.audit.fsync == "always"
    assert settings.audit.dir == str(tmp_path / "audit")
    assert settings.audit.image_store == str(tmp_path / "audit-images")
