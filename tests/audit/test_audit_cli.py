"""`echo-iad audit list | show | export | replay` against a real embedded server; replay after a model change."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.background import BackgroundServer
from app.cli import app
from services.audit.record import CSV_COLUMNS, from_json
from services.client import InspectorClient

LINE = "line-h"
TYPES = ("Anomaly Detection", "Defect Localization")
runner = CliRunner(env={"COLUMNS": "250"})  # rich tables keep ids on one line


@dataclass
class History:
    dataset: object
    data_dir: Path
    answers: dict[str, tuple[str, str]]  # request id -> (recorded answer, correct answer)
    middle_ms: int  # between the first and the second half of the inspections


def _settings(data_dir: Path, model_cache: Path, **decision):  # type: ignore[no-untyped-def]
    from services.config import load_settings

    return load_settings(
        data_dir=str(data_dir), server={"port": 0}, decision={"model_cache": str(model_cache), **decision}
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> History:
    """Inspections answered by yesterday's model (the seeded random answerer), then that server stopped."""
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = synthesize(tmp_path_factory.mktemp("synth") / "d", seed=11, categories=["screw"], per_category=6,
                      templates_per_category=3, progress=False)  # fmt: skip
    dataset = load_dataset(root)
    data_dir = tmp_path_factory.mktemp("state")
    answers: dict[str, tuple[str, str]] = {}
    questions = [(s, q) for s, q in dataset.questions() if q.type in TYPES]
    settings = _settings(data_dir, offline_model_cache, backend="random", seed=7)
    with BackgroundServer(settings) as srv, InspectorClient(srv.address, retries=0) as client:
        templates = [dataset.abspath(r) for d, c, r in dataset.templates()]
        client.add_normal_images(LINE, "screw", templates, dataset="Synthetic")
        middle_ms = 0
        for i, (sample, q) in enumerate(questions):
            if i == len(questions) // 2:
                time.sleep(0.01)
                middle_ms = int(time.time() * 1000)
                time.sleep(0.01)
            resp = client.inspect(dataset.abspath(sample.image_path), q.text, q.options, line_id=LINE,
                                  category="screw", dataset="Synthetic", request_id=f"h{i:02d}")  # fmt: skip
            answers[resp.request_id] = (resp.answer, q.answer)
    return History(dataset, data_dir, answers, middle_ms)


@pytest.fixture(scope="module")
def today(history: History, offline_model_cache: Path) -> Iterator[BackgroundServer]:
    """Today's server on the same data_dir, with another model: the oracle, which answers every question right."""
    settings = _settings(history.data_dir, offline_model_cache, backend="oracle", oracle_data=str(history.dataset.root))  # type: ignore[attr-defined]
    with BackgroundServer(settings) as srv:
        yield srv


def _audit(srv: BackgroundServer, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["audit", *args, "--line", LINE, "--server", srv.address])


def test_replay_after_a_model_change_shows_what_changed(history: History, today: BackgroundServer) -> None:
    wrong_before = {rid for rid, (old, right) in history.answers.items() if old != right}
    assert wrong_before and len(wrong_before) < len(history.answers)  # the random answerer got some right
    for rid, (old, right) in history.answers.items():
        result = _audit(today, "replay", rid, "--json")
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        changes = {c["field"]: (c["recorded"], c["today"]) for c in out["changes"]}
        assert changes["decision model"][0] == "random(seed=7)" and changes["decision model"][1].startswith("oracle(")
        assert ("answer" in changes) == (rid in wrong_before)
        if rid in wrong_before:
            assert changes["answer"][0].startswith(f"{old}.") and changes["answer"][1].startswith(f"{right}.")
        assert out["replay_id"].startswith("replay-") and out["replay_id"].endswith(rid)


def test_replay_prints_a_table_and_check_fails_only_when_the_answer_changed(
    history: History, today: BackgroundServer
) -> None:
    changed = next(rid for rid, (old, right) in history.answers.items() if old != right)
    same = next(rid for rid, (old, right) in history.answers.items() if old == right)
    result = _audit(today, "replay", changed)
    assert result.exit_code == 0
    assert "what changed" in result.output and "random(seed=7)" in result.output and "oracle(" in result.output
    assert _audit(today, "replay", changed, "--check").exit_code == 1
    assert _audit(today, "replay", same, "--check").exit_code == 0


def test_replaying_todays_own_answer_shows_no_change(today: BackgroundServer) -> None:
    first = json.loads(_audit(today, "replay", "h00", "--json").output)["replay_id"]
    result = _audit(today, "replay", first)
    assert result.exit_code == 0 and "no change" in result.output


def test_list_shows_the_newest_first_and_filters(history: History, today: BackgroundServer) -> None:
    result = _audit(today, "list", "--limit", "500", "--until", "2100-01-01")
    assert result.exit_code == 0, result.output
    recorded = sorted(history.answers)
    positions = [result.output.index(rid) for rid in recorded[-3:]]
    assert positions == sorted(positions, reverse=True)  # h.. ids ascend in time: newest printed first
    with InspectorClient(today.address) as client:
        defects = {r.request_id for r in client.iter_inspections(LINE, verdict="defect")} & set(history.answers)
        goods = {r.request_id for r in client.iter_inspections(LINE, verdict="good")} & set(history.answers)
    assert defects and goods
    out = _audit(today, "list", "--verdict", "defect", "--limit", "500").output
    assert all(rid in out for rid in defects) and not any(f" {rid} " in out for rid in goods)
    assert _audit(today, "list", "--category", "bottle").output.count("line-h") == 1  # only the summary line


def test_show_prints_the_question_answer_and_what_it_was_based_on(today: BackgroundServer) -> None:
    with InspectorClient(today.address) as client:
        record = next(r for r in client.iter_inspections(LINE) if r.trace.references and r.request_id.startswith("h"))
    out = _audit(today, "show", record.request_id).output
    for text in (record.request.question.text, record.image_sha256, record.trace.references[0].uri, "latency"):
        assert text in out
    as_json = _audit(today, "show", record.request_id, "--json").output
    assert from_json(as_json) == record


def test_export_writes_every_field_as_jsonl_or_a_flat_csv_from_a_time_on(
    history: History, today: BackgroundServer, tmp_path: Path
) -> None:
    since = (
        time.strftime("%Y-%m-%dT%H:%M:%S.", time.localtime(history.middle_ms / 1000))
        + f"{history.middle_ms % 1000:03d}"
    )
    out = tmp_path / "audit.jsonl"
    result = _audit(today, "export", "--since", since, "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [from_json(line) for line in out.read_text().splitlines()]
    second_half = sorted(history.answers)[len(history.answers) // 2 :]
    assert [r.request_id for r in records][: len(second_half)] == second_half  # oldest first, from --since on
    result = _audit(today, "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["request_id"] for r in rows][: len(history.answers)] == sorted(history.answers)
    assert all(r["models"].startswith("decision=") for r in rows)


@pytest.mark.parametrize(("args", "hint"), [(["--since", "yesterday"], "--since"), (["--verdict", "bad"], "--verdict")])
def test_bad_filters_are_refused_naming_the_option(today: BackgroundServer, args: list[str], hint: str) -> None:
    result = _audit(today, "list", *args)
    assert result.exit_code == 2 and hint in result.output
