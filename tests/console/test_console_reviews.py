"""The operator in the loop, in real headless Chromium: a queued part reviewed on the Reviews page, confirmed good on
its detail page, and the product page then shows the evidence bank grown and its threshold moved."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from consolekit import LINE, screenshot

from services.client import InspectorClient
from services.common.images import encode_png
from services.decision.servicer import DecisionServicer
from services.mmad.render import render_normal

pytestmark = pytest.mark.slow  # a real Chromium against a live console

NO_YES = {"A": "No.", "B": "Yes."}  # the blind model leans to one letter: either order queues some part


@pytest.fixture()
def as_real_model(server) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The decision stage reports its blind offline model as one that reads the image, so its answers disagree
    with the evidence somewhere and those parts are queued (as tests/gateway/test_verdict_e2e.py does)."""
    decider = next(s.servicer for s in server.embedded.stages if isinstance(s.servicer, DecisionServicer)).decider
    decider.model_kind = "mllm"  # type: ignore[attr-defined]
    try:
        yield
    finally:
        decider.model_kind = "random-weights"  # type: ignore[attr-defined]


def _queue_a_good_part(server, dataset) -> str:  # type: ignore[no-untyped-def]
    """Inspect fresh good screws until one is queued for review (the model said defect, the evidence normal)."""
    with InspectorClient(server.address, retries=0) as client:
        templates = [dataset.abspath(r) for d, c, r in dataset.templates() if c == "screw"]
        client.add_normal_images(LINE, "screw", templates, dataset="Synthetic")
        seen = []
        for seed in range(40):
            png = encode_png(render_normal("screw", np.random.default_rng(7000 + seed), size=160))
            options = NO_YES if seed % 2 == 0 else {"A": "Yes.", "B": "No."}
            resp = client.inspect(png, "Is there any defect in the object?", options, line_id=LINE, category="screw",
                                  dataset="Synthetic", request_id=f"queued-{seed}")  # fmt: skip
            e = resp.trace.evidence
            seen.append((resp.answer, resp.trace.model_answer, e.anomalous, round(e.score, 2), round(e.threshold, 2)))
            if resp.trace.review == "pending" and not e.anomalous:
                return resp.request_id
    pytest.fail(f"no good part was queued in 40 inspections: the model never disagreed with the evidence: {seen}")


def _bank(page, console: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    page.goto(f"{console}/product?line={LINE}&dataset=Synthetic&category=screw")
    return int(page.inner_text("#bank-images")), page.inner_text("#bank-threshold")


def test_an_operator_confirms_a_queued_part_good_and_the_bank_grows_and_its_threshold_moves(
    page, console, server, dataset, as_real_model
) -> None:  # type: ignore[no-untyped-def]
    queued = _queue_a_good_part(server, dataset)
    images_before, threshold_before = _bank(page, console)
    screenshot(page, "review-product-before")
    page.goto(f"{console}/reviews?line={LINE}&state=pending")
    row = page.locator(f"#reviews tr.rec[data-id='{queued}']")
    assert "pending" in row.inner_text() and "disagree" in row.inner_text()
    screenshot(page, "reviews")
    row.locator("a").click()
    page.wait_for_url("**/inspection?*")
    assert page.inner_text("#review-state").startswith("review pending")
    page.locator("#confirm-form input[name=note]").fill("a good screw: the model was wrong")
    page.locator("#confirm-good").click()
    page.wait_for_selector("#confirmed")
    assert page.inner_text("#confirmed").startswith("confirmed good by local")
    assert page.inner_text("#review-state").startswith("confirmed good")
    screenshot(page, "review-confirmed")
    images_after, threshold_after = _bank(page, console)
    screenshot(page, "review-product-after")
    assert images_after == images_before + 1 and threshold_after != threshold_before
    page.goto(f"{console}/reviews?line={LINE}&state=confirmed")
    assert "good" in page.locator(f"#reviews tr.rec[data-id='{queued}']").inner_text()
