"""A Ray Serve replica's host runs the same token checks and the same health check as a gRPC server.

No Ray cluster is started: the host class is driven directly with Serve's own
RayServegRPCContext (what the proxy hands a replica), built from a recorded call.
Callers probe a stage's health when its calls stall; on a busy replica the tiny
request queues behind model work, and the probe must not read that as "gone".
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext

import deploy.deployments
import echo.v1
from deploy.deployments import HEALTH_ANSWER_S, HEALTH_CACHE_S, RetrievalDeployment, StageHost
from echo.v1 import decision_pb2, inspector_pb2, retrieval_pb2
from services.common.auth import bearer, new_token, token_sha256
from services.common.serving import Stage
from services.retrieval.store import EdgeStore


class _Call:
    """What Serve's proxy copies into RayServegRPCContext from the caller's gRPC call."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata

    def auth_context(self) -> dict[str, Any]:
        return {}

    def code(self) -> None:
        return None

    def details(self) -> str:
        return ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return [("application", "retrieval"), *self.metadata]

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def trailing_metadata(self) -> list[tuple[str, str]]:
        return []


async def test_a_replica_checks_tokens_and_reports_a_broken_store_like_an_embedded_server(tmp_path: Path) -> None:
    from services.config import load_settings
    from services.gateway.server import SERVICE_NAME as INSPECTOR
    from services.gateway.servicer import InspectorServicer, register
    from services.retrieval.server import build_stage

    cam, gateway = new_token(), new_token()
    (tmp_path / "tokens.yaml").write_text(
        "tokens:\n"
        f"  - {{name: cam-a, sha256: {token_sha256(cam)}, lines: [line-a]}}\n"
        f"  - {{name: gateway, sha256: {token_sha256(gateway)}, lines: ['*'], stages: true}}\n"
    )
    settings = load_settings(
        data_dir=str(tmp_path / "data"), server={"auth": {"tokens_file": str(tmp_path / "tokens.yaml")}}
    )
    host = StageHost()
    host._host(await build_stage(settings.retrieval, settings.embedding), "retrieval", settings)
    stats = retrieval_pb2.StatsRequest(line_id="line-a")

    async def status(
        token: str | None, request: Any = stats, method: str = "Stats", on: StageHost = host
    ) -> grpc.StatusCode:
        ctx = RayServegRPCContext(_Call([bearer(token)] if token else []))
        await on._rpc(method, request, ctx)
        return ctx.code() or grpc.StatusCode.OK

    assert await status(None) == grpc.StatusCode.UNAUTHENTICATED
    assert await status("not-a-known-token-at-all") == grpc.StatusCode.UNAUTHENTICATED
    assert await status(cam) == grpc.StatusCode.PERMISSION_DENIED  # a stage app: the gateway's token only
    assert await status(gateway) == grpc.StatusCode.OK

    gateway_host = StageHost()  # the Inspector app: line tokens, for their own lines
    gateway_host._host(Stage(INSPECTOR, InspectorServicer(None), register, public=True), "inspector", settings)  # type: ignore[arg-type]
    other_line = inspector_pb2.ListNormalImagesRequest(line_id="line-b")
    assert await status(cam, other_line, "ListNormalImages", gateway_host) == grpc.StatusCode.PERMISSION_DENIED
    assert await status(None, other_line, "ListNormalImages", gateway_host) == grpc.StatusCode.UNAUTHENTICATED

    serving = health_pb2.HealthCheckResponse.SERVING
    assert (await host.Check(health_pb2.HealthCheckRequest())).status == serving
    store = host.stage.servicer.memory.store  # type: ignore[attr-defined]
    healthy: EdgeStore = store.inner
    healthy.shard.close()
    await asyncio.sleep(HEALTH_CACHE_S + 0.1)
    assert (await host.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        await host.check_health()
        raise AssertionError("Serve's replica check passed on a broken store")
    except RuntimeError as e:
        assert "retrieval store" in str(e)
    assert await status(gateway) == grpc.StatusCode.UNAVAILABLE
    store.inner = EdgeStore(healthy.folder, healthy.name, healthy.dim, settings.retrieval)
    await asyncio.sleep(HEALTH_CACHE_S + 0.1)
    assert (await host.Check(health_pb2.HealthCheckRequest())).status == serving
    await host.check_health()
    await host.stage.close()


def test_every_rpc_of_every_echo_service_is_forwarded_by_the_deployment_hosting_that_service() -> None:
    """Every *_pb2 module of echo.v1, so a new proto's service cannot go unhosted."""
    modules = [importlib.import_module(f"echo.v1.{m.name}") for m in pkgutil.iter_modules(echo.v1.__path__)]
    services = {
        svc.full_name: svc
        for module in modules
        if module.__name__.endswith("_pb2")
        for svc in module.DESCRIPTOR.services_by_name.values()
    }
    hosts = {
        cls.service: cls
        for d in vars(deploy.deployments).values()
        if isinstance(d, serve.Deployment) and issubclass(cls := d.func_or_class, StageHost)
    }
    assert set(hosts) == set(services)
    for name, svc in services.items():
        for rpc in svc.methods:
            forward = getattr(hosts[name], rpc.name, None)
            assert forward is not None and asyncio.iscoroutinefunction(forward), f"{name}/{rpc.name}"
    assert len(services) == 6 and sum(len(svc.methods) for svc in services.values()) >= 20


async def test_a_generated_forwarder_carries_the_call_and_its_status_through_serves_context(tmp_path: Path) -> None:
    """RetrievalDeployment.Stats as Serve's proxy calls it: the servicer's answer, and a refusal's status."""
    from services.config import load_settings
    from services.stages import retrieval

    settings = load_settings(data_dir=str(tmp_path / "data"))
    cls = RetrievalDeployment.func_or_class
    host = cls.__new__(cls)  # no Ray: the replica's async __init__ only builds the stage, done here
    host._host(await retrieval(settings), "retrieval", settings)
    try:
        ok = RayServegRPCContext(_Call([]))
        stats = await host.Stats(retrieval_pb2.StatsRequest(line_id="line-a"), ok)
        assert isinstance(stats, retrieval_pb2.StatsResponse) and stats.total == 0 and ok.code() is None
        refused = RayServegRPCContext(_Call([]))
        empty = await host.Search(retrieval_pb2.SearchRequest(line_id="line-a"), refused)
        assert isinstance(empty, retrieval_pb2.SearchResponse)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.details() and "0x" not in refused.details()
    finally:
        await host.stage.close()


def test_serve_ray_refuses_apps_without_tokens_behind_a_proxy_open_on_every_interface(tmp_path: Path) -> None:
    import pytest

    from deploy.launch import check_exposure, open_applications, prepare_config, read_config
    from services.common.errors import ConfigError

    repo = Path(__file__).resolve().parents[2]
    config = prepare_config(read_config(repo / "deploy" / "local-cpu.yaml"), repo)
    assert set(open_applications(config)) == {
        "embedding", "retrieval", "knowledge", "decision", "evidence", "inspector"
    }  # fmt: skip
    with pytest.raises(ConfigError) as e:
        check_exposure(config, insecure=False)
    assert "every interface" in e.value.message and "--insecure" in e.value.message
    check_exposure(config, insecure=True)  # the operator says the network is trusted
    (tmp_path / "tokens.yaml").write_text(f"tokens: [{{name: gw, token: {new_token()}, lines: ['*'], stages: true}}]\n")
    for app in config["applications"]:
        app["args"]["settings"]["server"] = {"auth": {"tokens_file": str(tmp_path / "tokens.yaml")}}
    assert open_applications(config) == []
    check_exposure(config, insecure=False)


class _BusyServicer:
    """A stage whose tiny real request takes as long as the test says (queued behind model work), or fails."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.fail: str | None = None
        self.requests = 0

    async def check_health(self) -> None:
        self.requests += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError(self.fail)

    async def Decide(self, request: Any, context: Any) -> decision_pb2.DecideResponse:
        return decision_pb2.DecideResponse(answer="A")


def _busy_host(tmp_path: Path) -> tuple[StageHost, _BusyServicer]:
    from services.config import load_settings

    servicer = _BusyServicer()
    host = StageHost()
    host._host(Stage("echo.v1.Decision", servicer, lambda *_: None), "decision", load_settings(data_dir=str(tmp_path)))
    return host, servicer


async def test_a_busy_replica_answers_health_at_once_from_its_last_real_request(tmp_path: Path) -> None:
    host, servicer = _busy_host(tmp_path)
    servicer.delay_s = 0.3
    start = time.monotonic()
    assert await host._ready() is None  # no verdict yet: wait for the first real request
    assert time.monotonic() - start >= 0.3
    await asyncio.sleep(HEALTH_CACHE_S + 0.05)
    servicer.delay_s = 5.0  # the model is busy: the next tiny request queues behind it
    start = time.monotonic()
    verdicts = await asyncio.gather(*(host.Check(health_pb2.HealthCheckRequest()) for _ in range(10)))
    assert [v.status for v in verdicts] == [health_pb2.HealthCheckResponse.SERVING] * 10
    assert time.monotonic() - start < HEALTH_ANSWER_S + 1.0  # not the 5 s the busy request takes
    assert servicer.requests == 2  # one fresh request, finishing in the background, shared by every probe
    host.stage.health._refresh.cancel()  # type: ignore[union-attr]


async def test_a_replica_whose_stage_fails_fast_is_not_serving_at_once(tmp_path: Path) -> None:
    host, servicer = _busy_host(tmp_path)
    assert await host._ready() is None
    await asyncio.sleep(HEALTH_CACHE_S + 0.05)
    servicer.fail = "model gone"
    resp = await host.Check(health_pb2.HealthCheckRequest())
    assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await host._ready() == "RuntimeError: model gone"


async def test_a_replica_busy_past_its_health_timeout_is_serving_while_it_answers_real_requests(
    tmp_path: Path,
) -> None:
    host, servicer = _busy_host(tmp_path)
    host.stage.health.timeout_s = 0.3
    servicer.delay_s = 1.0  # the tiny request queues behind model work for longer than the health timeout

    async def answering() -> None:
        while True:
            await host._rpc("Decide", decision_pb2.DecideRequest(), None)
            await asyncio.sleep(0.05)

    load = asyncio.ensure_future(answering())
    assert await host.stage.health.check() is None  # timed out, but real requests were answered meanwhile: busy
    load.cancel()
    assert "took over 0.3s" in (await host.stage.health.check() or "")  # no answer meanwhile: stalled
