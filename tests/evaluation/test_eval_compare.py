"""`echo-iad eval compare`: per-cell differences on the shared questions with McNemar's paired test."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalkit import records_for
from typer.testing import CliRunner

from services.evaluation.answers import AnswerLog
from services.evaluation.compare import POOLED, compare_records
from services.evaluation.stats import mcnemar
from services.mmad.loader import MMADDataset
from services.mmad.types import ANOMALY_DETECTION, OBJECT_CLASSIFICATION


def _other(q) -> str:  # type: ignore[no-untyped-def]
    return next(k for k in q.options if k != q.answer)


def test_compare_counts_discordant_pairs_per_cell(small_dataset: MMADDataset) -> None:
    # A: right on everything but Object Classification; B: right on everything but Anomaly Detection
    a = records_for(small_dataset, lambda s, q: _other(q) if q.type == OBJECT_CLASSIFICATION else q.answer)
    b = records_for(small_dataset, lambda s, q: _other(q) if q.type == ANOMALY_DETECTION else q.answer)
    cmp = compare_records(a, b[:-3])  # B has not answered its last three questions yet
    t = cmp.table
    assert cmp.shared == 37 and cmp.only_a == 3 and cmp.only_b == 0
    rows = {r[1]: r for r in t.rows}
    ad = rows[ANOMALY_DETECTION]
    assert ad[2] == 8 and ad[3] == 100.0 and ad[4] == 0.0 and ad[5] == -100.0
    assert (ad[6], ad[7]) == (8, 0) and ad[8] == pytest.approx(mcnemar(8, 0).p_value) and ad[10] == "*"
    oc = rows[OBJECT_CLASSIFICATION]
    assert (oc[6], oc[7]) == (0, oc[2]) and oc[5] == 100.0
    pooled = rows[POOLED]
    assert pooled[2] == 37 and (pooled[6], pooled[7]) == (8, oc[2])
    assert pooled[8] == pytest.approx(mcnemar(8, oc[2]).p_value)


def test_identical_runs_show_no_difference(small_dataset: MMADDataset) -> None:
    a = records_for(small_dataset, lambda s, q: q.answer if s.is_normal else _other(q))
    t = compare_records(a, a).table
    assert all(r[5] == 0.0 and r[8] == 1.0 and r[10] == "" for r in t.rows)


def test_compare_cli_reads_two_run_folders(small_dataset: MMADDataset, tmp_path: Path) -> None:
    from app.cli import app

    for name, rule in (("a", lambda s, q: q.answer), ("b", lambda s, q: _other(q))):
        with AnswerLog.open(tmp_path / name) as log:
            for r in records_for(small_dataset, rule):
                log.append(r)
    out = tmp_path / "cmp.csv"
    res = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "McNemar" in res.output and "Anomaly Detection" in res.output
    assert out.read_text(encoding="utf-8").splitlines()[0].startswith("Dataset,Type,n,A %,B %")
    res = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "missing")])
    assert res.exit_code != 0
