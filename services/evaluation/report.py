"""Reports of a run, from its answers.jsonl, in the Echo paper's and MMAD's layouts.

Scoring is services.mmad.scoring's (letters, balanced AD, macro averages, both
unparseable policies); this module only lays the numbers out. Two figures are
computed here from scoring's tallies, because scoring defines them differently:

- overkill rate = normal images answered "defect" / normal images, and
  miss rate = anomalous images answered "no defect" / anomalous images, both on
  Anomaly Detection questions. An unparseable answer is neither (scoring's
  `overkill_rate` is 100 - normal accuracy, which counts it as overkill).
- 95% Wilson intervals for plain (non-balanced) accuracies.

Files written to the run folder: report.md, report.csv (per dataset and type),
per_category.csv, latency.csv, summary.json and chart.png; evidence.csv when the
visual evidence expert ran (services/evaluation/evidence_report.py: image AUROC,
pixel AUROC and AUPRO per category).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.percentiles import percentile
from services.common.protocol import PAPER_TABLE_DATASETS
from services.evaluation.evidence_report import PIXEL_MAX_SIDE, EvidenceReport, evidence_line, evidence_report, pct
from services.evaluation.stats import wilson_interval
from services.mmad.scoring import Count, Graded, ScoreReport, score
from services.mmad.types import (
    ANOMALY_DETECTION,
    DEFECT_ANALYSIS,
    DEFECT_CLASSIFICATION,
    DEFECT_DESCRIPTION,
    DEFECT_LOCALIZATION,
    QUESTION_TYPES,
)

PAPER_TYPES: tuple[str, ...] = (
    ANOMALY_DETECTION,
    DEFECT_CLASSIFICATION,
    DEFECT_LOCALIZATION,
    DEFECT_DESCRIPTION,
    DEFECT_ANALYSIS,
)
"""The five types of the Echo paper's tables (it drops MMAD's two Object types)."""

PAPER_HEADERS: dict[str, str] = {
    ANOMALY_DETECTION: "Discrimination",
    DEFECT_CLASSIFICATION: "Classification",
    DEFECT_LOCALIZATION: "Localization",
    DEFECT_DESCRIPTION: "Description",
    DEFECT_ANALYSIS: "Analysis",
}
AVERAGE = "Average"
Value = float | int | str | None


def fmt(value: Value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Table:
    """A titled grid of values, rendered to rich, Markdown or CSV the same way."""

    title: str
    columns: list[str]
    rows: list[list[Value]]
    note: str = ""
    label_columns: int = 1  # leading columns that hold names (left-aligned), the rest are figures

    def column(self, name: str) -> list[Value]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def row(self, first: str) -> list[Value]:
        for r in self.rows:
            if r[0] == first:
                return r
        raise KeyError(first)

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append(
            "| " + " | ".join("---" if i < self.label_columns else "---:" for i in range(len(self.columns))) + " |"
        )
        lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Any:
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, caption=self.note or None, title_justify="left")
        for i, c in enumerate(self.columns):
            t.add_column(c, justify="left" if i < self.label_columns else "right")
        for r in self.rows:
            t.add_row(*(fmt(v) for v in r))
        return t

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in self.rows:
                w.writerow(["" if v is None else (round(v, 4) if isinstance(v, float) else v) for v in r])


def dedupe(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per question id (the first), so a hand-concatenated file cannot count twice."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out


def graded(records: Iterable[dict[str, Any]]) -> list[Graded]:
    return [
        Graded(
            dataset=r["dataset"],
            category=r["category"],
            type=r["type"],
            gold=r["gold"],
            predicted=r.get("answer") or "",
            is_normal=bool(r["is_normal"]),
            question_id=r["id"],
        )
        for r in records
    ]


def ad_rates(c: Count | None) -> tuple[float | None, float | None]:
    """(overkill %, miss %) from an Anomaly Detection tally: parsed wrong answers over all images of the class."""
    if c is None:
        return None, None
    n_anom = c.n - c.n_normal
    wrong_normal = c.n_normal - c.correct_normal - c.unparseable_normal
    wrong_anom = n_anom - (c.correct - c.correct_normal) - (c.unparseable - c.unparseable_normal)
    overkill = 100.0 * wrong_normal / c.n_normal if c.n_normal else None
    miss = 100.0 * wrong_anom / n_anom if n_anom else None
    return overkill, miss


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _types_present(report: ScoreReport) -> list[str]:
    present = {t for per in report.counts.values() for t in per}
    return [t for t in QUESTION_TYPES if t in present] + sorted(present - set(QUESTION_TYPES))


# MMAD's paths say DS-MVTec (Defect Spectrum's re-annotated MVTec-AD); the paper says MVTec-AD.
_DATASET_ALIASES = {"mvtec": "ds-mvtec", "mvtec-ad": "ds-mvtec", "mvtec_ad": "ds-mvtec"}


def _dataset_key(name: str) -> str:
    return _DATASET_ALIASES.get(name.strip().lower(), name.strip().lower())


def table1_datasets(present: Iterable[str], wanted: Sequence[str] | None = None) -> tuple[list[str], str]:
    """The datasets Table 1 averages, and a line saying which and why.

    Default: the paper's (MVTec-AD and VisA); when none of them was answered, every dataset (say the synthetic
    one). `wanted` names them (MVTec-AD, DS-MVTec and MVTec are one), or is ["all"].
    """
    present = list(dict.fromkeys(present))
    if wanted and [w.strip().lower() for w in wanted] == ["all"]:
        return present, "Table 1 averages every dataset answered (--datasets all)."
    names = list(wanted or PAPER_TABLE_DATASETS)
    chosen = [p for w in names for p in present if _dataset_key(p) == _dataset_key(w)]
    chosen = list(dict.fromkeys(chosen))
    if wanted:
        missing = [w for w in names if not any(_dataset_key(p) == _dataset_key(w) for p in present)]
        note = f"Table 1 averages {', '.join(chosen) or 'nothing'} (--datasets)"
        return chosen, note + (f"; not answered: {', '.join(missing)}." if missing else ".")
    if chosen:
        return chosen, f"Table 1 averages the paper's datasets: {', '.join(chosen)} (--datasets to change)."
    return present, "Table 1: the paper's datasets (MVTec-AD, VisA) were not answered; it averages every dataset."


def paper_table(
    report: ScoreReport, title: str = "Table 1: accuracy (%) per dataset, the Echo paper's layout"
) -> Table:
    """Rows: datasets then Average; columns: the paper's five types then their Average (unparseable = wrong).

    `report` must be scored with types=PAPER_TYPES, so its averages are over these five types.
    """
    ps = report.wrong
    cols = ["Dataset", *(PAPER_HEADERS[t] for t in PAPER_TYPES), AVERAGE]
    rows: list[list[Value]] = []
    for ds in ps.accuracy:
        rows.append([ds, *(ps.accuracy[ds].get(t) for t in PAPER_TYPES), ps.dataset_average[ds]])
    rows.append([AVERAGE, *(ps.type_average.get(t) for t in PAPER_TYPES), ps.headline])
    note = (
        "Discrimination is Anomaly Detection as balanced accuracy. Unparseable answers count as wrong; "
        f"dropping them instead (MMAD's scripts) gives an average of {fmt(report.dropped.headline)}."
    )
    return Table(title, cols, rows, note)


def mmad_table(report: ScoreReport) -> Table:
    """MMAD's seven types per dataset with AD as balanced accuracy, plus AD's overkill and miss rates."""
    ps = report.wrong
    types = _types_present(report)
    cols = ["Dataset", *types, AVERAGE, "AD overkill %", "AD miss %", "Unparseable"]
    rows: list[list[Value]] = []
    for ds, per in report.counts.items():
        overkill, miss = ad_rates(per.get(ANOMALY_DETECTION))
        unparsed = sum(c.unparseable for c in per.values())
        rows.append([ds, *(ps.accuracy[ds].get(t) for t in types), ps.dataset_average[ds], overkill, miss, unparsed])
    avg: list[Value] = [AVERAGE, *(ps.type_average.get(t) for t in types), ps.headline]
    avg += [_mean(r[-3] for r in rows), _mean(r[-2] for r in rows), sum(int(r[-1] or 0) for r in rows)]  # type: ignore[misc]
    rows.append(avg)
    note = (
        "Anomaly Detection is balanced accuracy. Overkill: normal images answered 'defect'; miss: anomalous images "
        f"answered 'no defect'. Average over {', '.join(report.averaged_types) or 'no types'}. "
        f"Dropping unparseable answers gives {fmt(report.dropped.headline)}."
    )
    return Table("MMAD: accuracy (%) for all seven question types", cols, rows, note)


def category_table(report: ScoreReport) -> Table:
    """One row per (dataset, category): each type's accuracy, the average, AD overkill and miss, questions."""
    ps = report.wrong
    types = _types_present(report)
    cols = ["Dataset", "Category", *types, AVERAGE, "AD overkill %", "AD miss %", "Questions"]
    rows: list[list[Value]] = []
    for ds, cats in report.category_counts.items():
        for cat, per in cats.items():
            overkill, miss = ad_rates(per.get(ANOMALY_DETECTION))
            rows.append(
                [
                    ds,
                    cat,
                    *(ps.per_category[ds][cat].get(t) for t in types),
                    ps.per_category_average[ds][cat],
                    overkill,
                    miss,
                    sum(c.n for c in per.values()),
                ]
            )
    return Table("Per category: accuracy (%)", cols, rows, label_columns=2)


def counts_table(report: ScoreReport) -> Table:
    types = _types_present(report)
    rows: list[list[Value]] = []
    for ds, per in report.counts.items():
        rows.append([ds, *(per[t].n if t in per else 0 for t in types), sum(c.n for c in per.values())])
    return Table("Questions answered per type", ["Dataset", *types, "Total"], rows)


def stage_latencies(records: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """stage -> wall ms per request, from the traces (end_to_end is what the client measured)."""
    by_stage: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_stage["end_to_end"].append(float(r.get("latency_ms", 0.0)))
        for t in (r.get("trace") or {}).get("timings") or []:
            by_stage[t.get("stage", "?")].append(float(t.get("ms", 0.0)))
    return dict(by_stage)


def throughput(records: Sequence[dict[str, Any]]) -> tuple[float | None, float]:
    """(answers per second, busy seconds): per session, its answers over first start to last answer."""
    sessions: dict[float, list[float]] = defaultdict(list)
    for r in records:
        if "session" in r and "ts" in r:
            sessions[float(r["session"])].append(float(r["ts"]))
    busy = sum(max(ts) - s for s, ts in sessions.items() if ts)
    n = sum(len(ts) for ts in sessions.values())
    return (n / busy if busy > 0 else None), busy


def latency_table(records: Sequence[dict[str, Any]]) -> Table:
    stages = stage_latencies(records)
    order = ["end_to_end", "total", "plan", "embedding", "retrieval", "knowledge", "decision", "decision.preprocess"]
    names = [s for s in order if s in stages] + sorted(set(stages) - set(order))
    rows: list[list[Value]] = []
    for s in names:
        v = stages[s]
        rows.append([s, len(v), percentile(v, 50), percentile(v, 90), percentile(v, 99), max(v) if v else None])
    qps, busy = throughput(records)
    note = (
        f"Throughput {fmt(qps)} answers/s over {busy:.1f} s of running. end_to_end is measured by the harness, "
        "the other rows come from each answer's trace (total is the gateway's own wall time)."
    )
    return Table("Latency (ms) and throughput", ["Stage", "n", "p50", "p90", "p99", "max"], rows, note)


def evidence_table(rep: EvidenceReport) -> Table:
    """The report's table: one row per category and the unweighted mean, figures in %."""
    cols = ["Dataset", "Category", "Images", "Anomalous", "Image AUROC", "Verdict bal. acc.", "False alarms"]
    cols += ["Heat maps", "Pixel AUROC", "AUPRO"]
    rows: list[list[Value]] = []
    for f in [*rep.categories, *([rep.mean] if rep.mean else [])]:
        rows.append(
            [
                f.dataset,
                f.category,
                f.images,
                f.anomalous,
                pct(f.image_auroc),
                pct(f.balanced_accuracy),
                pct(f.false_alarm),
                f.heatmaps,
                pct(f.pixel_auroc),
                pct(f.aupro),
            ]
        )
    note = (
        "Visual evidence expert (%). Image AUROC: trace.evidence.score of each image's Anomaly Detection answer "
        "against the ground truth; verdict and false alarms (normal images judged anomalous) at each product's "
        f"calibrated threshold. Pixel AUROC and AUPRO (FPR up to 0.3): the heat maps kept in heatmaps/ against "
        f"the dataset's masks, at the query's size up to {PIXEL_MAX_SIDE} px; – where a category has no masks "
        "or no heat maps. Backbone: " + (", ".join(rep.backbones) or "?") + "."
    )
    return Table("Visual evidence: image AUROC, pixel AUROC and AUPRO per category", cols, rows, note, 2)


@dataclass
class RunReport:
    """Everything a run's report shows; `tables` in display order."""

    records: list[dict[str, Any]]
    meta: dict[str, Any]
    paper: ScoreReport
    full: ScoreReport
    tables: dict[str, Table] = field(default_factory=dict)
    evidence: EvidenceReport = field(default_factory=EvidenceReport)

    def headline(self) -> float | None:
        return self.paper.wrong.headline

    def summary(self) -> dict[str, Any]:
        qps, busy = throughput(self.records)
        lat = [float(r.get("latency_ms", 0.0)) for r in self.records]
        return {
            "run": self.meta.get("cell", {}).get("name"),
            "dataset_path": self.meta.get("dataset_path"),
            "questions": self.meta.get("questions"),
            "answered": len(self.records),
            "unparseable": self.full.unparseable,
            "paper_average": self.headline(),
            "mmad_average": self.full.headline,
            "latency_ms": {"p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99)},
            "throughput_qps": qps,
            "busy_s": busy,
            "models": self.meta.get("models", {}),
            "scores": self.full.to_dict(),
            "evidence": self.evidence.to_dict() if self.evidence.ran else None,
        }


def knowledge_table(records: Sequence[dict[str, Any]]) -> Table | None:
    """Per category: questions whose plan asked for knowledge but got none, and why (None when none lacked it)."""
    asked: dict[tuple[str, str], int] = defaultdict(int)
    missed: dict[tuple[str, str], int] = defaultdict(int)
    why: dict[tuple[str, str], str] = {}
    for r in records:
        trace = r.get("trace") or {}
        if trace.get("knowledge_mode", "KNOWLEDGE_NONE") in ("KNOWLEDGE_NONE", "KNOWLEDGE_MODE_UNSPECIFIED"):
            continue
        key = (r["dataset"], r["category"])
        asked[key] += 1
        if "knowledge" not in (trace.get("experts_used") or []):
            missed[key] += 1
            reason = next((d for d in trace.get("degraded") or [] if d.startswith("knowledge")), "no text")
            why.setdefault(key, reason)
    if not missed:
        return None
    rows: list[list[Value]] = [[ds, cat, missed[(ds, cat)], asked[(ds, cat)], why[(ds, cat)]] for ds, cat in missed]
    note = "These answers ran without the Knowledge Guide; add the categories to knowledge_base/ or the store."
    return Table("Knowledge missing per category", ["Dataset", "Category", "Without", "Asked", "Why"], rows, note, 2)


def build_report(
    records: Iterable[dict[str, Any]],
    meta: dict[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    run_dir: str | Path | None = None,
) -> RunReport:
    """Every table of a run. `datasets`: Table 1's (default: the paper's MVTec-AD and VisA; see table1_datasets).

    `run_dir` holds the run's heat maps: with it (and meta's dataset_path for the masks) the evidence table
    has pixel AUROC and AUPRO.
    """
    recs = dedupe(records)
    g = graded(recs)
    chosen, why = table1_datasets((x.dataset for x in g), datasets or (meta or {}).get("table1_datasets"))
    paper = score([x for x in g if x.dataset in chosen], types=PAPER_TYPES)
    full = score(g)
    rep = RunReport(recs, {**(meta or {}), "table1_note": why}, paper, full)
    rep.tables = {
        "table1": paper_table(paper),
        "mmad": mmad_table(full),
        "per_category": category_table(full),
        "counts": counts_table(full),
        "latency": latency_table(recs),
    }
    rep.evidence = evidence_report(recs, run_dir, (meta or {}).get("dataset_path"))
    if rep.evidence.ran:
        rep.tables["evidence"] = evidence_table(rep.evidence)
    missing = knowledge_table(recs)
    if missing is not None:
        rep.tables["knowledge"] = missing
    return rep


def header_lines(rep: RunReport) -> list[str]:
    m = rep.meta
    expected = m.get("questions")
    lines = [
        f"dataset: {m.get('dataset_path', '?')}",
        *([f"protocol: {m['protocol']}"] if m.get("protocol") else []),
        *([m["table1_note"]] if m.get("table1_note") else []),
        f"answered: {len(rep.records)}"
        + (f" of {expected}" if expected else "")
        + (f", {rep.full.unparseable} unparseable" if rep.records else ""),
    ]
    cell = m.get("cell")
    if cell:
        from services.evaluation.cells import Cell

        lines.append(f"cell: {cell.get('name')} ({Cell.from_dict(cell).describe()})")
    if (m.get("options") or {}).get("plan_types") and rep.records:
        agree = planner_agreement(rep.records)
        lines.append(f"question types planned by the gateway: {fmt(agree)}% agree with the dataset's types")
    server = m.get("server")
    if server:
        backend = m.get("settings", {}).get("decision", {}).get("backend")
        lines.append(f"server: {server}" + (f" (decision backend: {backend})" if backend else ""))
    models = m.get("models") or {}
    if models:
        lines.append("models: " + "; ".join(f"{k}={', '.join(v)}" for k, v in models.items()))
        if any("echo-tiny" in x or "random" in x or "oracle" in x for v in models.values() for x in v):
            lines.append(
                "NOTE: offline or baseline models answered (random weights, random or oracle answerers): "
                "these accuracies check the harness, they say nothing about the method."
            )
    if rep.records:
        lines.append(evidence_line(rep.evidence))
    if expected and len(rep.records) < expected:
        lines.append(f"INCOMPLETE: {expected - len(rep.records)} questions unanswered; rerun the command to resume.")
    return lines


def planner_agreement(records: Sequence[dict[str, Any]]) -> float | None:
    """Share of answers whose trace's question type is the dataset's type (meaningful with --plan-types)."""
    from echo.v1 import common_pb2
    from services.common.enums import QUESTION_TYPE_ENUM

    names = {common_pb2.QuestionType.Name(v): t for t, v in QUESTION_TYPE_ENUM.items()}  # as the JSON trace has them
    known = [r for r in records if r["type"] in QUESTION_TYPES]
    if not known:
        return None
    hits = sum(names.get((r.get("trace") or {}).get("question_type", "")) == r["type"] for r in known)
    return 100.0 * hits / len(known)


def print_report(rep: RunReport, console: Any, *, per_category: bool = True) -> None:
    for line in header_lines(rep):
        console.print(line, highlight=False)
    for name, table in rep.tables.items():
        if name == "per_category" and not per_category:
            continue
        console.print(table.to_rich())


def write_report(rep: RunReport, run_dir: str | Path, *, chart: bool = True) -> list[Path]:
    """Write report.md, report.csv, per_category.csv, latency.csv, evidence.csv (when the evidence expert ran),
    summary.json and chart.png; return the paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    md = ["# Echo-IAD evaluation report", "", *(f"- {line}" for line in header_lines(rep)), ""]
    md += [t.to_markdown() for t in rep.tables.values()]
    paths = [run_dir / "report.md", run_dir / "report.csv", run_dir / "per_category.csv", run_dir / "latency.csv"]
    paths[0].write_text("\n".join(md), encoding="utf-8")
    _tidy_csv(rep.full, paths[1])
    _category_csv(rep.full, paths[2])
    rep.tables["latency"].write_csv(paths[3])
    if "evidence" in rep.tables:
        paths.append(run_dir / "evidence.csv")
        rep.tables["evidence"].write_csv(paths[-1])
    summary = run_dir / "summary.json"
    summary.write_text(json.dumps(rep.summary(), indent=1, default=str) + "\n", encoding="utf-8")
    paths.append(summary)
    if chart and rep.records:
        paths.append(write_chart(rep, run_dir / "chart.png"))
    return paths


def _cell_fields(c: Count, balanced: bool, report_acc: float | None, dropped_acc: float | None) -> list[Value]:
    lo, hi = (None, None) if balanced else (100 * x for x in wilson_interval(c.correct, c.n))
    return [c.n, c.correct, c.unparseable, report_acc, dropped_acc, lo, hi]


def _tidy_csv(report: ScoreReport, path: Path) -> None:
    """One row per (dataset, type) plus each dataset's and the overall averages; both unparseable policies."""
    cols = ["dataset", "type", "n", "correct", "unparseable", "accuracy", "accuracy_dropped", "ci95_low", "ci95_high"]
    cols += ["overkill_pct", "miss_pct"]
    rows: list[list[Value]] = []
    for ds, per in report.counts.items():
        for t in _types_present(report):
            if t not in per:
                continue
            c = per[t]
            ad = t == ANOMALY_DETECTION
            fields = _cell_fields(c, ad, report.wrong.accuracy[ds].get(t), report.dropped.accuracy[ds].get(t))
            rows.append([ds, t, *fields, *(ad_rates(c) if ad else (None, None))])
        n = sum(c.n for c in per.values())
        avg = [report.wrong.dataset_average[ds], report.dropped.dataset_average[ds]]
        rows.append([ds, AVERAGE, n, None, None, *avg, None, None, None, None])
    rows.append([AVERAGE, AVERAGE, report.total, None, None, report.wrong.headline, report.dropped.headline])
    rows[-1] += [None] * (len(cols) - len(rows[-1]))
    Table("", cols, rows).write_csv(path)


def _category_csv(report: ScoreReport, path: Path) -> None:
    cols = ["dataset", "category", "type", "n", "correct", "unparseable", "accuracy", "accuracy_dropped"]
    cols += ["ci95_low", "ci95_high", "overkill_pct", "miss_pct"]
    rows: list[list[Value]] = []
    for ds, cats in report.category_counts.items():
        for cat, per in cats.items():
            for t in _types_present(report):
                if t not in per:
                    continue
                c = per[t]
                ad = t == ANOMALY_DETECTION
                acc = report.wrong.per_category[ds][cat].get(t)
                dropped = report.dropped.per_category[ds][cat].get(t)
                rows.append([ds, cat, t, *_cell_fields(c, ad, acc, dropped), *(ad_rates(c) if ad else (None, None))])
    Table("", cols, rows).write_csv(path)


def write_chart(rep: RunReport, path: Path) -> Path:
    """Table 1 as grouped bars (one group per paper type, one bar per dataset) beside AD overkill and miss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t1 = rep.tables["table1"]
    labels = t1.columns[1:]
    groups = list(t1.rows)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(1, len(groups))
    for i, row in enumerate(groups):
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(labels))]
        ys = [v if isinstance(v, float | int) else 0.0 for v in row[1:]]
        ax.bar(xs, ys, width, label=str(row[0]))
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per question type (Discrimination = balanced AD)")
    ax.legend(fontsize=8)
    mm = rep.tables["mmad"]
    names = [str(r[0]) for r in mm.rows]
    ok = mm.column("AD overkill %")
    miss = mm.column("AD miss %")
    xs = list(range(len(names)))
    ax2.bar([x - 0.2 for x in xs], [v or 0.0 for v in ok], 0.4, label="overkill")  # type: ignore[misc]
    ax2.bar([x + 0.2 for x in xs], [v or 0.0 for v in miss], 0.4, label="miss")  # type: ignore[misc]
    ax2.set_xticks(xs, names, rotation=15)
    ax2.set_ylim(0, 100)
    ax2.set_title("Anomaly detection errors (%)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report_run(
    run_dir: str | Path,
    *,
    write: bool = True,
    chart: bool = True,
    console: Any | None = None,
    datasets: Sequence[str] | None = None,
) -> RunReport:
    """Build (and write, and print) the report of one run folder; `datasets`: Table 1's (see table1_datasets)."""
    from services.evaluation.runner import load_run

    records, meta = load_run(run_dir)
    rep = build_report(records, meta, datasets, run_dir)
    if write:
        write_report(rep, run_dir, chart=chart)
    if console is not None:
        print_report(rep, console)
    return rep
