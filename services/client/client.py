"""Python client for factory-line code: sync and asyncio, one reused channel, deadlines, retries.

Retries use gRPC's own retry policy (service config): UNAVAILABLE and
RESOURCE_EXHAUSTED are retried with exponential backoff inside the deadline.
Every Inspector RPC is safe to retry: Inspect reads, memory writes are
content-addressed and deletes are idempotent.

    from services.client import InspectorClient
    with InspectorClient("127.0.0.1:50051") as client:
        r = client.inspect("part.png", "Is there any defect in the object?", {"A": "Yes.", "B": "No."},
                           line_id="line-1", category="bottle")
        print(r.answer, r.answer_text, list(r.trace.experts_used))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, inspector_pb2, inspector_pb2_grpc
from services.common.serving import channel_options

ImageLike = bytes | str | Path

REFERENCE_MODES = {
    "0-shot": common_pb2.ZERO_SHOT,
    "1-shot": common_pb2.ONE_SHOT_RANDOM,
    "1-shot*": common_pb2.ONE_SHOT_SIMILAR,
    "k-shot": common_pb2.K_SHOT,
}
KNOWLEDGE_MODES = {
    "none": common_pb2.KNOWLEDGE_NONE,
    "dk": common_pb2.DOMAIN_KNOWLEDGE,
    "csk": common_pb2.CONTEXT_SPECIFIC,
}
ANSWER_FORMATS = {"mc": common_pb2.MULTIPLE_CHOICE, "open": common_pb2.OPEN_QA, "tf": common_pb2.TRUE_FALSE}
QUESTION_TYPES = {
    "Anomaly Detection": common_pb2.ANOMALY_DETECTION,
    "Defect Classification": common_pb2.DEFECT_CLASSIFICATION,
    "Defect Localization": common_pb2.DEFECT_LOCALIZATION,
    "Defect Description": common_pb2.DEFECT_DESCRIPTION,
    "Defect Analysis": common_pb2.DEFECT_ANALYSIS,
    "Object Classification": common_pb2.OBJECT_CLASSIFICATION,
    "Object Analysis": common_pb2.OBJECT_ANALYSIS,
}


def _service_config(retries: int) -> str:
    policy = {
        "maxAttempts": max(2, min(5, retries + 1)),
        "initialBackoff": "0.05s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    return json.dumps({"methodConfig": [{"name": [{"service": "echo.v1.Inspector"}], "retryPolicy": policy}]})


def _options(retries: int, max_message_mb: int) -> list[tuple[str, object]]:
    opts: list[tuple[str, object]] = list(channel_options(max_message_mb))
    if retries > 0:
        opts += [("grpc.enable_retries", 1), ("grpc.service_config", _service_config(retries))]
    else:
        opts += [("grpc.enable_retries", 0)]
    return opts


def to_image(image: ImageLike, *, send_uri: bool = False) -> common_pb2.Image:
    """Bytes go as bytes; a path is read here (the server may not see this disk) unless send_uri."""
    if isinstance(image, bytes):
        return common_pb2.Image(data=image)
    if send_uri or "://" in str(image):
        return common_pb2.Image(uri=str(image))
    return common_pb2.Image(data=Path(image).read_bytes())


def build_inspect_request(
    image: ImageLike,
    question: str,
    options: Mapping[str, str],
    *,
    line_id: str = "default",
    category: str = "",
    dataset: str = "",
    question_type: str | None = None,
    reference_mode: str | None = None,
    k_shots: int = 0,
    knowledge_mode: str | None = None,
    answer_format: str | None = None,
    experts: Mapping[str, bool] | None = None,
    deadline_ms: float = 0.0,
    return_prompt: bool = False,
    seed: int = 0,
    request_id: str = "",
    send_uri: bool = False,
) -> inspector_pb2.InspectRequest:
    """One InspectRequest from plain Python values (names as in the README and CLI)."""
    settings = common_pb2.RequestSettings(
        reference_mode=REFERENCE_MODES[reference_mode] if reference_mode else 0,
        k_shots=k_shots,
        knowledge_mode=KNOWLEDGE_MODES[knowledge_mode] if knowledge_mode else 0,
        answer_format=ANSWER_FORMATS[answer_format] if answer_format else 0,
        deadline_ms=deadline_ms,
        return_prompt=return_prompt,
        seed=seed,
    )
    for name, on in (experts or {}).items():
        setattr(settings.experts, name, on)
    return inspector_pb2.InspectRequest(
        request_id=request_id,
        line_id=line_id,
        image=to_image(image, send_uri=send_uri),
        question=common_pb2.Question(
            text=question, options=dict(options), type=QUESTION_TYPES[question_type] if question_type else 0
        ),
        dataset=dataset,
        category=category,
        settings=settings,
    )


class InspectorClient:
    """Blocking client; reuse one per process (it holds one HTTP/2 connection).

    Args:
        address: host:port of the embedded server or of Ray Serve's gRPC proxy.
        application: the Ray Serve application to route to (cluster mode: "inspector"); empty in embedded mode.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_message_mb: int = 32,
        application: str = "",
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.metadata = (("application", application),) if application else None
        self._channel = grpc.insecure_channel(address, options=_options(retries, max_message_mb))
        self._stub = inspector_pb2_grpc.InspectorStub(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        return self._channel

    def inspect(
        self, image: ImageLike, question: str, options: Mapping[str, str], *, timeout_s: float | None = None, **kw
    ) -> inspector_pb2.InspectResponse:
        return self.inspect_request(build_inspect_request(image, question, options, **kw), timeout_s=timeout_s)

    def inspect_request(
        self, request: inspector_pb2.InspectRequest, *, timeout_s: float | None = None
    ) -> inspector_pb2.InspectResponse:
        return self._stub.Inspect(request, timeout=timeout_s or self.timeout_s, metadata=self.metadata)

    def add_normal_images(
        self, line_id: str, category: str, images: Iterable[ImageLike], *, dataset: str = "", timeout_s: float = 600.0
    ) -> inspector_pb2.AddNormalImagesResponse:
        req = inspector_pb2.AddNormalImagesRequest(
            line_id=line_id, dataset=dataset, category=category, images=[to_image(i) for i in images]
        )
        return self._stub.AddNormalImages(req, timeout=timeout_s, metadata=self.metadata)

    def list_normal_images(
        self, line_id: str, *, category: str = "", dataset: str = "", limit: int = 100, page_token: str = ""
    ) -> inspector_pb2.ListNormalImagesResponse:
        req = inspector_pb2.ListNormalImagesRequest(
            line_id=line_id, dataset=dataset, category=category, limit=limit, page_token=page_token
        )
        return self._stub.ListNormalImages(req, timeout=self.timeout_s, metadata=self.metadata)

    def delete_normal_images(
        self, line_id: str, *, category: str = "", dataset: str = "", ids: Iterable[str] = ()
    ) -> inspector_pb2.DeleteNormalImagesResponse:
        req = inspector_pb2.DeleteNormalImagesRequest(line_id=line_id, dataset=dataset, category=category, ids=ids)
        return self._stub.DeleteNormalImages(req, timeout=self.timeout_s, metadata=self.metadata)

    def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        """SERVING, NOT_SERVING or SERVICE_UNKNOWN, from the standard gRPC health service."""
        resp = health_pb2_grpc.HealthStub(self._channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, metadata=self.metadata
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> InspectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncInspectorClient:
    """asyncio client with the same methods and arguments; create it inside the running loop."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_message_mb: int = 32,
        application: str = "",
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.metadata = (("application", application),) if application else None
        self._channel = grpc.aio.insecure_channel(address, options=_options(retries, max_message_mb))
        self._stub = inspector_pb2_grpc.InspectorStub(self._channel)

    async def inspect(
        self, image: ImageLike, question: str, options: Mapping[str, str], *, timeout_s: float | None = None, **kw
    ) -> inspector_pb2.InspectResponse:
        return await self.inspect_request(build_inspect_request(image, question, options, **kw), timeout_s=timeout_s)

    async def inspect_request(
        self, request: inspector_pb2.InspectRequest, *, timeout_s: float | None = None
    ) -> inspector_pb2.InspectResponse:
        return await self._stub.Inspect(request, timeout=timeout_s or self.timeout_s, metadata=self.metadata)

    async def add_normal_images(
        self, line_id: str, category: str, images: Iterable[ImageLike], *, dataset: str = "", timeout_s: float = 600.0
    ) -> inspector_pb2.AddNormalImagesResponse:
        req = inspector_pb2.AddNormalImagesRequest(
            line_id=line_id, dataset=dataset, category=category, images=[to_image(i) for i in images]
        )
        return await self._stub.AddNormalImages(req, timeout=timeout_s, metadata=self.metadata)

    async def list_normal_images(
        self, line_id: str, *, category: str = "", dataset: str = "", limit: int = 100, page_token: str = ""
    ) -> inspector_pb2.ListNormalImagesResponse:
        req = inspector_pb2.ListNormalImagesRequest(
            line_id=line_id, dataset=dataset, category=category, limit=limit, page_token=page_token
        )
        return await self._stub.ListNormalImages(req, timeout=self.timeout_s, metadata=self.metadata)

    async def delete_normal_images(
        self, line_id: str, *, category: str = "", dataset: str = "", ids: Iterable[str] = ()
    ) -> inspector_pb2.DeleteNormalImagesResponse:
        req = inspector_pb2.DeleteNormalImagesRequest(line_id=line_id, dataset=dataset, category=category, ids=ids)
        return await self._stub.DeleteNormalImages(req, timeout=self.timeout_s, metadata=self.metadata)

    async def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        resp = await health_pb2_grpc.HealthStub(self._channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, metadata=self.metadata
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncInspectorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
