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

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, inspector_pb2, inspector_pb2_grpc, knowledge_pb2
from services.common.auth import bearer, read_secret
from services.common.enums import (
    ANSWER_FORMAT_ENUM,
    KNOWLEDGE_MODE_ENUM,
    QUESTION_TYPE_ENUM,
    REFERENCE_MODE_ENUM,
    REVIEW_STATE_ENUM,
    VERDICT_ENUM,
    to_enum,
)
from services.common.serving import channel_options, retry_options

ImageLike = bytes | str | Path
DEFAULT_PORT = 50051
ANSWER_FORMATS = {"mc": "multiple_choice", "open": "open_qa", "tf": "true_false"}
"""The short answer-format names of the CLI and this client -> the contract's names."""


def _options(retries: int, max_message_mb: int) -> list[tuple[str, Any]]:
    return channel_options(max_message_mb) + retry_options(
        {"echo.v1.Inspector": retries}, ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
    )


def with_default_port(address: str, port: int = DEFAULT_PORT) -> str:
    """`host` -> `host:50051`: an address without a port means Echo-IAD's port, never gRPC's default 443.

    IPv6 literals may be bare (`::1`) or bracketed (`[::1]`); a target with a scheme (`dns:///h:1`,
    `unix:/path`) is left as written.
    """
    address = address.strip()
    if not address or "://" in address or address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return address
    if address.startswith("["):
        return address if "]:" in address else f"{address}:{port}"
    if address.count(":") > 1:  # a bare IPv6 literal
        return f"[{address}]:{port}"
    return address if ":" in address else f"{address}:{port}"


def channel_credentials(
    ca_file: str = "", cert_file: str = "", key_file: str = "", tls: bool | None = None
) -> grpc.ChannelCredentials | None:
    """TLS credentials from PEM files (arguments, else $ECHO_IAD_CA_FILE / _CERT_FILE / _KEY_FILE); None: plaintext."""
    ca_file = ca_file or os.environ.get("ECHO_IAD_CA_FILE", "")
    cert_file = cert_file or os.environ.get("ECHO_IAD_CERT_FILE", "")
    key_file = key_file or os.environ.get("ECHO_IAD_KEY_FILE", "")
    if bool(cert_file) != bool(key_file):
        raise ValueError("cert_file and key_file go together (mutual TLS)")
    if tls is False or (tls is None and not (ca_file or cert_file)):
        return None
    ca, cert, key = (Path(f).read_bytes() if f else None for f in (ca_file, cert_file, key_file))
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def to_image(image: ImageLike, *, send_uri: bool = False) -> common_pb2.Image:
    """Bytes go as bytes; a content id ("sha256:<hex>", from a trace or a listing) as a uri; a path is read
    here (the server may not see this disk) unless send_uri."""
    if isinstance(image, bytes):
        return common_pb2.Image(data=image)
    if send_uri or "://" in str(image) or str(image).startswith("sha256:"):
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
    references: list[ImageLike] | None = None,
    return_heatmap: bool = False,
) -> inspector_pb2.InspectRequest:
    """One InspectRequest from plain Python values (names as in the README and CLI).

    Names: question_type as MMAD's ("Anomaly Detection"), reference_mode 0-shot/1-shot/1-shot*/k-shot,
    knowledge_mode none/dk/csk, answer_format mc/open/tf; an unknown one is InvalidArgument naming it.
    `references`: normal images of your choosing, used instead of the memory search (MMAD's 1-shot protocol).
    `return_heatmap`: the trace carries the visual evidence's heat map and overlay (PNG).
    """
    fmt = ANSWER_FORMATS.get(answer_format or "", answer_format)
    settings = common_pb2.RequestSettings(
        reference_mode=to_enum(REFERENCE_MODE_ENUM, reference_mode, "reference_mode"),
        k_shots=k_shots,
        knowledge_mode=to_enum(KNOWLEDGE_MODE_ENUM, knowledge_mode, "knowledge_mode"),
        answer_format=to_enum(ANSWER_FORMAT_ENUM, fmt, "answer_format"),
        deadline_ms=deadline_ms,
        return_prompt=return_prompt,
        seed=seed,
        return_heatmap=return_heatmap,
    )
    for name, on in (experts or {}).items():
        setattr(settings.experts, name, on)
    return inspector_pb2.InspectRequest(
        request_id=request_id,
        line_id=line_id,
        image=to_image(image, send_uri=send_uri),
        question=common_pb2.Question(
            text=question, options=dict(options), type=to_enum(QUESTION_TYPE_ENUM, question_type, "question_type")
        ),
        dataset=dataset,
        category=category,
        settings=settings,
        references=[to_image(r, send_uri=send_uri) for r in references or ()],
    )


def build_list_inspections_request(
    line_id: str,
    *,
    dataset: str = "",
    category: str = "",
    verdict: str = "",
    since_ms: int = 0,
    until_ms: int = 0,
    limit: int = 0,
    page_token: str = "",
    oldest_first: bool = False,
) -> inspector_pb2.ListInspectionsRequest:
    """A ListInspectionsRequest; verdict by name: good, defect, answered or unparsed ('' for any)."""
    return inspector_pb2.ListInspectionsRequest(
        line_id=line_id,
        dataset=dataset,
        category=category,
        verdict=to_enum(VERDICT_ENUM, verdict, "verdict"),
        since_unix_ms=since_ms,
        until_unix_ms=until_ms,
        limit=limit,
        page_token=page_token,
        oldest_first=oldest_first,
    )


class _Client:
    """The one implementation behind both clients: each method builds its request and calls the stub.

    A blocking stub returns the response; an asyncio stub returns an awaitable call,
    so every method here serves InspectorClient as is and AsyncInspectorClient
    under `await`. Only what must wait differs (health, closing).

    Args:
        address: host:port of the embedded server or of Ray Serve's gRPC proxy (or the TLS ingress before it).
        timeout_s: deadline of each call unless the call names its own.
        retries: retries on UNAVAILABLE / RESOURCE_EXHAUSTED (gRPC's retry policy; 0: none).
        application: the Ray Serve application to route to (cluster mode: "inspector"); empty in embedded mode.
        token: the bearer token scoped to your lines; None reads token_file, else $ECHO_IAD_TOKEN_FILE, else
            $ECHO_IAD_TOKEN (never put a token on a command line).
        ca_file: PEM CA that signed the server's certificate: turns TLS on (else $ECHO_IAD_CA_FILE).
        cert_file, key_file: this client's certificate and key, for mutual TLS (else $ECHO_IAD_CERT_FILE,
            $ECHO_IAD_KEY_FILE).
        tls: force TLS on (the system's CA roots when no ca_file) or off; None: on when a CA or cert is given.
    """

    _grpc: Any  # grpc or grpc.aio: where the channel constructors come from

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_message_mb: int = 32,
        application: str = "",
        token: str | None = None,
        token_file: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        tls: bool | None = None,
    ) -> None:
        self.address = address = with_default_port(address)
        self.timeout_s = timeout_s
        if token is None:
            token = read_secret(token_file or os.environ.get("ECHO_IAD_TOKEN_FILE", ""), "ECHO_IAD_TOKEN")
        self.auth_metadata: tuple[tuple[str, str], ...] = (bearer(token),) if token else ()
        routing = (("application", application),) if application else ()
        self.metadata = (*routing, *self.auth_metadata) or None
        options = _options(retries, max_message_mb)
        credentials = channel_credentials(ca_file, cert_file, key_file, tls)
        if credentials is None:
            self._channel = self._grpc.insecure_channel(address, options=options)
        else:
            self._channel = self._grpc.secure_channel(address, credentials, options=options)
        self._stub = inspector_pb2_grpc.InspectorStub(self._channel)

    @property
    def channel(self) -> Any:
        return self._channel

    def inspect(
        self, image: ImageLike, question: str, options: Mapping[str, str], *, timeout_s: float | None = None, **kw: Any
    ) -> Any:
        """One inspection; keyword arguments as build_inspect_request's. Returns the InspectResponse."""
        return self.inspect_request(build_inspect_request(image, question, options, **kw), timeout_s=timeout_s)

    def inspect_request(self, request: inspector_pb2.InspectRequest, *, timeout_s: float | None = None) -> Any:
        return self._stub.Inspect(request, timeout=timeout_s or self.timeout_s, metadata=self.metadata)

    def add_normal_images(
        self, line_id: str, category: str, images: Iterable[ImageLike], *, dataset: str = "", timeout_s: float = 600.0
    ) -> Any:
        req = inspector_pb2.AddNormalImagesRequest(
            line_id=line_id, dataset=dataset, category=category, images=[to_image(i) for i in images]
        )
        return self._stub.AddNormalImages(req, timeout=timeout_s, metadata=self.metadata)

    def list_normal_images(
        self, line_id: str, *, category: str = "", dataset: str = "", limit: int = 100, page_token: str = ""
    ) -> Any:
        req = inspector_pb2.ListNormalImagesRequest(
            line_id=line_id, dataset=dataset, category=category, limit=limit, page_token=page_token
        )
        return self._stub.ListNormalImages(req, timeout=self.timeout_s, metadata=self.metadata)

    def delete_normal_images(
        self, line_id: str, *, category: str = "", dataset: str = "", ids: Iterable[str] = ()
    ) -> Any:
        req = inspector_pb2.DeleteNormalImagesRequest(line_id=line_id, dataset=dataset, category=category, ids=ids)
        return self._stub.DeleteNormalImages(req, timeout=self.timeout_s, metadata=self.metadata)

    def list_products(self, line_id: str, *, dataset: str = "", category: str = "") -> Any:
        """ListProductsResponse: each product's normal images, evidence bank, knowledge and readiness."""
        req = inspector_pb2.ListProductsRequest(line_id=line_id, dataset=dataset, category=category)
        return self._stub.ListProducts(req, timeout=self.timeout_s, metadata=self.metadata)

    def list_inspections(self, line_id: str, **filters: Any) -> Any:
        """One page of audit records (ListInspectionsResponse); filters as build_list_inspections_request's."""
        req = build_list_inspections_request(line_id, **filters)
        return self._stub.ListInspections(req, timeout=self.timeout_s, metadata=self.metadata)

    def get_inspection(self, line_id: str, request_id: str) -> Any:
        """The latest audit record of a request id on a line (GetInspectionResponse; the record is `.record`)."""
        req = inspector_pb2.GetInspectionRequest(line_id=line_id, request_id=request_id)
        return self._stub.GetInspection(req, timeout=self.timeout_s, metadata=self.metadata)

    def get_image(self, line_id: str, sha256: str) -> Any:
        """An image of this line by content hash (GetImageResponse: data, content_type)."""
        req = inspector_pb2.GetImageRequest(line_id=line_id, sha256=sha256)
        return self._stub.GetImage(req, timeout=self.timeout_s, metadata=self.metadata)

    def list_lines(self) -> Any:
        """Every line with normal images in memory, with its products (ListLinesResponse)."""
        return self._stub.ListLines(inspector_pb2.ListLinesRequest(), timeout=self.timeout_s, metadata=self.metadata)

    def put_knowledge(self, entry: knowledge_pb2.KnowledgeEntry) -> Any:
        """Store a product's knowledge entry through the Inspector; PutKnowledgeResponse (id, version)."""
        req = inspector_pb2.PutKnowledgeRequest(entry=entry)
        return self._stub.PutKnowledge(req, timeout=self.timeout_s, metadata=self.metadata)

    def get_knowledge(self, dataset: str, category: str) -> Any:
        """A product's knowledge entry (GetKnowledgeResponse); NOT_FOUND when it has none."""
        req = inspector_pb2.GetKnowledgeRequest(dataset=dataset, category=category)
        return self._stub.GetKnowledge(req, timeout=self.timeout_s, metadata=self.metadata)

    def list_reviews(
        self,
        line_id: str,
        *,
        state: str = "",
        dataset: str = "",
        category: str = "",
        inspection_id: str = "",
        limit: int = 0,
        page_token: str = "",
    ) -> Any:
        """The review queue of a line (ListReviewsResponse), pending first; state: pending, confirmed or '' (both)."""
        req = inspector_pb2.ListReviewsRequest(
            line_id=line_id,
            state=to_enum(REVIEW_STATE_ENUM, state, "state"),
            dataset=dataset,
            category=category,
            inspection_id=inspection_id,
            limit=limit,
            page_token=page_token,
        )
        return self._stub.ListReviews(req, timeout=self.timeout_s, metadata=self.metadata)

    def confirm_review(
        self,
        line_id: str,
        inspection_id: str,
        verdict: str,
        *,
        defect_type: str = "",
        box: tuple[int, int, int, int] | None = None,
        force: bool = False,
        note: str = "",
    ) -> Any:
        """An operator's confirmation (ConfirmReviewResponse); verdict good or defect; needs a `review: true` token."""
        req = inspector_pb2.ConfirmReviewRequest(
            line_id=line_id,
            inspection_id=inspection_id,
            verdict=to_enum(VERDICT_ENUM, verdict, "verdict"),
            defect_type=defect_type,
            box=common_pb2.EvidenceBox(x0=box[0], y0=box[1], x1=box[2], y1=box[3]) if box else None,
            force=force,
            note=note,
        )
        return self._stub.ConfirmReview(req, timeout=self.timeout_s, metadata=self.metadata)

    def _health_check(self, service: str, timeout_s: float) -> Any:
        return health_pb2_grpc.HealthStub(self._channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, metadata=self.metadata
        )


def _status_name(resp: health_pb2.HealthCheckResponse) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


class InspectorClient(_Client):
    """Blocking client; reuse one per process (it holds one HTTP/2 connection). Arguments: see _Client."""

    _grpc = grpc

    def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        """SERVING, NOT_SERVING or SERVICE_UNKNOWN, from the standard gRPC health service."""
        return _status_name(self._health_check(service, timeout_s))

    def iter_inspections(self, line_id: str, **filters: Any) -> Iterator[inspector_pb2.InspectionRecord]:
        """Every matching audit record, page after page."""
        token = ""
        while True:
            page = self.list_inspections(line_id, page_token=token, **filters)
            yield from page.records
            token = page.next_page_token
            if not token:
                return

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> InspectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncInspectorClient(_Client):
    """asyncio client with the same methods and arguments (await them); create it inside the running loop."""

    _grpc = grpc.aio

    async def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        """SERVING, NOT_SERVING or SERVICE_UNKNOWN, from the standard gRPC health service."""
        return _status_name(await self._health_check(service, timeout_s))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncInspectorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
