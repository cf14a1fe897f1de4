"""The review queue and operator confirmations through the Inspector over real gRPC, with line-scoped tokens.

The embedded server decides with the offline random-weight model; for the queue it reports that model as one
that reads the image (as tests/gateway/test_verdict_e2e.py does), so its blind answers disagree with the
evidence somewhere and those parts go to review.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from app.background import BackgroundServer
from services.client import InspectorClient
from services.common.auth import new_token, token_sha256
from services.common.images import encode_png
from services.decision.servicer import DecisionServicer
from services.mmad.render import render_normal

LINE, OTHER = "line-r", "line-x"
YES_NO = {"A": "Yes.", "B": "No."}
QUESTION = "Is there any defect in the object?"


@dataclass
class Desk:
    server: BackgroundServer
    tokens: dict[str, str]
    settings: object

    def client(self, who: str) -> InspectorClient:
        return InspectorClient(self.server.address, token=self.tokens[who], retries=0, timeout_s=120)


def _start(settings) -> BackgroundServer:  # type: ignore[no-untyped-def]
    return BackgroundServer(settings).start()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path, dataset) -> Iterator[Desk]:  # type: ignore[no-untyped-def]
    import yaml

    from services.config import load_settings

    root = tmp_path_factory.mktemp("reviews")
    tokens = {k: new_token() for k in ("lead", "camera", "other_lead")}
    entries = [
        {"name": "shift-lead", "sha256": token_sha256(tokens["lead"]), "lines": [LINE], "review": True},
        {"name": "camera-r", "sha256": token_sha256(tokens["camera"]), "lines": [LINE]},
        {"name": "lead-x", "sha256": token_sha256(tokens["other_lead"]), "lines": [OTHER], "review": True},
    ]
    (root / "tokens.yaml").write_text(yaml.safe_dump({"tokens": entries}))
    settings = load_settings(
        data_dir=str(root / "data"),
        server={"port": 0, "auth": {"tokens_file": str(root / "tokens.yaml")}},
        decision={"model_cache": str(offline_model_cache)},
        evidence={"input_size": 160, "auto_config": False},
    )
    d = Desk(_start(settings), tokens, settings)
    with d.client("lead") as lead:
        rels = [r for ds, c, r in dataset.templates() if c == "screw"]
        lead.add_normal_images(LINE, "screw", [dataset.abspath(r) for r in rels], dataset="Synthetic")
    try:
        yield d
    finally:
        d.server.stop()


def _inspect(client: InspectorClient, image, request_id: str):  # type: ignore[no-untyped-def]
    return client.inspect(
        image, QUESTION, YES_NO, line_id=LINE, category="screw", dataset="Synthetic", request_id=request_id,
        question_type="Anomaly Detection",
    )  # fmt: skip


def _normal_png(seed: int) -> bytes:
    return encode_png(render_normal("screw", np.random.default_rng(seed), size=160))


def _code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details() or ""


@pytest.fixture()
def as_real_model(desk: Desk) -> Iterator[None]:
    decider = next(s.servicer for s in desk.server.embedded.stages if isinstance(s.servicer, DecisionServicer)).decider
    decider.model_kind = "mllm"  # type: ignore[attr-defined]
    try:
        yield
    finally:
        decider.model_kind = "random-weights"  # type: ignore[attr-defined]


def test_a_disagreement_is_answered_at_once_and_queued_for_review(desk: Desk, as_real_model) -> None:  # type: ignore[no-untyped-def]
    queued = []
    with desk.client("camera") as camera:
        for seed in range(12):
            resp = _inspect(camera, _normal_png(1000 + seed), f"q-{seed}")
            assert resp.answer in YES_NO  # the line has its answer either way
            t = resp.trace
            in_band = "review band" in t.review_reason  # a normal part may also land in the review band (5%)
            assert (t.review == "pending") is (t.evidence_disagrees or in_band)
            if t.evidence_disagrees:
                assert "disagree" in t.review_reason
                queued.append(resp.request_id)
        assert queued  # the blind model disagrees with the evidence somewhere
        listing = camera.list_reviews(LINE, state="pending")  # a line token may read its queue
    assert set(queued) <= {i.record.request_id for i in listing.items} and listing.pending >= len(queued)
    assert all(i.record.trace.review == "pending" and not i.confirmations for i in listing.items)


def test_a_line_token_cannot_confirm_and_the_message_names_the_right(desk: Desk) -> None:
    with desk.client("camera") as camera:
        _inspect(camera, _normal_png(2000), "by-camera")
        code, details = _code(lambda: camera.confirm_review(LINE, "by-camera", "good"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "review: true" in details and "camera-r" in details


def test_confirming_another_lines_inspection_is_permission_denied(desk: Desk) -> None:
    with desk.client("camera") as camera:
        _inspect(camera, _normal_png(2001), "on-line-r")
    with desk.client("other_lead") as other:
        code, details = _code(lambda: other.confirm_review(LINE, "on-line-r", "good"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and LINE in details


def test_an_unknown_inspection_is_not_found(desk: Desk) -> None:
    with desk.client("lead") as lead:
        code, details = _code(lambda: lead.confirm_review(LINE, "no-such-inspection", "good"))
    assert code == grpc.StatusCode.NOT_FOUND and "inspection_id" in details and "no-such-inspection" in details


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"verdict": ""}, "verdict"),
        ({"verdict": "defect"}, "defect_type"),
        ({"verdict": "good", "defect_type": "crack"}, "defect_type"),
        ({"verdict": "defect", "defect_type": "crack", "box": (10, 10, 5, 20)}, "box"),
        ({"verdict": "good", "note": "x" * 501}, "note"),
        ({"verdict": "good", "inspection_id": ""}, "inspection_id"),
    ],
)
def test_a_malformed_confirmation_is_invalid_argument_naming_the_field(desk: Desk, kwargs: dict, field: str) -> None:
    kwargs = {"inspection_id": "whatever", **kwargs}
    with desk.client("lead") as lead:
        code, details = _code(lambda: lead.confirm_review(LINE, kwargs.pop("inspection_id"), kwargs.pop("verdict"),
                                                          **kwargs))  # fmt: skip
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field)


def test_good_grows_the_bank_moves_the_threshold_and_twice_changes_nothing(desk: Desk) -> None:
    with desk.client("lead") as lead:
        before = next(p for p in lead.list_products(LINE).products if p.category == "screw")
        _inspect(lead, _normal_png(3000), "false-alarm")
        first = lead.confirm_review(LINE, "false-alarm", "good", note="looked fine under the lamp")
        assert first.changed and first.confirmation.by == "shift-lead" and first.confirmation.time_unix_ms > 0
        assert first.evidence_bank_images == before.evidence_bank_images + 1
        assert first.evidence_threshold != pytest.approx(before.evidence_threshold)  # the bank recalibrated
        after = next(p for p in lead.list_products(LINE).products if p.category == "screw")
        assert after.normal_images == before.normal_images + 1
        assert after.evidence_bank_images == first.evidence_bank_images
        again = lead.confirm_review(LINE, "false-alarm", "good")
        assert not again.changed and again.message.startswith("already confirmed good by shift-lead")
        assert "nothing changed" in again.message
        item = lead.list_reviews(LINE, inspection_id="false-alarm").items[0]
    assert item.state == 2 and len(item.confirmations) == 1  # the idempotent repeat is not a second record


def test_good_of_a_part_scored_far_over_the_threshold_needs_force(desk: Desk) -> None:
    foreign = encode_png(render_normal("round_part", np.random.default_rng(5), size=160))  # not a screw at all
    with desk.client("lead") as lead:
        resp = _inspect(lead, foreign, "misclick")
        e = resp.trace.evidence
        assert e.score > 2 * e.threshold, (e.score, e.threshold)
        code, details = _code(lambda: lead.confirm_review(LINE, "misclick", "good"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"over 2x the threshold {e.threshold:.4g}" in details and "pass force" in details
        assert "misclick must not teach" in details
        forced = lead.confirm_review(LINE, "misclick", "good", force=True)
    assert forced.changed and forced.confirmation.forced


def test_confirmations_and_the_queue_survive_a_restart(desk: Desk, as_real_model) -> None:  # type: ignore[no-untyped-def]
    with desk.client("lead") as lead:
        _inspect(lead, _normal_png(4000), "kept-across-restart")
        lead.confirm_review(LINE, "kept-across-restart", "good")
        before = lead.list_reviews(LINE)
    desk.server.stop()
    desk.server = _start(desk.settings)
    with desk.client("lead") as lead:
        after = lead.list_reviews(LINE)
    assert [(i.record.request_id, i.state, len(i.confirmations)) for i in after.items] == [
        (i.record.request_id, i.state, len(i.confirmations)) for i in before.items
    ]
    assert after.pending == before.pending


def test_the_cli_lists_shows_and_confirms_and_the_export_says_whose_verdict_and_the_review(desk: Desk) -> None:
    import csv
    import io

    from typer.testing import CliRunner

    from app.cli import app, problem_of

    with desk.client("lead") as lead:
        _inspect(lead, _normal_png(5000), "cli-part")
    lead_env = {"COLUMNS": "250", "ECHO_IAD_TOKEN": desk.tokens["lead"]}
    common = ["--line", LINE, "--server", desk.server.address]
    run = CliRunner(env=lead_env).invoke
    confirmed = run(app, ["review", "confirm", "cli-part", "good", *common, "--note", "checked by hand"])
    assert confirmed.exit_code == 0, confirmed.output
    assert confirmed.output.startswith("confirmed good by shift-lead") and "evidence bank" in confirmed.output
    again = run(app, ["review", "confirm", "cli-part", "good", *common])
    assert again.exit_code == 0 and "nothing changed" in again.output
    shown = run(app, ["review", "show", "cli-part", *common])
    assert (
        shown.exit_code == 0
        and "confirmed     good by shift-lead" in shown.output
        and "checked by hand" in shown.output
    )
    listed = run(app, ["review", "list", *common, "--state", "confirmed"])
    assert listed.exit_code == 0 and "cli-part" in listed.output and "good (shift-lead)" in listed.output
    camera = CliRunner(env={**lead_env, "ECHO_IAD_TOKEN": desk.tokens["camera"]}).invoke
    refused = camera(app, ["review", "confirm", "cli-part", "defect", "--type", "crack", *common])
    line = problem_of(refused.exception).line()  # what `echo-iad` prints: one line, no traceback
    assert line.startswith("PERMISSION_DENIED: token 'camera-r' lacks the right review: true") and "\n" not in line
    assert line.endswith("has `review: true` for this line") and "refused these credentials" not in line
    missing = run(app, ["review", "confirm", "cli-part", "defect", *common])
    assert problem_of(missing.exception).line().startswith("INVALID_ARGUMENT: defect_type: is required")
    exported = run(app, ["audit", "export", "--format", "csv", *common])
    assert exported.exit_code == 0
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert rows["cli-part"]["review"] == "confirmed good by shift-lead"
    assert rows["cli-part"]["verdict_source"].startswith("evidence")


def test_good_then_defect_the_later_stands_the_bank_and_library_follow_and_the_audit_keeps_both(desk: Desk) -> None:
    def bank() -> tuple[int, int]:
        p = next(p for p in lead.list_products(LINE).products if p.category == "screw")
        return p.normal_images, p.evidence_bank_images

    with desk.client("lead") as lead:
        resp = _inspect(lead, _normal_png(6000), "changed-mind")
        top = resp.trace.evidence.boxes[0]
        before = bank()
        lead.confirm_review(LINE, "changed-mind", "good")
        assert bank() == (before[0] + 1, before[1] + 1)
        defect = lead.confirm_review(LINE, "changed-mind", "defect", defect_type="crack")
        assert defect.changed and defect.defect_library_size >= 1
        assert "it was good by shift-lead" in defect.message and "left the normal memory" in defect.message
        assert bank() == before  # the image left the memory and the bank again (the existing delete path)
        box = defect.confirmation.box  # no box given: the evidence's top box
        assert (box.x0, box.y0, box.x1, box.y1) == (top.x0, top.y0, top.x1, top.y1)
        item = lead.list_reviews(LINE, inspection_id="changed-mind").items[0]
        assert [(c.verdict, c.defect_type) for c in item.confirmations] == [(1, ""), (2, "crack")]
        good_again = lead.confirm_review(LINE, "changed-mind", "good")
        assert "left the defect library" in good_again.message and bank() == (before[0] + 1, before[1] + 1)
        assert len(lead.list_reviews(LINE, inspection_id="changed-mind").items[0].confirmations) == 3


def test_the_same_defect_type_in_other_words_changes_nothing(desk: Desk) -> None:
    """ "Color defect." and "color-defect" are one type to the defect library (defect_type_key), so to idempotence."""
    with desk.client("lead") as lead:
        _inspect(lead, _normal_png(7000), "same-type")
        first = lead.confirm_review(LINE, "same-type", "defect", defect_type="Color defect.")
        assert first.changed
        for words in ("color-defect", "color_defect", " COLOR DEFECT "):
            again = lead.confirm_review(LINE, "same-type", "defect", defect_type=words)
            assert not again.changed and "nothing changed" in again.message, (words, again.message)
        other = lead.confirm_review(LINE, "same-type", "defect", defect_type="crack")
        assert other.changed
        item = lead.list_reviews(LINE, inspection_id="same-type").items[0]
    assert [c.defect_type for c in item.confirmations] == ["Color defect.", "crack"]
