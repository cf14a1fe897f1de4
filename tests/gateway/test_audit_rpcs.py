"""The audit trail through the Inspector over real gRPC: one record per answer, read back with the audit RPCs."""

from __future__ import annotations

import time

import grpc
import pytest

from echo.v1 import inspector_pb2
from services.client import InspectorClient, build_inspect_request
from services.common.images import sha256_hex

LINE = "line-a"  # the line the conftest built the memory for


def _question(dataset, qtype: str):  # type: ignore[no-untyped-def]
    return next((s, q) for s, q in dataset.questions() if q.type == qtype and not s.is_normal)


def _inspect(client: InspectorClient, dataset, qtype: str, **kw) -> tuple[inspector_pb2.InspectResponse, bytes]:  # type: ignore[no-untyped-def]
    sample, q = _question(dataset, qtype)
    data = dataset.abspath(sample.image_path).read_bytes()
    kw.setdefault("category", sample.category)
    kw.setdefault("dataset", sample.dataset)
    return client.inspect(data, q.text, q.options, line_id=LINE, question_type=qtype, **kw), data


def test_every_answer_is_kept_as_one_record_with_what_it_was_based_on(client, dataset) -> None:  # type: ignore[no-untyped-def]
    before = int(time.time() * 1000)
    resp, data = _inspect(client, dataset, "Defect Classification", request_id="audit-dc-1")
    record = client.get_inspection(LINE, "audit-dc-1").record
    t = resp.trace
    assert record.request_id == resp.request_id == "audit-dc-1"
    assert record.line_id == LINE and record.category == t.category and record.dataset == t.dataset
    assert before <= record.time_unix_ms <= int(time.time() * 1000)
    assert record.image_sha256 == sha256_hex(data)
    assert not record.request.image.data and record.request.question.text  # the request, minus its pixels
    assert record.answer == resp.answer and record.answer_text == resp.answer_text
    assert record.verdict in (inspector_pb2.VERDICT_ANSWERED, inspector_pb2.VERDICT_UNPARSED)
    assert list(record.trace.experts_used) == list(t.experts_used) and "knowledge" in t.experts_used
    assert [r.sha256 for r in record.trace.references] == [r.sha256 for r in t.references] and t.references
    assert list(record.trace.knowledge_entry_ids) == list(t.knowledge_entry_ids)
    assert [p.id for p in record.knowledge_passages] == list(t.knowledge_passage_ids)
    assert all(p.text for p in record.knowledge_passages) and record.knowledge_text
    assert record.trace.model_ids["decision"] and record.trace.model_ids["embedding"]
    assert len(t.prompt_sha256) == 64 and record.trace.prompt_sha256 == t.prompt_sha256
    assert record.trace.raw_reply == t.raw_reply and dict(record.trace.option_scores) == dict(t.option_scores)
    assert {s.stage for s in record.trace.timings} >= {"embedding", "retrieval", "knowledge", "decision", "total"}
    assert [s.stage for s in t.timings][-1] == "audit"  # the caller sees what keeping the record cost
    assert record.gateway


def test_anomaly_detection_answers_get_a_good_or_defect_verdict(client, dataset) -> None:  # type: ignore[no-untyped-def]
    resp, _ = _inspect(client, dataset, "Anomaly Detection")
    record = client.get_inspection(LINE, resp.request_id).record
    expected = {"Yes.": inspector_pb2.VERDICT_DEFECT, "No.": inspector_pb2.VERDICT_GOOD}.get(
        resp.answer_text, inspector_pb2.VERDICT_UNPARSED
    )
    assert record.verdict == expected


def test_the_same_prompt_hashes_the_same_and_another_image_differently(client, dataset) -> None:  # type: ignore[no-untyped-def]
    a, _ = _inspect(client, dataset, "Defect Localization")
    b, _ = _inspect(client, dataset, "Defect Localization")
    assert a.trace.prompt_sha256 == b.trace.prompt_sha256
    sample = next(s for s, q in dataset.questions() if q.type == "Defect Localization" and s.is_normal is False)
    other = next(
        s for s, _ in dataset.questions() if s.image_path != sample.image_path and s.category == sample.category
    )
    _, q = _question(dataset, "Defect Localization")
    c = client.inspect(dataset.abspath(other.image_path), q.text, q.options, line_id=LINE, category=other.category,
                       dataset=other.dataset, question_type="Defect Localization")  # fmt: skip
    assert c.trace.prompt_sha256 != a.trace.prompt_sha256


def test_list_filters_by_category_verdict_and_time_within_the_line(client, dataset) -> None:  # type: ignore[no-untyped-def]
    since = int(time.time() * 1000)
    kinds = []
    for qtype in ("Anomaly Detection", "Defect Localization"):
        resp, _ = _inspect(client, dataset, qtype)
        kinds.append((resp.request_id, client.get_inspection(LINE, resp.request_id).record))
    listed = client.list_inspections(LINE, since_ms=since).records
    assert [r.request_id for r in listed] == [rid for rid, _ in reversed(kinds)]
    category = kinds[0][1].category
    assert all(r.category == category for r in client.list_inspections(LINE, category=category).records)
    verdict = kinds[1][1].verdict
    name = {v: k for k, v in inspector_pb2.Verdict.items()}[verdict].removeprefix("VERDICT_").lower()
    assert kinds[1][0] in [r.request_id for r in client.list_inspections(LINE, verdict=name, since_ms=since).records]
    assert all(r.verdict == verdict for r in client.list_inspections(LINE, verdict=name).records)
    assert client.list_inspections("another-line", since_ms=since).records == []


def test_images_are_served_by_sha256_to_their_own_line_only(client, dataset) -> None:  # type: ignore[no-untyped-def]
    resp, data = _inspect(client, dataset, "Anomaly Detection")
    record = client.get_inspection(LINE, resp.request_id).record
    query = client.get_image(LINE, record.image_sha256)
    assert query.data == data and query.content_type == "image/png" and query.sha256 == record.image_sha256
    ref = record.trace.references[0]
    assert sha256_hex(client.get_image(LINE, ref.sha256).data) == ref.sha256
    memory_item = client.list_normal_images(LINE, limit=100).items[-1]  # in memory, maybe never a reference
    assert sha256_hex(client.get_image(LINE, memory_item.sha256).data) == memory_item.sha256
    for line, sha in (("another-line", record.image_sha256), ("another-line", memory_item.sha256), (LINE, "0" * 64)):
        with pytest.raises(grpc.RpcError) as e:
            client.get_image(line, sha)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and e.value.details().startswith("sha256: ")


def test_an_unknown_request_id_is_not_found(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        client.get_inspection(LINE, "never-asked")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "never-asked" in e.value.details()


def test_products_show_memory_counts_evidence_banks_knowledge_and_readiness(client, dataset) -> None:  # type: ignore[no-untyped-def]
    products = {(p.dataset, p.category): p for p in client.list_products(LINE).products}
    listed = {(d, c) for d, c in dataset.categories()}
    assert set(products) == listed
    for (ds, cat), p in products.items():
        expected = sum(1 for d, c, _ in dataset.templates() if (d, c) == (ds, cat))
        assert p.normal_images == expected and p.ready and p.readiness.startswith("ready")
        assert p.evidence_bank_images == expected and p.evidence_threshold > 0  # the same images, one ingest path
        assert f"evidence bank of {expected}" in p.readiness
        assert p.has_knowledge and p.knowledge.category == cat and p.knowledge.defects
    assert client.list_products("another-line").products == []


def _stub(client: InspectorClient):  # type: ignore[no-untyped-def]
    from echo.v1 import inspector_pb2_grpc

    return inspector_pb2_grpc.InspectorStub(client.channel)


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("ListInspections", inspector_pb2.ListInspectionsRequest(), "line_id"),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id="bad line!"), "line_id"),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id=LINE, dataset="a b"), "dataset"),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id=LINE, category="?"), "category"),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id=LINE, verdict=42), "verdict"),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id=LINE, since_unix_ms=-1), "since_unix_ms"),
        (
            "ListInspections",
            inspector_pb2.ListInspectionsRequest(line_id=LINE, since_unix_ms=10, until_unix_ms=5),
            "until_unix_ms",
        ),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id=LINE, limit=5000), "limit"),
        ("ListInspections", inspector_pb2.ListInspectionsRequest(line_id=LINE, page_token="x"), "page_token"),
        ("GetInspection", inspector_pb2.GetInspectionRequest(line_id=LINE), "request_id"),
        ("GetInspection", inspector_pb2.GetInspectionRequest(request_id="r"), "line_id"),
        ("GetInspection", inspector_pb2.GetInspectionRequest(line_id=LINE, request_id="x" * 200), "request_id"),
        ("GetImage", inspector_pb2.GetImageRequest(line_id=LINE, sha256="abc"), "sha256"),
        ("GetImage", inspector_pb2.GetImageRequest(line_id=LINE, sha256="A" * 64), "sha256"),
        ("GetImage", inspector_pb2.GetImageRequest(sha256="a" * 64), "line_id"),
        ("ListProducts", inspector_pb2.ListProductsRequest(), "line_id"),
        ("ListProducts", inspector_pb2.ListProductsRequest(line_id=LINE, category="a b"), "category"),
    ],
)
def test_bad_audit_queries_are_invalid_argument_naming_the_field(client, method, request_, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        getattr(_stub(client), method)(request_, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(f"{field}: "), e.value.details()


@pytest.mark.parametrize("request_id", ["x" * 129, "line\nbreak"])
def test_an_inspect_request_id_that_cannot_name_a_record_is_refused(client, dataset, request_id: str) -> None:  # type: ignore[no-untyped-def]
    sample, q = _question(dataset, "Anomaly Detection")
    req = build_inspect_request(dataset.abspath(sample.image_path), q.text, q.options, line_id=LINE)
    req.request_id = request_id
    with pytest.raises(grpc.RpcError) as e:
        client.inspect_request(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("request_id: ")


def test_a_refused_inspection_leaves_no_record(client, dataset) -> None:  # type: ignore[no-untyped-def]
    _, q = _question(dataset, "Anomaly Detection")
    with pytest.raises(grpc.RpcError):
        client.inspect(b"not an image", q.text, q.options, line_id=LINE, request_id="refused-1")
    with pytest.raises(grpc.RpcError) as e:
        client.get_inspection(LINE, "refused-1")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
