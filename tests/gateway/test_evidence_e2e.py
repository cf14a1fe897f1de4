"""The visual evidence expert through the Inspector over real gRPC (embedded server, real EfficientNet-Lite0).

Two servers on loopback: the shared one of conftest.py (the random-weight MLLM decides, the evidence reaches it
as text) and one whose decision backend is `evidence` (no MLLM: AD and DL answered from the evidence alone).
Products are added through the one ingest path (AddNormalImages), which feeds the memory and the bank.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import pytest
from PIL import Image

from app.background import BackgroundServer
from services.client import InspectorClient
from services.common.images import encode_png, sha256_hex

LINE = "line-ev"
DATASET = "Synthetic"
AD_OPTIONS = {"A": "Yes.", "B": "No."}
AD_QUESTION = "Is there any defect in the object?"
DL_QUESTION = "Where is the defect?"
DL_OPTIONS = {"A": "At the top left of the image.", "B": "At the center of the image.",
              "C": "At the bottom right of the image.", "D": "At the right of the image."}  # fmt: skip
SIZE = 128


def _product(category: str, seed: int, n_normal: int = 5):  # type: ignore[no-untyped-def]
    """Normal images, and defective ones with the region of the defect (the synthetic generator's own)."""
    import numpy as np

    from services.mmad.catalogue import CATEGORIES
    from services.mmad.synth import draw_defect, render_normal

    rng = np.random.default_rng(seed)
    normals = [encode_png(render_normal(category, rng, SIZE)) for _ in range(n_normal)]
    held_out = encode_png(render_normal(category, rng, SIZE))
    defective = []
    for defect in CATEGORIES[category].defects[:2]:
        bad, _mask, info = draw_defect(render_normal(category, rng, SIZE), category, defect, rng)
        defective.append((encode_png(bad), info["region"]))
    return normals, held_out, defective


@pytest.fixture(scope="module")
def fabric():  # type: ignore[no-untyped-def]
    return _product("woven_fabric", seed=7)


@pytest.fixture(scope="module")
def evidence_server(tmp_path_factory: pytest.TempPathFactory, fabric) -> Iterator[BackgroundServer]:  # type: ignore[no-untyped-def]
    """decision.backend evidence: no MLLM is loaded; woven_fabric onboarded through AddNormalImages."""
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("ev-state")),
        server={"port": 0},
        decision={"backend": "evidence"},
        evidence={"device": "cpu", "input_size": 160, "auto_config": False},
    )
    srv = BackgroundServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ev_client(evidence_server: BackgroundServer, fabric) -> Iterator[InspectorClient]:  # type: ignore[no-untyped-def]
    normals, _, _ = fabric
    with InspectorClient(evidence_server.address, retries=0) as c:
        added = c.add_normal_images(LINE, "woven_fabric", normals, dataset=DATASET)
        assert added.added == len(normals) and added.evidence_bank_images == len(normals)
        yield c


def test_one_ingest_feeds_memory_and_bank_idempotently(ev_client: InspectorClient, evidence_server, fabric) -> None:  # type: ignore[no-untyped-def]
    normals, _, _ = fabric
    again = ev_client.add_normal_images(LINE, "woven_fabric", normals, dataset=DATASET)
    assert again.added == 0 and again.existing == len(normals)
    assert again.evidence_bank_images == len(normals) and again.evidence_threshold > 0
    listed = ev_client.list_normal_images(LINE, category="woven_fabric", dataset=DATASET)
    assert listed.total == len(normals)


def test_an_anomaly_question_answers_from_the_evidence_and_the_trace_carries_it(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    _, held_out, defective = fabric
    kw = {"line_id": LINE, "category": "woven_fabric", "dataset": DATASET}
    bad = ev_client.inspect(defective[0][0], AD_QUESTION, AD_OPTIONS, **kw)
    good = ev_client.inspect(held_out, AD_QUESTION, AD_OPTIONS, **kw)
    assert (bad.answer, good.answer) == ("A", "B")  # Yes on the defect, No on a normal image it never saw
    for resp in (bad, good):
        t = resp.trace
        assert "evidence" in t.experts_used and not t.degraded
        assert t.model_ids["decision"] == "evidence-verdict" and t.model_ids["evidence"]
        e = t.evidence
        assert e.anomalous == (e.score > e.threshold) and e.threshold > 0 and e.sent_as_text
        assert e.summary.startswith("Visual evidence") and e.boxes
        assert not e.heatmap.png and not e.overlay_png  # only when asked
    assert bad.trace.evidence.anomalous and not good.trace.evidence.anomalous


def test_deleting_a_normal_image_by_id_takes_it_out_of_the_evidence_bank_too(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    normals, _, defective = fabric
    line, mistake = "line-mistake", defective[1][0]  # a defective part onboarded as normal by mistake
    kw = {"line_id": line, "category": "woven_fabric", "dataset": DATASET}
    added = ev_client.add_normal_images(line, "woven_fabric", [*normals, mistake], dataset=DATASET)
    assert added.evidence_bank_images == len(normals) + 1
    assert ev_client.inspect(mistake, AD_QUESTION, AD_OPTIONS, **kw).answer == "B"  # "normal": it is in the bank
    ev_client.delete_normal_images(line, category="woven_fabric", dataset=DATASET, ids=[added.ids[-1]])
    product = ev_client.list_products(line).products[0]
    assert (product.normal_images, product.evidence_bank_images) == (len(normals), len(normals))
    assert ev_client.inspect(mistake, AD_QUESTION, AD_OPTIONS, **kw).answer == "A"  # a defect again


def test_a_heat_map_and_overlay_come_at_the_query_size_when_asked(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    _, _, defective = fabric
    resp = ev_client.inspect(
        defective[0][0], AD_QUESTION, AD_OPTIONS, line_id=LINE, category="woven_fabric", dataset=DATASET,
        return_heatmap=True,
    )  # fmt: skip
    e = resp.trace.evidence
    heat = Image.open(io.BytesIO(e.heatmap.png))
    assert heat.size == (SIZE, SIZE) == (e.heatmap.width, e.heatmap.height) and heat.mode == "L"
    assert e.heatmap.scale == pytest.approx(2 * e.threshold)
    assert Image.open(io.BytesIO(e.overlay_png)).size == (SIZE, SIZE)


def test_the_audit_record_keeps_the_evidence_and_its_images(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    _, _, defective = fabric
    resp = ev_client.inspect(
        defective[1][0], AD_QUESTION, AD_OPTIONS, line_id=LINE, category="woven_fabric", dataset=DATASET
    )
    record = ev_client.get_inspection(LINE, resp.request_id).record
    assert record.evidence.anomalous and record.evidence.score == pytest.approx(resp.trace.evidence.score)
    assert [b.region for b in record.evidence.boxes] == [b.region for b in resp.trace.evidence.boxes]
    overlay = ev_client.get_image(LINE, record.evidence.overlay_sha256)
    assert sha256_hex(overlay.data) == record.evidence.overlay_sha256
    assert Image.open(io.BytesIO(overlay.data)).size == (SIZE, SIZE)


def test_localization_picks_the_option_naming_the_top_box_region(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    _, _, defective = fabric
    for image, region in defective:
        options = {"A": f"At the {region} of the image.", "B": "Nowhere in particular."}
        resp = ev_client.inspect(image, DL_QUESTION, options, line_id=LINE, category="woven_fabric", dataset=DATASET)
        assert resp.trace.evidence.boxes[0].region == region
        assert resp.answer == "A" and resp.trace.raw_reply == f"most anomalous region: {region}"


def test_backend_evidence_refuses_other_types_naming_those_it_answers(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    _, _, defective = fabric
    with pytest.raises(grpc.RpcError) as err:
        ev_client.inspect(
            defective[0][0], "What is the appearance of the defect?", {"A": "A dark line.", "B": "A stain."},
            line_id=LINE, category="woven_fabric", dataset=DATASET, question_type="Defect Description",
        )  # fmt: skip
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Anomaly Detection, Defect Localization, Defect Classification only" in err.value.details()


DC_QUESTION = "There is a defect in the object. What is the type of the defect?"


def test_classification_answers_from_the_confirmed_defects_and_an_empty_library_says_what_to_add(  # type: ignore[no-untyped-def]
    ev_client, evidence_server, fabric
) -> None:
    from services.mmad.catalogue import CATEGORIES

    _, _, defective = fabric
    types = CATEGORIES["woven_fabric"].defects[:2]  # the fixture's defects, in order
    options = {"A": "Crack.", "B": f"{types[0].replace('_', ' ').capitalize()}.", "C": "Dent.",
               "D": f"{types[1].replace('_', ' ').capitalize()}."}  # fmt: skip
    ask = {"line_id": LINE, "category": "woven_fabric", "dataset": DATASET, "question_type": "Defect Classification"}
    with pytest.raises(grpc.RpcError) as err:
        ev_client.inspect(defective[0][0], DC_QUESTION, options, **ask)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "defect library" in err.value.details() and "is empty: confirm defects" in err.value.details()
    evidence = evidence_server.embedded.stages[4].servicer.service  # the review queue's AddDefect, at its core
    for (image, _), kind in zip(defective, types, strict=True):
        assert evidence.defects.add(LINE, DATASET, "woven_fabric", image, kind).added
    for (image, _), letter in zip(defective, "BD", strict=True):
        resp = ev_client.inspect(image, DC_QUESTION, options, **ask)
        e = resp.trace.evidence
        assert resp.answer == letter and e.defect_type == types["BD".index(letter)], e.defect_summary
        assert "nearest confirmed defects" in e.defect_summary and resp.trace.verdict_source.startswith("evidence")


def test_backend_evidence_without_a_bank_is_refused_saying_what_to_add(ev_client, fabric) -> None:  # type: ignore[no-untyped-def]
    _, _, defective = fabric
    with pytest.raises(grpc.RpcError) as err:
        ev_client.inspect(
            defective[0][0], AD_QUESTION, AD_OPTIONS, line_id=LINE, category="screw", dataset=DATASET,
            experts={"reference": False},
        )  # fmt: skip
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no evidence bank" in err.value.details() and "add normal images" in err.value.details()


# ---- the MLLM server of conftest.py: the evidence reaches the Decision Maker; no bank degrades, still answers ----
def test_the_mllm_prompt_holds_the_evidence_text(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = next((s, q) for s, q in dataset.questions() if q.type == "Anomaly Detection")
    resp = client.inspect(
        dataset.abspath(sample.image_path), q.text, q.options, line_id="line-a", category=sample.category,
        dataset=sample.dataset, return_prompt=True,
    )  # fmt: skip
    e = resp.trace.evidence
    assert "evidence" in resp.trace.experts_used and e.sent_as_text and not e.sent_as_image
    assert e.summary and e.summary in resp.trace.prompt and resp.answer in q.options


def test_a_product_without_a_bank_degrades_the_expert_and_still_answers(client, fabric) -> None:  # type: ignore[no-untyped-def]
    normals, _, defective = fabric
    resp = client.inspect(
        defective[0][0], AD_QUESTION, AD_OPTIONS, line_id="line-a", category="woven_fabric", dataset=DATASET,
        references=[normals[0]],
    )  # fmt: skip
    t = resp.trace
    assert resp.answer in AD_OPTIONS and "evidence" not in t.experts_used and not t.HasField("evidence")
    (why,) = [d for d in t.degraded if d.startswith("evidence:")]
    assert "no evidence bank" in why and "add normal images" in why


def test_the_paper_protocol_never_runs_the_evidence_expert() -> None:
    from services.common.protocol import PAPER_EXPERT_MAP, PRODUCT_EXPERT_MAP

    assert not any("evidence" in experts for experts in PAPER_EXPERT_MAP.values())
    assert {t for t, experts in PRODUCT_EXPERT_MAP.items() if "evidence" in experts} >= {
        "Anomaly Detection",
        "Defect Localization",
    }


def test_the_overlay_reaches_the_mllm_as_an_extra_image_when_configured(server, client, dataset) -> None:  # type: ignore[no-untyped-def]
    from services.decision.prompt import HEATMAP_WORDING

    sample, q = next((s, q) for s, q in dataset.questions() if q.type == "Anomaly Detection")
    kw = {"line_id": "line-a", "category": sample.category, "dataset": sample.dataset, "return_prompt": True}
    image = dataset.abspath(sample.image_path)
    text_only = client.inspect(image, q.text, q.options, **kw)
    settings = server.embedded.inspector.settings  # gateway.evidence_as_image, as a config file would set it
    settings.evidence_as_image, settings.evidence_as_text = True, False
    try:
        with_image = client.inspect(image, q.text, q.options, **kw)
    finally:
        settings.evidence_as_image, settings.evidence_as_text = False, True
    e = with_image.trace.evidence
    assert e.sent_as_image and not e.sent_as_text and with_image.answer in q.options
    assert HEATMAP_WORDING in with_image.trace.prompt and e.summary not in with_image.trace.prompt
    assert HEATMAP_WORDING not in text_only.trace.prompt
    assert with_image.trace.prompt_sha256 != text_only.trace.prompt_sha256
