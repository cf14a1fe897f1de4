"""The harness checked by baseline answerers: random lands on the Random Chance row, the oracle scores 100%."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from statistics import fmean

import pytest
from evalkit import write_config
from typer.testing import CliRunner

from services.evaluation.cells import AXES
from services.evaluation.report import build_report, report_run
from services.evaluation.runner import RunOptions, evaluate, load_run
from services.evaluation.stats import balanced_chance_interval, chance_interval
from services.mmad.loader import load_dataset
from services.mmad.types import ANOMALY_DETECTION, QUESTION_TYPES

pytestmark = pytest.mark.slow  # full eval runs of every baseline

# MMAD's "Random Chance" row (accuracy %): balanced AD is 50 whatever the option count; the other types have
# four options in MMAD and in our synthetic data.
RANDOM_CHANCE = dict.fromkeys(QUESTION_TYPES, 25.0) | {ANOMALY_DETECTION: 50.0}
CONFIDENCE = 0.999  # per type; seven types are checked, so a fair guesser fails this about 0.7% of the time


def test_random_answerer_lands_on_the_random_chance_row(
    random_server,
    chance_data: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    dataset = load_dataset(chance_data)
    dm_only = next(c for c in AXES["experts"][1] if c.name == "wo_all")  # the check is about scoring, not experts
    (result,) = asyncio.run(
        evaluate(dataset, [(dm_only, tmp_path / "run")], RunOptions(concurrency=8), address=random_server.address)
    )
    assert result.complete and result.errors == 0
    records, meta = load_run(tmp_path / "run")
    assert len(records) == sum(len(s.questions) for s in dataset.samples)
    assert meta["models"]["decision"] == ["random(seed=7)"]
    rep = build_report(records, meta)
    for t in QUESTION_TYPES:
        rows = [r for r in records if r["type"] == t]
        if t == ANOMALY_DETECTION:
            expected = 0.5
            lo, hi = balanced_chance_interval(
                [1 / r["n_options"] for r in rows if r["is_normal"]],
                [1 / r["n_options"] for r in rows if not r["is_normal"]],
                CONFIDENCE,
            )
        else:
            expected = fmean(1 / r["n_options"] for r in rows)
            lo, hi = chance_interval([1 / r["n_options"] for r in rows], CONFIDENCE)
        assert 100 * expected == RANDOM_CHANCE[t]
        acc = rep.full.wrong.accuracy["Synthetic"][t]
        assert acc is not None and 100 * lo <= acc <= 100 * hi, (t, acc, lo, hi, len(rows))
    assert rep.full.unparseable == 0


def test_oracle_scores_100_percent_through_the_embedded_cli(small_data: Path, tmp_path: Path) -> None:
    from app.cli import app

    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "state", backend="oracle")  # oracle_data defaults to --data
    run = tmp_path / "run"
    args = ["eval", "--data", str(small_data), "--embedded", "-c", str(cfg), "--out", str(run), "-j", "4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    for title in ("Table 1", "MMAD: accuracy (%) for all seven question types", "Per category", "Latency"):
        assert title in res.output
    rep = report_run(run, write=False)
    assert len(rep.records) == 40
    for name in ("table1", "mmad"):
        t = rep.tables[name]
        for row in t.rows:
            accs = row[1 : t.columns.index("Average") + 1]
            assert accs == [100.0] * len(accs), (name, row)
    mm = rep.tables["mmad"].row("Synthetic")
    assert mm[-3:] == [0.0, 0.0, 0] and len(mm) == 12  # no overkill, no miss, nothing unparseable
    assert {p.name for p in run.iterdir()} >= {"answers.jsonl", "run.json", "report.md", "report.csv", "chart.png"}
    # every answer used the full expert path of the embedded server
    experts = {tuple(r["trace"]["experts_used"]) for r in rep.records}
    assert ("reference", "decision") in experts


def test_eval_runs_the_paper_protocol_with_mmads_own_knowledge(small_data: Path, tmp_path: Path) -> None:
    """`eval --knowledge mmad`: MMAD's domain_knowledge.json from --data, imported, serves DK; the embedded server
    runs the paper's protocol (MMAD's prompt and pixel budget) unless told otherwise."""
    from app.cli import app
    from services.knowledge.entries import load_dir

    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "state", backend="oracle")
    run = tmp_path / "run"
    args = ["eval", "--data", str(small_data), "-c", str(cfg), "--out", str(run), "-j", "4", "--limit", "12"]
    res = CliRunner().invoke(app, [*args, "--knowledge", "mmad", "--knowledge-mode", "dk"])
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "run.json").read_text())
    assert meta["protocol"] == "paper" and meta["knowledge_source"] == "mmad"
    decision = meta["settings"]["decision"]
    assert (decision["prompt_style"], decision["max_pixels"], decision["min_pixels"]) == ("mmad", 1280 * 784, 64 * 784)
    kb = Path(meta["settings"]["knowledge"]["dir"])
    assert kb.parent.name == "knowledge-mmad" and sorted(load_dir(kb)) == ["Synthetic/round_part", "Synthetic/screw"]
    mmad = json.loads((small_data / "domain_knowledge.json").read_text())
    assert load_dir(kb)["Synthetic/screw"].normal in mmad["Synthetic"]["screw"]["good"]  # MMAD's own text
    records = [json.loads(x) for x in (run / "answers.jsonl").read_text().splitlines()]
    used = [r for r in records if "knowledge" in r["trace"]["experts_used"]]
    assert used and all(r["trace"]["knowledge_mode"] == "DOMAIN_KNOWLEDGE" for r in used)
    bad = CliRunner().invoke(app, [*args, "--server", "127.0.0.1:1", "--knowledge", "mmad"])
    assert bad.exit_code == 2 and "--knowledge configures the embedded server" in bad.output
