"""Where Serve's ingresses listen, read from the kernel's socket tables (what `ss -ltnp` shows).

One local Ray in HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY=1) with http_options.host 127.0.0.1 runs both
ingresses: HAProxy on the configured ports, and Serve's Python proxy, which HAProxy mode keeps on the head
as a fallback (own ports) with the same options. HAProxy binds where it is told; the Python proxy's gRPC
server binds every interface whatever the host (gRPCOptions has no host: the documented limit). The other
listeners HAProxy mode opens on every interface are asserted too, so docs/cluster.md stays true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from listening import Listener, listeners
from ray_ingress import environment, ingress_environment

from echo.v1 import decision_pb2, decision_pb2_grpc
from services.common.ports import free_port

pytestmark = pytest.mark.slow

SERVICER = "echo.v1.decision_pb2_grpc.add_DecisionServicer_to_server"


def _noop_decision() -> Any:
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class NoOpDecision:
        async def Decide(self, request: Any, grpc_context: Any = None) -> Any:
            return decision_pb2.DecideResponse(answer="A", model_id="noop")

    return NoOpDecision.bind()


def _cluster_listeners() -> list[Listener]:
    """Every listening socket of this Ray session's processes: the raylet and all it started (haproxy too)."""
    import psutil
    import ray
    from ray._private import ray_constants

    node = ray._private.worker._global_node
    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    return listeners([raylet.pid] + [p.pid for p in raylet.children(recursive=True)])


@pytest.fixture(scope="module")
def haproxy_cluster() -> Iterator[dict[str, int]]:
    """A local Ray (1 CPU) in HAProxy mode, every ingress port free; one no-op gRPC application `decision`."""
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    env = ingress_environment("haproxy")
    ports = {
        "grpc": free_port(),
        "http": free_port(),
        "fallback_grpc": int(env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"]),
        "fallback_http": int(env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"]),
        "stats": int(env["RAY_SERVE_HAPROXY_STATS_PORT"]),
        "metrics": int(env["RAY_SERVE_HAPROXY_METRICS_PORT"]),
    }
    if ray.is_initialized():  # another module's session
        ray.shutdown()
    with environment(env):  # the raylet, and every Serve process it starts, inherit it
        ray.init(num_cpus=1, namespace="serve", include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=free_port(), log_to_driver=False)  # fmt: skip
        try:
            serve.start(
                http_options=HTTPOptions(host="127.0.0.1", port=ports["http"]),
                grpc_options=gRPCOptions(port=ports["grpc"], grpc_servicer_functions=[SERVICER]),
            )
            serve.run(_noop_decision(), name="decision", route_prefix="/decision", blocking=False)
            yield ports
        finally:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()


def _wait_for_answer(address: str, timeout_s: float = 180.0) -> decision_pb2.DecideResponse:
    import time

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = decision_pb2_grpc.DecisionStub(channel)
        while True:
            try:
                return stub.Decide(decision_pb2.DecideRequest(), metadata=(("application", "decision"),), timeout=10)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def test_haproxy_listens_only_on_the_configured_host_and_the_python_proxy_on_every_interface(
    haproxy_cluster: dict[str, int],
) -> None:
    from deploy.launch import proxy_address, proxy_health, running_ingress

    ports = haproxy_cluster
    config = {"http_options": {"host": "127.0.0.1"}, "grpc_options": {"port": ports["grpc"]}}
    address = proxy_address(config)
    assert _wait_for_answer(address).answer == "A"  # a call through HAProxy reaches the replica
    assert proxy_health(address) is None  # Serve's Healthz, answered by HAProxy itself
    assert running_ingress() == "haproxy"

    found = _cluster_listeners()
    by_port: dict[int, list[Listener]] = {}
    for s in found:
        by_port.setdefault(s.port, []).append(s)

    # HAProxy: the gRPC and HTTP frontends on 127.0.0.1 only, as configured.
    for name in ("grpc", "http"):
        bound = by_port.get(ports[name], [])
        assert bound, f"nothing listens on the {name} port: {found}"
        assert {(s.host, os.path.basename(s.process)) for s in bound} == {("127.0.0.1", "haproxy")}, bound

    # The Python proxy, same options: its gRPC server on every interface (the known limit), HTTP on the host.
    fallback_grpc = by_port.get(ports["fallback_grpc"], [])
    assert fallback_grpc and all(s.everywhere and s.process.startswith("ray::ProxyActor") for s in fallback_grpc)
    assert {s.host for s in by_port.get(ports["fallback_http"], [])} == {"127.0.0.1"}

    # What else HAProxy mode opens on every interface: HAProxy's stats page and Prometheus exporter, and the
    # ingress replica's own gRPC server (direct ingress, 40000 and up), which HAProxy forwards to.
    for name in ("stats", "metrics"):
        assert [s.everywhere for s in by_port.get(ports[name], [])] == [True], (name, found)
    replica_grpc = [s for s in found if s.process.startswith("ray::ServeReplica:decision") and s.port >= 40000]
    assert replica_grpc and all(s.everywhere for s in replica_grpc), found
