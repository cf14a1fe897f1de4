"""The Inspector end to end over real gRPC on loopback: every type, every switch, every mode."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from echo.v1 import common_pb2, inspector_pb2
from services.client import InspectorClient, build_inspect_request
from services.gateway.config import DEFAULT_EXPERT_MAP
from services.mmad.types import QUESTION_TYPES

LINE = "line-a"  # the line the conftest built the memory for

EXPERT_NAMES = {"reference", "knowledge", "reasoning", "evidence"}


def _first(dataset, qtype: str, *, normal: bool | None = None):  # type: ignore[no-untyped-def]
    for sample, q in dataset.questions():
        if q.type == qtype and (normal is None or sample.is_normal == normal):
            return sample, q
    raise LookupError(qtype)


def _ask(client: InspectorClient, ds, sample, q, **kw) -> inspector_pb2.InspectResponse:  # type: ignore[no-untyped-def]
    kw.setdefault("category", sample.category)
    kw.setdefault("dataset", sample.dataset)
    return client.inspect(ds.abspath(sample.image_path), q.text, q.options, line_id=LINE, **kw)


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_every_question_type_is_answered_with_the_mapped_experts(client, dataset, qtype: str) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, qtype)
    for given_type in (qtype, None):  # stated by the client, then planned by the gateway
        resp = _ask(client, dataset, sample, q, question_type=given_type)
        t = resp.trace
        assert resp.answer in q.options or (resp.answer == "" and t.unparsed)
        assert common_pb2.QuestionType.Name(t.question_type) == qtype.upper().replace(" ", "_")
        assert t.type_from_client == (given_type is not None)
        assert set(t.experts_used) - {"decision"} == set(DEFAULT_EXPERT_MAP[qtype])
        assert t.experts_used[-1] == "decision" and not t.degraded
        assert ("reference" in t.experts_used) == bool(t.references)
        assert ("knowledge" in t.experts_used) == bool(t.knowledge_entry_ids)
        assert ("reasoning" in t.experts_used) == bool(t.reasoning)
        stages = {s.stage for s in t.timings}
        assert {"decision", "total"} <= stages
        assert t.model_ids["decision"]


@pytest.mark.parametrize("expert", sorted(EXPERT_NAMES))
def test_each_expert_switch_turns_that_expert_off_and_on(client, dataset, expert: str) -> None:  # type: ignore[no-untyped-def]
    qtype = next(t for t in QUESTION_TYPES if expert in DEFAULT_EXPERT_MAP[t])  # a type that uses it
    sample, q = _first(dataset, qtype)
    off = _ask(client, dataset, sample, q, question_type=q.type, experts={expert: False}).trace
    assert expert not in off.experts_used
    assert set(off.experts_used) == (set(DEFAULT_EXPERT_MAP[qtype]) - {expert}) | {"decision"}
    sample, q = _first(dataset, "Object Classification")  # a type that uses none
    on = _ask(client, dataset, sample, q, question_type=q.type, experts={expert: True}).trace
    assert set(on.experts_used) == {expert, "decision"}


def test_switching_every_expert_off_leaves_the_decision_maker_alone(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Description")
    t = _ask(client, dataset, sample, q, experts={"reference": False, "knowledge": False, "reasoning": False}).trace
    assert list(t.experts_used) == ["decision"] and not t.references and not t.reasoning


@pytest.mark.parametrize(
    ("mode", "k", "expected_refs"), [("0-shot", 0, 0), ("1-shot", 0, 1), ("1-shot*", 0, 1), ("k-shot", 3, 3)]
)
def test_reference_modes_return_the_right_number_of_references(client, dataset, mode, k, expected_refs) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Anomaly Detection", normal=False)
    t = _ask(client, dataset, sample, q, reference_mode=mode, k_shots=k).trace
    assert len(t.references) == expected_refs
    assert all(r.category == sample.category for r in t.references)
    assert ("reference" in t.experts_used) == (expected_refs > 0)


def test_one_shot_star_picks_the_most_similar_and_one_shot_a_seeded_random_reference(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Anomaly Detection", normal=False)
    k_all = _ask(client, dataset, sample, q, reference_mode="k-shot", k_shots=3).trace.references
    star = _ask(client, dataset, sample, q, reference_mode="1-shot*").trace.references[0]
    assert star.id == k_all[0].id and star.score == pytest.approx(max(r.score for r in k_all), abs=1e-5)
    picks = {_ask(client, dataset, sample, q, reference_mode="1-shot", seed=s).trace.references[0].id for s in range(8)}
    assert len(picks) > 1  # random across seeds
    again = {_ask(client, dataset, sample, q, reference_mode="1-shot", seed=5).trace.references[0].id for _ in range(2)}
    assert len(again) == 1  # reproducible for one seed


@pytest.mark.parametrize(("mode", "has_knowledge"), [("none", False), ("dk", True), ("csk", True)])
def test_knowledge_modes(client, dataset, mode: str, has_knowledge: bool) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Classification")
    t = _ask(client, dataset, sample, q, knowledge_mode=mode, return_prompt=True).trace
    assert bool(t.knowledge_entry_ids) == has_knowledge
    assert t.knowledge_mode == {"none": 1, "dk": 2, "csk": 3}[mode]


def test_dk_gives_the_whole_entry_and_csk_less(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Classification")
    dk = _ask(client, dataset, sample, q, knowledge_mode="dk", return_prompt=True).trace
    csk = _ask(client, dataset, sample, q, knowledge_mode="csk", return_prompt=True).trace
    assert len(csk.prompt) < len(dk.prompt)


@pytest.mark.parametrize("fmt", ["mc", "open", "tf"])
def test_answer_formats_all_end_in_an_option_letter(client, dataset, fmt: str) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Classification")
    resp = _ask(client, dataset, sample, q, answer_format=fmt)
    assert resp.answer in q.options or resp.trace.unparsed
    assert resp.trace.answer_format == {"mc": 1, "open": 2, "tf": 3}[fmt]


def test_category_is_inferred_from_memory_when_omitted(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Anomaly Detection", normal=True)
    t = _ask(client, dataset, sample, q, category="", dataset="").trace
    assert t.category_inferred and t.category in {"round_part", "screw"}
    assert 0.0 < t.category_confidence <= 1.0
    assert t.dataset == sample.dataset


def test_the_prompt_is_returned_only_on_request(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Classification")
    assert _ask(client, dataset, sample, q).trace.prompt == ""
    prompt = _ask(client, dataset, sample, q, return_prompt=True).trace.prompt
    assert q.text in prompt and "Following is the query image" in prompt


def test_the_callers_own_references_replace_the_memory_search(client, dataset) -> None:  # type: ignore[no-untyped-def]
    """MMAD's 1-shot protocol: the request carries random_templates[0]; the trace names it request:0."""
    sample, q = _first(dataset, "Anomaly Detection", normal=False)
    template = dataset.abspath(sample.random_templates[0])
    t = _ask(client, dataset, sample, q, references=[template], return_prompt=True).trace
    assert [r.id for r in t.references] == ["request:0"] and "reference" in t.experts_used
    assert t.reference_mode == common_pb2.ONE_SHOT_RANDOM and "retrieval" not in {s.stage for s in t.timings}
    assert t.prompt.count("<|image_pad|>") >= 2  # the template and the query
    with pytest.raises(grpc.RpcError) as err:
        _ask(client, dataset, sample, q, references=[b"not an image"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("references[0]")


def test_memory_references_reach_the_decision_model_as_the_stored_bytes(client, dataset) -> None:  # type: ignore[no-untyped-def]
    """Search answers content ids only; the gateway sends the images themselves, so the decision stage sees the
    same prompt (text and image hashes) as when the caller sends those bytes as its own reference."""
    sample, q = _first(dataset, "Anomaly Detection", normal=False)
    searched = _ask(client, dataset, sample, q, reference_mode="1-shot*", return_prompt=True).trace
    ref = searched.references[0]
    assert ref.uri == f"sha256:{ref.sha256}" and "reference" in searched.experts_used and not searched.degraded
    assert searched.prompt.count("<|image_pad|>") >= 2  # the reference and the query
    stored = client.get_image(LINE, ref.sha256).data
    sent = _ask(client, dataset, sample, q, references=[stored], return_prompt=True).trace
    assert sent.prompt == searched.prompt and sent.prompt_sha256 == searched.prompt_sha256


def test_a_reference_gone_from_the_image_store_is_left_out_and_said(client, dataset, server) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Anomaly Detection", normal=False)
    ref = _ask(client, dataset, sample, q, reference_mode="1-shot*").trace.references[0]
    (path,) = Path(server.settings.retrieval.image_store).glob(f"{ref.sha256[:2]}/{ref.sha256}.*")
    aside = path.parent.parent / f"{path.name}.aside"  # out of the folder the store looks in
    path.rename(aside)
    try:
        t = _ask(client, dataset, sample, q, reference_mode="1-shot*").trace
    finally:
        aside.rename(path)
    assert not t.references and "reference" not in t.experts_used
    assert [d for d in t.degraded if d.startswith("reference:")] == [
        f"reference: sha256:{ref.sha256} missing from the image store, left out"
    ]
    assert not any(str(path.parent) in d for d in t.degraded)


def test_an_object_classification_prompt_never_names_the_category(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Object Classification")
    name = sample.category.replace("_", " ")
    prompt = _ask(client, dataset, sample, q, question_type=q.type, return_prompt=True).trace.prompt
    for option in q.options.values():
        prompt = prompt.replace(option, "")
    assert name not in prompt.lower() and sample.category not in prompt


def test_the_gateway_asks_for_refined_knowledge_when_configured(server, client, dataset) -> None:  # type: ignore[no-untyped-def]
    """gateway.refine_knowledge: the Knowledge Guide refines CSK through the decision stage on the same port."""
    sample, q = _first(dataset, "Defect Classification")
    inspector = server.embedded.inspector
    inspector.settings.refine_knowledge = True
    try:
        t = _ask(client, dataset, sample, q, question_type=q.type).trace
    finally:
        inspector.settings.refine_knowledge = False
    assert "knowledge" in t.experts_used and not t.degraded
    assert t.model_ids["knowledge"].endswith("+refined:echo-tiny-qwen2-vl")
    plain = _ask(client, dataset, sample, q, question_type=q.type).trace
    assert "+refined" not in plain.model_ids["knowledge"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.ClearField("line_id"), "line_id"),
        (lambda r: setattr(r, "line_id", "bad line!"), "line_id"),
        (lambda r: r.ClearField("image"), "image"),
        (lambda r: setattr(r.image, "data", b"not an image"), "image"),
        (lambda r: setattr(r.question, "text", "  "), "question.text"),
        (lambda r: r.question.options.clear(), "question.options"),
        (lambda r: r.question.options.__setitem__("Z", "x"), "question.options"),
        (lambda r: r.question.options.__setitem__("C", ""), "question.options[C]"),
        (lambda r: setattr(r.settings, "deadline_ms", -1), "settings.deadline_ms"),
        (lambda r: setattr(r.settings, "k_shots", 99), "settings.k_shots"),
        (lambda r: setattr(r.settings, "reference_mode", 42), "settings.reference_mode"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(client, dataset, change, field: str) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Anomaly Detection")
    req = build_inspect_request(dataset.abspath(sample.image_path), q.text, q.options, line_id=LINE)
    change(req)
    with pytest.raises(grpc.RpcError) as e:
        client.inspect_request(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field), e.value.details()


def test_a_line_without_memory_is_failed_precondition(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Anomaly Detection")
    with pytest.raises(grpc.RpcError) as e:
        client.inspect(dataset.abspath(sample.image_path), q.text, q.options, line_id="empty-line", category="screw")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "empty-line" in e.value.details()


def test_overload_is_resource_exhausted_at_once(server, client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Localization")
    inspector = server.embedded.inspector
    saved = inspector.settings.max_concurrent
    inspector.admission.in_flight = saved  # the queue is full
    try:
        with pytest.raises(grpc.RpcError) as e:
            _ask(client, dataset, sample, q, timeout_s=5)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        inspector.admission.in_flight = 0
    assert _ask(client, dataset, sample, q).answer in q.options


def test_past_capacity_an_inspection_that_cannot_meet_its_deadline_is_refused_at_once(server, client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _first(dataset, "Defect Localization")
    admission = server.embedded.inspector.admission
    saved = list(admission._recent)
    admission._recent.clear()  # of every question type, the recent ones took 2 s each, one at a time
    for kind in ("", q.type):
        for _ in range(admission.min_samples):
            admission.finished((time.perf_counter() - 2.0, 1, kind, 0), answered=True)
            admission.in_flight += 1
    admission.in_flight = 1  # so the next would take about 4 s: over half its 5 s deadline
    try:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            _ask(client, dataset, sample, q, deadline_ms=5000, timeout_s=5)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "deadline_ms" in e.value.details()
        assert time.monotonic() - start < 2.5  # refused, retried by the client's policy and refused again: no wait
    finally:
        admission.in_flight = 0
        admission._recent.clear()
        admission._recent.extend(saved)
    assert _ask(client, dataset, sample, q, deadline_ms=5000).answer in q.options


def test_an_optional_expert_down_degrades_and_a_required_one_fails(server, dataset) -> None:  # type: ignore[no-untyped-def]
    import socket

    from services.gateway.clients import StageClients
    from services.gateway.core import Inspector
    from services.gateway.domain import InspectionResult
    from services.gateway.servicer import to_inspection

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    live = server.embedded.inspector
    sample, q = _first(dataset, "Defect Classification")
    req = build_inspect_request(
        dataset.abspath(sample.image_path), q.text, q.options, line_id=LINE, category=sample.category,
        dataset=sample.dataset, question_type=q.type,
    )  # fmt: skip

    async def with_dead(stage: str) -> InspectionResult:
        gw = live.settings.model_copy(deep=True)
        getattr(gw, stage).address = dead
        getattr(gw, stage).retries = 0
        clients = StageClients(gw, server.address)
        try:
            inspection = await to_inspection(req, live)
            return await Inspector(clients, live.classifier, gw, live.image_store).inspect(inspection, 10.0)
        finally:
            await clients.close()

    resp = server.run(with_dead("knowledge"))
    assert "knowledge" not in resp.trace.experts_used and "reference" in resp.trace.experts_used
    assert any(d.startswith("knowledge: knowledge stage: UNAVAILABLE") for d in resp.trace.degraded)
    assert resp.answer in q.options
    from services.common.stage_client import StageCallError

    with pytest.raises(StageCallError) as e:
        server.run(with_dead("decision"))
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and "decision stage" in str(e.value)


def test_health_and_reflection_cover_every_service(server) -> None:  # type: ignore[no-untyped-def]
    names = ["echo.v1.Inspector", "echo.v1.Embedding", "echo.v1.Retrieval", "echo.v1.Knowledge", "echo.v1.Decision",
             "echo.v1.Evidence"]  # fmt: skip
    with grpc.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ["", *names]:
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING, name
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        listed = {s.name for r in replies for s in r.list_services_response.service}
    assert set(names) <= listed and "grpc.health.v1.Health" in listed


def test_memory_rpcs_add_list_delete_and_readding_adds_nothing(client, dataset) -> None:  # type: ignore[no-untyped-def]
    rels = [r for d, c, r in dataset.templates() if c == "screw"][:2]
    images = [dataset.abspath(r) for r in rels]
    first = client.add_normal_images("line-mem", "screw", images, dataset="Custom")
    assert (first.added, first.existing) == (2, 0) and len(set(first.ids)) == 2
    again = client.add_normal_images("line-mem", "screw", images, dataset="Custom")
    assert (again.added, again.existing) == (0, 2) and list(again.ids) == list(first.ids)
    listing = client.list_normal_images("line-mem", category="screw")
    assert listing.total == 2 and {i.id for i in listing.items} == set(first.ids)
    assert all(i.label == "good" and i.line_id == "line-mem" for i in listing.items)
    assert client.delete_normal_images("line-mem", category="screw", dataset="Custom").deleted == 2
    assert client.list_normal_images("line-mem").total == 0
    with pytest.raises(grpc.RpcError) as e:
        client.delete_normal_images("line-mem")  # a whole line needs a category or ids
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "category" in e.value.details()
