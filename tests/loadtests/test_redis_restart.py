"""Redis stopped and restarted under load: clear UNAVAILABLE meanwhile, answers after, nothing acknowledged lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from redis_server import RedisServer

from app.background import BackgroundServer
from services.client import InspectorClient, build_inspect_request
from services.common.images import encode_png
from services.common.ports import free_port
from services.mmad.synth import render_normal

pytestmark = pytest.mark.slow  # a Redis stopped and restarted under load

QUESTION = ("There is a defect in the object. What is the type of the defect?", {"A": "Scratch.", "B": "Crack."})
LINE = "line-redis"


@pytest.fixture
def redis_aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis", appendfsync="always")
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served(tmp_path: Path, redis_aof: RedisServer) -> Iterator[BackgroundServer]:
    """Both Redis users of cluster mode in one server: the audit log and the shared knowledge."""
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path / "state"),
        server={"port": 0},
        decision={"backend": "random"},
        audit={"store": "redis", "redis_url": redis_aof.url, "image_store": str(tmp_path / "audit-images")},
        knowledge={"store": "redis", "redis_url": redis_aof.url},
    )
    srv = BackgroundServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_redis_stopped_and_restarted_under_load_refuses_clearly_then_recovers_losing_nothing(
    served: BackgroundServer, redis_aof: RedisServer
) -> None:
    image = encode_png(render_normal("screw", np.random.default_rng(0)))
    outcomes: list[tuple[float, str, str, float]] = []  # (answered at, request id, status, seconds taken)
    stop = threading.Event()
    counter = iter(range(1_000_000))

    def line(worker: int) -> None:
        with InspectorClient(served.address, retries=0, timeout_s=10) as client:
            while not stop.is_set():
                rid = f"r{worker}-{next(counter)}"
                req = build_inspect_request(
                    image, *QUESTION, line_id=LINE, category="screw", request_id=rid,
                    question_type="Defect Classification", experts={"reference": False},
                )  # fmt: skip
                start = time.monotonic()
                try:
                    client.inspect_request(req)
                    status = "OK"
                except grpc.RpcError as e:
                    status = f"{e.code().name}: {e.details()}"
                outcomes.append((time.monotonic(), rid, status, time.monotonic() - start))

    with ThreadPoolExecutor(3) as pool:
        for w in range(3):
            pool.submit(line, w)
        time.sleep(1.5)
        down_at = time.monotonic()  # before the kill: what was answered earlier was written earlier
        redis_aof.stop()  # SIGKILL
        time.sleep(2.0)
        redis_aof.start()  # same port, same append-only file
        up_at = time.monotonic()
        deadline = up_at + 30
        while time.monotonic() < deadline and not any(t > up_at + 0.5 and s == "OK" for t, _, s, _ in outcomes):
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()

    before = [s for t, _, s, _ in outcomes if t < down_at]
    during = [(s, took) for t, _, s, took in outcomes if down_at + 0.5 < t < up_at]
    after = [t for t, _, s, _ in outcomes if t > up_at and s == "OK"]
    assert before and all(s == "OK" for s in before), [s for s in before if s != "OK"][:3]
    assert during, "no request was answered while Redis was down: they hung"
    for status, took in during:  # refused, each naming what is missing, none waiting out its 10 s deadline
        assert status == "OK" or status.startswith("UNAVAILABLE: audit: the record of request"), status
        assert took < 5.0
    assert any(s != "OK" for s, _ in during)  # an answer whose record could not be kept was withheld
    assert after, "no answer after Redis came back"
    assert after[0] - up_at < 10.0
    acknowledged = [rid for _, rid, s, _ in outcomes if s == "OK"]
    with InspectorClient(served.address, retries=0) as client:  # every acknowledged answer has its record
        for rid in acknowledged:
            assert client.get_inspection(LINE, rid).record.request_id == rid
