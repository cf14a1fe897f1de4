"""The operator console: a few server-rendered pages over the Inspector's gRPC API.

It is a client like any other (embedded server or Ray Serve's proxy alike): the
inspection list and details come from the audit RPCs, pictures from GetImage,
products from ListProducts / ListNormalImages, uploads go through
AddNormalImages, the inspect form through Inspect, the review queue through
ListReviews and the Good / Defect buttons through ConfirmReview (the console's
token then needs `review: true`). No state of its own.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from services.audit.record import parse_time, question_type_name, total_ms, verdict_name
from services.client import AsyncInspectorClient
from services.common.enums import QUESTION_TYPE_ENUM, REVIEW_STATE_ENUM, VERDICT_ENUM

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
DEFAULT_QUESTION = "Is there any defect in the object?"
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass
class ConsoleSettings:
    server: str = "127.0.0.1:50051"
    application: str = ""  # the Inspector's Ray Serve application, in cluster mode
    line: str = "default"  # the line shown first
    timeout_s: float = 60.0


def _source_label(source: str) -> str:
    """The verdict's source in one word for the list ("evidence" or "model"); the whole source is its tooltip."""
    return "evidence" if source.startswith("evidence") else "model" if source else "-"


def _local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _state_name(value: int) -> str:
    return next((k for k, v in REVIEW_STATE_ENUM.items() if v == value), "")


TEMPLATES.env.globals.update(
    verdict_name=verdict_name,
    state_name=_state_name,
    source_label=_source_label,
    local_time=_local,
    type_label=lambda v: question_type_name(v) or "-",
    total_ms=total_ms,
    verdicts=list(VERDICT_ENUM),
    question_types=list(QUESTION_TYPE_ENUM),
)


def create_app(settings: ConsoleSettings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        app.state.client = AsyncInspectorClient(
            settings.server, application=settings.application, timeout_s=settings.timeout_s, retries=1
        )
        try:
            yield
        finally:
            await app.state.client.close()

    def client(request: Request) -> AsyncInspectorClient:
        return request.app.state.client

    def line_of(request: Request) -> str:
        return request.query_params.get("line") or settings.line

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("line", line_of(request))
        return TEMPLATES.TemplateResponse(request, name, {"server": settings.server, **context}, status_code=status)

    def failure(request: Request, err: grpc.aio.AioRpcError | ValueError) -> Response:
        if isinstance(err, ValueError):
            return page(request, "error.html", 400, title="Bad input", message=str(err))
        code, details = err.code(), err.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "refused" in details.lower()):
            details = f"no Echo-IAD server at {settings.server}: is `echo-iad serve` running? ({details})"
        return page(request, "error.html", _HTTP_STATUS.get(code, 502), title=code.name, message=details)

    def filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        verdict = q.get("verdict", "")
        if verdict and verdict not in VERDICT_ENUM:
            raise ValueError(f"verdict: {verdict!r} is not one of {', '.join(VERDICT_ENUM)}")
        try:
            since, until = parse_time(q.get("since", "")), parse_time(q.get("until", ""))
        except ValueError as e:
            raise ValueError(f"since / until: {e}") from None
        return {
            "category": q.get("category", ""),
            "dataset": q.get("dataset", ""),
            "verdict": verdict,
            "since_ms": since,
            "until_ms": until,
        }

    async def home(request: Request) -> Response:
        return RedirectResponse(f"/inspections?{urlencode({'line': line_of(request)})}", status_code=307)

    async def inspections(request: Request) -> Response:
        rows_only = request.url.path.endswith("/rows")
        try:
            page_ = await client(request).list_inspections(line_of(request), limit=100, **filters(request))
        except (grpc.aio.AioRpcError, ValueError) as e:
            return failure(request, e)
        name = "_rows.html" if rows_only else "inspections.html"
        return page(request, name, records=page_.records, more=bool(page_.next_page_token), q=request.query_params)

    async def inspection(request: Request) -> Response:
        line, request_id = line_of(request), request.query_params.get("id", "")
        try:
            record = (await client(request).get_inspection(line, request_id)).record
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        t = record.trace
        timings = [s for s in t.timings if s.stage != "total"]
        longest = max((s.ms for s in timings), default=1.0) or 1.0
        options = sorted(record.request.question.options.items())
        try:
            found = await client(request).list_reviews(line, inspection_id=request_id)
        except grpc.aio.AioRpcError:  # the page is still worth showing without its review
            found = None
        review = found.items[0] if found is not None and found.items else None
        return page(request, "inspection.html", r=record, t=t, line=line, timings=timings, longest=longest,
                    options=options, review=review, confirmed=request.query_params.get("confirmed"))  # fmt: skip

    async def reviews(request: Request) -> Response:
        state = request.query_params.get("state", "")
        if state and state not in REVIEW_STATE_ENUM:
            return failure(request, ValueError(f"state: {state!r} is not one of {', '.join(REVIEW_STATE_ENUM)}"))
        try:
            found = await client(request).list_reviews(line_of(request), state=state, limit=200)
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        return page(request, "reviews.html", items=found.items, pending=found.pending, state=state)

    async def confirm(request: Request) -> Response:
        form = await request.form()
        line, request_id = str(form.get("line") or settings.line), str(form.get("id", ""))
        verdict = str(form.get("verdict", ""))
        try:
            resp = await client(request).confirm_review(
                line, request_id, verdict if verdict in ("good", "defect") else "",
                defect_type=str(form.get("defect_type", "")).strip() if verdict == "defect" else "",
                force=form.get("force") == "on", note=str(form.get("note", "")),
            )  # fmt: skip
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        query = urlencode({"line": line, "id": request_id, "confirmed": resp.message})
        return RedirectResponse(f"/inspection?{query}", status_code=303)

    async def image(request: Request) -> Response:
        line, sha = line_of(request), request.query_params.get("sha256", "")
        try:
            got = await client(request).get_image(line, sha)
        except grpc.aio.AioRpcError as e:
            return Response(e.details() or e.code().name, status_code=_HTTP_STATUS.get(e.code(), 502))
        # content-addressed: the bytes behind a sha256 never change
        return Response(got.data, media_type=got.content_type, headers={"Cache-Control": "private, max-age=86400"})

    async def products(request: Request) -> Response:
        try:
            listing = await client(request).list_products(line_of(request))
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        return page(request, "products.html", products=listing.products)

    async def product(request: Request) -> Response:
        q = request.query_params
        line, dataset, category = line_of(request), q.get("dataset", ""), q.get("category", "")
        try:
            listing = await client(request).list_products(line, dataset=dataset, category=category)
            items = await client(request).list_normal_images(line, dataset=dataset, category=category, limit=60)
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        found = next((p for p in listing.products if p.dataset == dataset and p.category == category), None)
        return page(request, "product.html", p=found, dataset=dataset, category=category, items=items.items,
                    total=items.total, added=q.get("added"), existing=q.get("existing"))  # fmt: skip

    async def upload(request: Request) -> Response:
        form = await request.form()
        line, dataset, category = (
            str(form.get("line") or settings.line),
            str(form.get("dataset", "")),
            str(form.get("category", "")),
        )
        files = [f for f in form.getlist("images") if isinstance(f, UploadFile) and f.filename]
        if not files:
            return page(request, "error.html", 400, line=line, title="Nothing to add",
                        message="images: choose one or more pictures of good parts")  # fmt: skip
        blobs = [await f.read() for f in files]
        try:
            resp = await client(request).add_normal_images(line, category, blobs, dataset=dataset)
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        query = urlencode({"line": line, "dataset": dataset, "category": category, "added": resp.added,
                           "existing": resp.existing})  # fmt: skip
        return RedirectResponse(f"/product?{query}", status_code=303)

    async def inspect_form(request: Request) -> Response:
        return page(request, "inspect.html", question=DEFAULT_QUESTION)

    async def inspect(request: Request) -> Response:
        form = await request.form()
        line = str(form.get("line") or settings.line)
        upload_ = form.get("image")
        if not isinstance(upload_, UploadFile) or not upload_.filename:
            return page(request, "error.html", 400, line=line, title="No image",
                        message="image: choose the picture of the part to inspect")  # fmt: skip
        options = {k: str(form.get(f"option_{k}", "")).strip() for k in "ABCDE"}
        qtype = str(form.get("question_type", ""))
        request_id = f"console-{uuid.uuid4().hex[:12]}"
        try:
            await client(request).inspect(
                await upload_.read(),
                str(form.get("question", "")),
                {k: v for k, v in options.items() if v},
                line_id=line,
                dataset=str(form.get("dataset", "")),
                category=str(form.get("category", "")),
                question_type=qtype if qtype in QUESTION_TYPE_ENUM else None,
                request_id=request_id,
            )
        except grpc.aio.AioRpcError as e:
            return failure(request, e)
        return RedirectResponse(f"/inspection?{urlencode({'line': line, 'id': request_id})}", status_code=303)

    routes = [
        Route("/", home),
        Route("/inspections", inspections),
        Route("/inspections/rows", inspections),
        Route("/inspection", inspection),
        Route("/reviews", reviews),
        Route("/reviews/confirm", confirm, methods=["POST"]),
        Route("/image", image),
        Route("/products", products),
        Route("/product", product),
        Route("/products/upload", upload, methods=["POST"]),
        Route("/inspect", inspect_form, methods=["GET"]),
        Route("/inspect", inspect, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


__all__ = ["ConsoleSettings", "create_app"]
