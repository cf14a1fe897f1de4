"""The console in real headless Chromium: upload, inspect, the detail page, the products page, the live list."""

from __future__ import annotations

import time

import pytest
from consolekit import LINE, images_loaded, screenshot

from echo.v1 import common_pb2, inspector_pb2
from services.client import InspectorClient
from services.common.images import encode_png, sha256_hex

pytestmark = pytest.mark.slow  # a real Chromium against a live console

YES_NO = {"A": "Yes.", "B": "No."}


def _templates(dataset) -> list:  # type: ignore[no-untyped-def]
    return [dataset.abspath(r) for d, c, r in dataset.templates() if c == "screw"]


def _ensure_memory(server, dataset) -> None:  # type: ignore[no-untyped-def]
    with InspectorClient(server.address) as client:  # content-addressed: re-adding adds nothing
        client.add_normal_images(LINE, "screw", _templates(dataset), dataset="Synthetic")


def _defective(dataset):  # type: ignore[no-untyped-def]
    return next(s for s, q in dataset.questions() if not s.is_normal and q.type == "Anomaly Detection")


def test_uploading_normal_images_shows_them_on_the_product_page(page, console, dataset) -> None:  # type: ignore[no-untyped-def]
    files = [str(p) for p in _templates(dataset)[:3]]
    page.goto(f"{console}/products?line={LINE}")
    form = page.locator("#add-product")
    form.locator("input[name=dataset]").fill("Synthetic")
    form.locator("input[name=category]").fill("screw")
    form.locator("input[name=images]").set_input_files(files)
    form.locator("button").click()
    page.wait_for_url("**/product?*")
    assert "Added 3 normal images" in page.inner_text("#added") or "already in memory" in page.inner_text("#added")
    assert page.inner_text("#readiness") == "ready"
    widths = images_loaded(page, "#thumbs img")
    assert len(widths) >= 3 and all(w > 0 for w in widths)  # every picture came back through GetImage
    screenshot(page, "product")
    page.goto(f"{console}/products?line={LINE}")
    row = page.locator("tr.rec", has_text="Synthetic/screw")
    assert "ready" in row.inner_text()
    screenshot(page, "products")


def test_adding_more_images_on_the_product_page_raises_the_count(page, console, server, dataset) -> None:  # type: ignore[no-untyped-def]
    _ensure_memory(server, dataset)
    before = int(
        page.goto(f"{console}/product?line={LINE}&dataset=Synthetic&category=screw") and page.inner_text("#count b")
    )
    new = next(s for s, _ in dataset.questions() if s.is_normal)  # a good part not yet in memory
    page.locator("#add-images input[name=images]").set_input_files(str(dataset.abspath(new.image_path)))
    page.locator("#add-images button").click()
    page.wait_for_selector("#added")
    assert int(page.inner_text("#count b")) == before + 1
    assert "Added 1 normal images" in page.inner_text("#added")


def test_the_inspect_form_leads_to_the_detail_page_with_both_images_and_the_answer(
    page, console, server, dataset
) -> None:  # type: ignore[no-untyped-def]
    _ensure_memory(server, dataset)
    sample = _defective(dataset)
    page.goto(f"{console}/inspect?line={LINE}")
    screenshot(page, "inspect")
    form = page.locator("#inspect-form")
    form.locator("input[name=image]").set_input_files(str(dataset.abspath(sample.image_path)))
    form.locator("input[name=dataset]").fill("Synthetic")
    form.locator("input[name=category]").fill("screw")
    form.locator("button").click()
    page.wait_for_url("**/inspection?*")
    answer = page.inner_text("#answer")
    assert answer.startswith(("A. Yes.", "B. No.")) or "could not be parsed" in answer
    assert images_loaded(page, "#query-image")[0] > 0
    assert images_loaded(page, ".reference-image")[0] > 0  # the most similar normal image, beside the query
    assert "reference" in page.inner_text("#experts") and "decision" in page.inner_text("#experts")
    assert "decision" in page.inner_text("body") and "total" in page.inner_text("body")
    request_id = page.url.split("id=")[1]
    with InspectorClient(server.address) as client:
        record = client.get_inspection(LINE, request_id).record
    assert record.image_sha256 == sha256_hex(dataset.abspath(sample.image_path).read_bytes())
    screenshot(page, "inspection")


def test_the_detail_page_shows_the_heat_map_overlay_when_evidence_ran(page, console, server, dataset) -> None:  # type: ignore[no-untyped-def]
    """The evidence expert is not wired in yet: its record is written here the way the Inspector will write it."""
    from PIL import Image, ImageDraw

    _ensure_memory(server, dataset)
    sample, q = next((s, q) for s, q in dataset.questions() if q.type == "Defect Description")  # every expert
    with InspectorClient(server.address) as client:
        resp = client.inspect(dataset.abspath(sample.image_path), q.text, q.options, line_id=LINE, category="screw",
                              dataset="Synthetic", question_type=q.type)  # fmt: skip
        record = client.get_inspection(LINE, resp.request_id).record
    query = Image.open(dataset.abspath(sample.image_path)).convert("RGB")
    overlay = query.copy()
    ImageDraw.Draw(overlay, "RGBA").ellipse((40, 40, 120, 120), fill=(255, 40, 0, 140))
    overlay_png = encode_png(overlay)
    record.request_id = f"{resp.request_id}-evidence"
    record.evidence.CopyFrom(
        inspector_pb2.RecordedEvidence(
            score=3.2, threshold=1.5, anomalous=True, overlay_sha256=sha256_hex(overlay_png), model_id="patchcore-test",
            boxes=[common_pb2.EvidenceBox(x0=40, y0=40, x1=120, y1=120, score=3.2, region="top left")],
        )
    )  # fmt: skip
    audit = server.embedded.audit
    server.run(audit.log.append(record, {sha256_hex(overlay_png): overlay_png}))
    page.goto(f"{console}/inspection?line={LINE}&id={record.request_id}")
    assert images_loaded(page, "#query-image")[0] > 0
    assert images_loaded(page, "#overlay-image")[0] == overlay.width
    assert images_loaded(page, ".reference-image")[0] > 0
    body = page.inner_text("body")
    assert "score 3.200" in body and "threshold 1.500" in body and "top left" in body
    shown = record.trace.reasoning.strip().replace("\r\n", "\n").replace("\r", "\n")  # HTML parsing makes CRs LFs
    assert page.inner_text("#reasoning") == shown  # this question ran every expert
    assert len(page.query_selector_all(".passage")) == len(record.knowledge_passages) > 0
    screenshot(page, "inspection-evidence")


def test_the_list_is_live_filters_by_verdict_and_colours_it(page, console, server, dataset) -> None:  # type: ignore[no-untyped-def]
    _ensure_memory(server, dataset)
    page.goto(f"{console}/inspections?line={LINE}")
    sample = _defective(dataset)
    with InspectorClient(server.address) as client:  # a new inspection arrives while the page is open
        resp = client.inspect(dataset.abspath(sample.image_path), "Is there any defect in the object?",
                              {"A": "Yes.", "B": "No."}, line_id=LINE, category="screw", dataset="Synthetic",
                              request_id=f"live-{int(time.time())}")  # fmt: skip
        verdict = client.get_inspection(LINE, resp.request_id).record.verdict
    row = page.wait_for_selector(f"tr[data-id='{resp.request_id}']", timeout=15_000)  # no reload: the list polls
    name = {inspector_pb2.VERDICT_GOOD: "good", inspector_pb2.VERDICT_DEFECT: "defect"}.get(verdict, "unparsed")
    badge = row.query_selector(".badge")
    assert badge.inner_text() == name and f"v-{name}" in badge.get_attribute("class")
    colour = badge.evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == {"good": "rgb(31, 138, 76)", "defect": "rgb(198, 40, 40)", "unparsed": "rgb(183, 121, 31)"}[name]
    screenshot(page, "inspections")
    other = "good" if name == "defect" else "defect"
    page.goto(f"{console}/inspections?line={LINE}&verdict={other}")
    assert page.query_selector(f"tr[data-id='{resp.request_id}']") is None
    assert all(b.inner_text() == other for b in page.query_selector_all("#rows .badge:not(.disagree)"))


def test_the_list_shows_each_verdicts_source_and_a_disagreement_without_opening_the_detail(
    page, console, server, dataset, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from services.decision.servicer import DecisionServicer

    _ensure_memory(server, dataset)
    asked = [(s, q) for s, q in dataset.questions() if q.type == "Anomaly Detection"]
    decider = next(s.servicer for s in server.embedded.stages if isinstance(s.servicer, DecisionServicer)).decider
    with InspectorClient(server.address) as client:

        def ask(sample, options: dict[str, str], tag: str):  # type: ignore[no-untyped-def]
            return client.inspect(dataset.abspath(sample.image_path), "Is there any defect in the object?", options,
                                  line_id=LINE, category="screw", dataset="Synthetic",
                                  request_id=f"{tag}-{time.time_ns()}")  # fmt: skip

        offline = ask(asked[0][0], YES_NO, "offline")  # the offline random model: the evidence answers
        decider.model_kind = "mllm"  # what a served MLLM reports: its answer stands, a disagreement is carried
        try:  # both option orders: a model that answers blindly then disagrees with the evidence somewhere
            real = [ask(s, opts, "real") for s, _ in asked for opts in (YES_NO, {"A": "No.", "B": "Yes."})]
        finally:
            decider.model_kind = "random-weights"
    disagreeing = [r for r in real if r.trace.evidence_disagrees]
    assert disagreeing, "the random-weight model, taken as a real one, should disagree with the evidence somewhere"
    page.goto(f"{console}/inspections?line={LINE}")
    row = page.wait_for_selector(f"tr[data-id='{offline.request_id}']")
    assert row.query_selector("td.source").inner_text() == "evidence"
    assert row.query_selector("td.source").get_attribute("title") == offline.trace.verdict_source
    assert row.query_selector(".disagree") is None
    flagged = page.wait_for_selector(f"tr[data-id='{disagreeing[0].request_id}']")
    badge = flagged.query_selector(".badge.disagree")
    assert badge.inner_text() == "disagreement" and "the evidence disagrees" in badge.get_attribute("title")
    assert flagged.query_selector("td.source").inner_text() == "model"
    for r in real:
        if not r.trace.evidence_disagrees:
            assert page.query_selector(f"tr[data-id='{r.request_id}'] .disagree") is None
    shot = tmp_path / "inspections-source.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    screenshot(page, "inspections-source")
    page.goto(f"{console}/inspection?line={LINE}&id={disagreeing[0].request_id}")
    assert "the evidence disagrees" in page.inner_text("#verdict-source")
    assert page.query_selector("h1 .badge.disagree") is not None
