"""The ablation grid: the paper's rows per axis, default-equal rows sharing one cell, and the request settings."""

from __future__ import annotations

import pytest

from echo.v1 import common_pb2
from services.evaluation.cells import AXES, FULL, Cell, grid_cells, parse_experts
from services.evaluation.runner import RunOptions, build_request
from services.mmad.loader import MMADDataset


def test_full_grid_runs_each_distinct_setting_once_under_the_papers_names() -> None:
    cells, rows = grid_cells(list(AXES))
    names = [c.name for c in cells]
    assert len(names) == len(set(names)) == 15
    paper = ["Table 1", "Table 2", "Table 3", "Table 4", "Fig. 5", "Fig. 6"]
    assert [AXES[a][0].split(":")[0] for a in AXES] == [*paper, "Visual evidence expert (VE)"]
    assert [label for label, _ in rows["baseline"]] == ["Baseline (MMAD 1-shot)", "Echo"]
    assert [label for label, _ in rows["knowledge"]] == ["DK", "CSK"]
    assert [label for label, _ in rows["experts"]] == ["w/o REr", "w/o KG", "w/o REx", "w/o all", "Echo"]
    assert [label for label, _ in rows["references"]] == ["0-shot", "1-shot", "1-shot*"]
    assert [label for label, _ in rows["format"]] == ["Multiple choice", "Open QA", "True/false"]
    assert [label for label, _ in rows["shots"]] == ["1-shot*", "2-shot", "3-shot"]
    assert rows["evidence"] == [("w/o VE", "evidence_off"), ("with VE", "evidence_on")]
    # Echo, multiple choice, CSK and 1-shot* are the same requests: one run, named "full"
    fulls = {rows["baseline"][1][1], rows["experts"][-1][1], rows["format"][0][1], rows["knowledge"][-1][1]}
    assert fulls | {rows["references"][2][1], rows["shots"][0][1]} == {"full"}
    with pytest.raises(ValueError, match="unknown ablation axes"):
        grid_cells(["nope"])


def test_baseline_and_1_shot_send_mmads_random_template(small_dataset: MMADDataset) -> None:
    """MMAD's 1-shot protocol: the dataset's random_templates[0] travels with the request as its reference."""
    sample, q = next(iter(small_dataset.questions()))
    baseline = dict(AXES["baseline"][1][0].experts)
    assert baseline == {"reference": True, "knowledge": False, "reasoning": False, "evidence": False}
    for cell in (AXES["baseline"][1][0], dict((c.label, c) for c in AXES["references"][1])["1-shot"]):
        assert cell.sends_template
        template = small_dataset.abspath(sample.random_templates[0]).read_bytes()
        req = build_request(sample, q, b"png", cell, RunOptions(), [template])
        assert [r.data for r in req.references] == [template]
        assert req.settings.reference_mode == common_pb2.ONE_SHOT_RANDOM
    assert not build_request(sample, q, b"png", FULL, RunOptions()).references


def test_cells_become_request_settings(small_dataset: MMADDataset) -> None:
    sample, q = next(iter(small_dataset.questions()))
    opts = RunOptions(line_id="l1", seed=5)
    wo_all = dict((c.label, c) for c in AXES["experts"][1])["w/o all"]
    req = build_request(sample, q, b"png", wo_all, opts)
    s = req.settings
    assert s.experts.HasField("reference") and not s.experts.reference and not s.experts.knowledge
    assert not s.experts.reasoning and s.seed == 5 and req.line_id == "l1"
    assert s.experts.HasField("evidence") and not s.experts.evidence  # w/o all: under the product's map too
    assert req.question.type == common_pb2.ANOMALY_DETECTION and req.category == sample.category
    three = dict((c.label, c) for c in AXES["shots"][1])["3-shot"]
    s = build_request(sample, q, b"png", three, opts).settings
    assert s.reference_mode == common_pb2.K_SHOT and s.k_shots == 3
    assert not s.experts.HasField("reference")  # the planner still decides which types use references
    tf = build_request(sample, q, b"png", Cell("t", answer_format="tf", knowledge_mode="dk"), opts).settings
    assert tf.answer_format == common_pb2.TRUE_FALSE and tf.knowledge_mode == common_pb2.DOMAIN_KNOWLEDGE
    planned = build_request(sample, q, b"png", FULL, RunOptions(plan_types=True))
    assert planned.question.type == common_pb2.QUESTION_TYPE_UNSPECIFIED


def test_the_evidence_axis_switches_the_evidence_expert_off_and_on(small_dataset: MMADDataset) -> None:
    sample, q = next(iter(small_dataset.questions()))
    off, on = AXES["evidence"][1]
    for cell, want in ((off, False), (on, True)):
        experts = build_request(sample, q, b"png", cell, RunOptions()).settings.experts
        assert experts.HasField("evidence") and experts.evidence is want
        assert not experts.HasField("reference")  # only the evidence switch is forced
    assert not build_request(sample, q, b"png", FULL, RunOptions()).settings.experts.HasField("evidence")
    assert (off.slug(), on.slug()) == ("no-evidence", "with-evidence")
    assert parse_experts("evidence=on") == (("evidence", True),)


def test_cell_round_trips_and_validates() -> None:
    c = Cell("x", experts=parse_experts("reference=off, knowledge=on"), reference_mode="k-shot", k_shots=2)
    assert Cell.from_dict(c.to_dict()) == c
    assert c.experts == (("knowledge", True), ("reference", False))
    with pytest.raises(ValueError):
        parse_experts("vision=off")
    with pytest.raises(ValueError):
        Cell("y", answer_format="essay")


def test_slugs_name_what_differs_from_the_default() -> None:
    assert FULL.slug() == "full" == Cell(answer_format="mc", knowledge_mode="csk", reference_mode="1-shot*").slug()
    assert Cell(reference_mode="k-shot", k_shots=3, answer_format="tf").slug() == "3-shot_format-tf"
    assert Cell(experts=parse_experts("reference=off")).slug() == "no-reference"
