"""Compare two runs on the same questions: per-cell accuracy difference with McNemar's paired test.

Runs are joined on question id; only questions both runs answered count, so a
half-finished run is compared fairly on what it has. Accuracies per (dataset,
type) come from services.mmad.scoring on that shared subset (Anomaly Detection
balanced); the test is McNemar on per-question correctness (exact binomial on
few discordant pairs, chi-square with continuity correction otherwise).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.evaluation.report import Table, dedupe, graded
from services.evaluation.stats import mcnemar
from services.mmad.scoring import score
from services.mmad.types import QUESTION_TYPES

POOLED = "All (pooled)"
ALPHA = 0.05


@dataclass
class Comparison:
    table: Table
    shared: int
    only_a: int
    only_b: int


def compare_records(
    records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]], *, name_a: str = "A", name_b: str = "B"
) -> Comparison:
    """Per (dataset, type): n, accuracy of each run, B - A, the discordant counts and McNemar's p-value."""
    a = {r["id"]: r for r in dedupe(records_a)}
    b = {r["id"]: r for r in dedupe(records_b)}
    shared = [i for i in a if i in b]
    ga = graded(a[i] for i in shared)
    gb = graded(b[i] for i in shared)
    sa, sb = score(ga), score(gb)
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # n, b (A only right), c (B only)
    for x, y in zip(ga, gb, strict=True):
        for key in ((x.dataset, x.type), (x.dataset, POOLED)):
            cell = cells[key]
            cell[0] += 1
            cell[1] += x.correct and not y.correct
            cell[2] += y.correct and not x.correct
    pooled_acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for x, y in zip(ga, gb, strict=True):
        pooled_acc[x.dataset][0] += x.correct
        pooled_acc[x.dataset][1] += y.correct
    cols = ["Dataset", "Type", "n", "A %", "B %", "Δ (B−A)", "A✓ B✗", "A✗ B✓", "p-value", "test", "sig"]
    rows: list[list[Any]] = []
    for ds in sa.counts:
        types = [t for t in QUESTION_TYPES if t in sa.counts[ds]] + sorted(set(sa.counts[ds]) - set(QUESTION_TYPES))
        for t in [*types, POOLED]:
            n, bb, cc = cells[(ds, t)]
            if t == POOLED:
                acc_a = 100.0 * pooled_acc[ds][0] / n if n else None
                acc_b = 100.0 * pooled_acc[ds][1] / n if n else None
            else:
                acc_a, acc_b = sa.wrong.accuracy[ds].get(t), sb.wrong.accuracy[ds].get(t)
            diff = acc_b - acc_a if acc_a is not None and acc_b is not None else None
            test = mcnemar(bb, cc)
            sig = "*" if test.p_value < ALPHA else ""
            rows.append([ds, t, n, acc_a, acc_b, diff, bb, cc, test.p_value, test.method, sig])
    note = (
        f"{len(shared)} questions answered by both runs ({len(a) - len(shared)} only by {name_a}, "
        f"{len(b) - len(shared)} only by {name_b}). Anomaly Detection is balanced accuracy; pooled rows are plain "
        f"accuracy over all the dataset's questions. McNemar on per-question correctness; * p < {ALPHA}."
    )
    table = Table(f"Compare A = {name_a} vs B = {name_b}", cols, rows, note, label_columns=2)
    return Comparison(table, len(shared), len(a) - len(shared), len(b) - len(shared))


def compare_runs(run_a: str | Path, run_b: str | Path) -> Comparison:
    from services.evaluation.runner import load_run

    ra, _ = load_run(run_a)
    rb, _ = load_run(run_b)
    if not ra or not rb:
        empty = run_a if not ra else run_b
        raise FileNotFoundError(f"{empty}: no answers.jsonl records to compare")
    return compare_records(ra, rb, name_a=str(run_a), name_b=str(run_b))
