"""Health that tells the truth, over real sockets: break the retrieval store, see NOT_SERVING and UNAVAILABLE,
restore it, see SERVING.

The fault is real Qdrant Edge behaviour: the shard is closed under the running
server (every call then fails inside the engine, as calls to a Qdrant server fail
while it is down), and restoring it reopens the shard from its folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.background import BackgroundServer
from echo.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.client import InspectorClient
from services.common.images import encode_png
from services.mmad.render import render_normal
from services.retrieval.store import EdgeStore

LINE = "line-h"
QUESTION = ("Is there any defect in the object?", {"A": "Yes.", "B": "No."})
SERVICES = ("", "echo.v1.Inspector", "echo.v1.Retrieval", "echo.v1.Embedding", "echo.v1.Knowledge", "echo.v1.Decision",
            "echo.v1.Evidence")  # fmt: skip


def _png(seed: int) -> bytes:
    return encode_png(render_normal("round_part", np.random.default_rng(seed), size=96))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[BackgroundServer]:
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("health")),
        server={"port": 0, "health_interval_s": 0.2, "health_timeout_s": 5},
        decision={"model_cache": str(offline_model_cache), "backend": "random"},
    )
    with BackgroundServer(settings) as srv:
        with InspectorClient(srv.address) as c:
            c.add_normal_images(LINE, "round_part", [_png(i) for i in range(3)], dataset="Synthetic")
        yield srv


def _statuses(channel: grpc.Channel) -> dict[str, str]:
    stub = health_pb2_grpc.HealthStub(channel)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name
    return {s: name(stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=5).status) for s in SERVICES}


def _wait(channel: grpc.Channel, want: dict[str, str], timeout_s: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        now = _statuses(channel)
        if all(now[k] == v for k, v in want.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def test_a_broken_retrieval_store_is_unavailable_and_not_serving_until_it_is_restored(server: BackgroundServer) -> None:
    memory = next(st.servicer.memory for st in server.embedded.stages if st.service_name == "echo.v1.Retrieval")
    healthy: EdgeStore = memory.store.inner
    with InspectorClient(server.address, retries=0) as client:
        assert _wait(client.channel, dict.fromkeys(SERVICES, "SERVING")) == dict.fromkeys(SERVICES, "SERVING")

        healthy.shard.close()  # the store goes away under the running server
        broken = {"": "NOT_SERVING", "echo.v1.Retrieval": "NOT_SERVING", "echo.v1.Inspector": "NOT_SERVING"}
        seen = _wait(client.channel, broken)
        assert {k: seen[k] for k in broken} == broken
        assert seen["echo.v1.Embedding"] == seen["echo.v1.Decision"] == "SERVING"  # only what is broken

        search = retrieval_pb2.SearchRequest(vector=[1.0] + [0.0] * (memory.dim - 1), line_id=LINE)
        with pytest.raises(grpc.RpcError) as e:
            retrieval_pb2_grpc.RetrievalStub(client.channel).Search(search, timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "retrieval store" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            client.list_normal_images(LINE)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "retrieval stage" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            client.add_normal_images(LINE, "round_part", [_png(10)], dataset="Synthetic")
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "retrieval stage" in e.value.details()
        # an inspection still answers, without the reference, and says why
        r = client.inspect(_png(11), *QUESTION, line_id=LINE, category="round_part", dataset="Synthetic")
        assert r.answer in QUESTION[1] and "reference" not in r.trace.experts_used
        assert any("UNAVAILABLE" in d and "retrieval" in d for d in r.trace.degraded)

        # restore: the store comes back (reopened from its folder, as a restarted store would be)
        memory.store.inner = EdgeStore(healthy.folder, healthy.name, healthy.dim, memory.settings)
        assert _wait(client.channel, dict.fromkeys(SERVICES, "SERVING")) == dict.fromkeys(SERVICES, "SERVING")
        assert client.list_normal_images(LINE).total == 3
        r = client.inspect(_png(12), *QUESTION, line_id=LINE, category="round_part", dataset="Synthetic")
        assert "reference" in r.trace.experts_used and not r.trace.degraded
