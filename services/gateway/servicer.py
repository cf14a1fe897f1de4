"""The Inspector gRPC servicer: one call into the core per RPC."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import inspector_pb2_grpc
from services.common.errors import Unavailable, grpc_errors
from services.gateway.clients import Deadline, StageClients
from services.gateway.core import Inspector

STAGE_SERVICES = {
    "embedding": "echo.v1.Embedding",
    "retrieval": "echo.v1.Retrieval",
    "knowledge": "echo.v1.Knowledge",
    "decision": "echo.v1.Decision",
}


def _deadline(context: grpc.aio.ServicerContext, default_ms: float) -> Deadline:
    remaining = context.time_remaining()
    return Deadline.after_ms(default_ms if remaining is None else min(default_ms, remaining * 1000.0))


class InspectorServicer(inspector_pb2_grpc.InspectorServicer):
    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    @grpc_errors
    async def Inspect(self, request, context):
        return await self.inspector.inspect(request, context.time_remaining())

    @grpc_errors
    async def AddNormalImages(self, request, context):
        return await self.inspector.add_normal_images(request, _deadline(context, 300_000))

    @grpc_errors
    async def ListNormalImages(self, request, context):
        return await self.inspector.list_normal_images(request, _deadline(context, 30_000))

    @grpc_errors
    async def DeleteNormalImages(self, request, context):
        return await self.inspector.delete_normal_images(request, _deadline(context, 30_000))

    async def check_health(self) -> None:
        """Every stage this gateway depends on answers its own health check as SERVING."""
        await check_stages(self.inspector.clients)

    async def close(self) -> None:
        await self.inspector.clients.close()


async def check_stages(clients: StageClients, timeout: float = 5.0) -> None:
    for stage, service in STAGE_SERVICES.items():
        client = clients[stage]
        stub = health_pb2_grpc.HealthStub(client.channel)
        try:
            resp = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=client.metadata
            )
        except grpc.aio.AioRpcError as e:
            raise Unavailable(f"{stage} stage: health check failed: {e.code().name}: {e.details()}") from None
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise Unavailable(f"{stage} stage: {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")


def register(server: grpc.aio.Server, servicer: InspectorServicer) -> None:
    inspector_pb2_grpc.add_InspectorServicer_to_server(servicer, server)
