"""`echo-iad demo`: the whole product on one machine, offline, in about a minute.

Synthesize a small MMAD-format dataset, build the memory of normal images,
start the embedded server, send questions of every type over gRPC, and print
a per-type table. It says plainly which models ran, and ends with the two commands that serve what it
built and inspect one of its images (`echo-iad serve --data-dir WORKDIR`, then `echo-iad inspect`).

The visual evidence expert's own verdict is scored beside the MLLM's answer
(Anomaly Detection: its verdict against the truth; Defect Localization: the
option naming its top box's region), and a few of its heat-map overlays
(Trace.evidence.overlay_png) are written to WORKDIR/overlays/.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated

import typer

from services.common.percentiles import percentile
from services.decision.evidence_answer import best_region_option
from services.mmad.types import ANOMALY_DETECTION, DEFECT_LOCALIZATION

OFFLINE_MARK = "echo-tiny"
SHORT = {"reference": "REr", "knowledge": "KG", "reasoning": "REx", "decision": "DM"}  # the paper's names
OVERLAY_DIR = "overlays"


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the dataset, memory and model caches go.")] = Path(
        "./echo-data/demo"
    ),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings (models, backends).")] = None,
    seed: Annotated[int, typer.Option(help="Dataset seed.")] = 0,
    per_category: Annotated[int, typer.Option(help="Query images per synthetic category.")] = 6,
    per_type: Annotated[int, typer.Option(help="Questions sent per question type.")] = 6,
    concurrency: Annotated[int, typer.Option(help="Concurrent client requests.")] = 4,
    overlays: Annotated[
        int, typer.Option(min=0, help="Heat-map overlays of the visual evidence expert to write (WORKDIR/overlays).")
    ] = 4,
) -> None:
    """Run the product end to end on this machine (no network): synth -> memory -> server -> questions -> table."""
    asyncio.run(run_demo(workdir, config, seed, per_category, per_type, concurrency, overlays))


async def run_demo(
    workdir: Path,
    config: Path | None,
    seed: int,
    per_category: int,
    per_type: int,
    concurrency: int,
    overlays: int = 4,
) -> dict:
    from rich.console import Console

    from app.memory import build_memory
    from services.config import load_settings
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    console = Console(width=max(110, Console().width))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(config, data_dir=str(workdir), server={"port": 0})

    console.rule("1. synthesize an MMAD-format dataset")
    data_dir = workdir / "dataset"
    if not (data_dir / "mmad.json").exists():
        synthesize(data_dir, seed=seed, per_category=per_category, templates_per_category=6)
    dataset = load_dataset(data_dir)
    console.print(
        f"{len(dataset.samples)} images, {sum(len(s.questions) for s in dataset.samples)} questions in {data_dir}"
    )

    console.rule("2. build the memory of normal images")
    line = settings.retrieval.default_line  # the line `echo-iad inspect` asks about when it names none
    report = build_memory(settings, data_dir, line_id=line, progress=True)
    console.print(
        f"memory ({report.engine}, {report.model_id}, {report.dim}-d): {report.added} added, "
        f"{report.existing} already there, {report.total} normal images for line {line!r}"
    )

    console.rule("3. start the embedded server")
    from app.embedded import start_embedded

    t0 = time.perf_counter()
    embedded = await start_embedded(settings)
    started = f"started in {time.perf_counter() - t0:.1f} s"
    console.print(f"serving all {len(embedded.stages)} services on {embedded.address} ({started})")

    console.rule("4. send questions of every type over gRPC")
    try:
        results = await _ask(embedded.address, dataset, line, per_type, concurrency)
    finally:
        await embedded.stop(grace=1.0)

    console.rule("5. results")
    summary = _table(console, results)
    summary["verdicts"] = _say_verdicts(console, results)
    _say_models(console, results)
    _write_overlays(console, results, workdir / OVERLAY_DIR, overlays)
    console.rule("next")
    console.print("Serve what the demo built, then, in another terminal, inspect one of its images:", highlight=False)
    for command in next_commands(workdir, config, dataset, line):
        console.print(f"  {command}", highlight=False, soft_wrap=True, markup=False)
    return summary


def next_commands(workdir: Path, config: Path | None, dataset, line: str) -> list[str]:  # type: ignore[no-untyped-def]
    """`echo-iad serve` over the demo's data folder (its memory, banks and models) and `echo-iad inspect` of one
    of its anomalous images on the line the demo filled: the two commands that work once the demo is done."""
    sample = next((s for s in dataset.samples if not s.is_normal), dataset.samples[0])
    image = shlex.quote(str(dataset.abspath(sample.image_path)))
    config_flag = f" --config {shlex.quote(str(config))}" if config is not None else ""
    return [
        f"echo-iad serve --data-dir {shlex.quote(str(workdir))}{config_flag}",
        f"echo-iad inspect {image} --line {shlex.quote(line)} --category {shlex.quote(sample.category)} "
        f"-q {shlex.quote('Is there any defect in the object?')}",
    ]


async def _ask(address: str, dataset, line: str, per_type: int, concurrency: int) -> list[dict]:  # type: ignore[no-untyped-def]
    from services.client import AsyncInspectorClient, build_inspect_request

    chosen: dict[str, list] = defaultdict(list)
    for sample, q in dataset.questions():
        if len(chosen[q.type]) < per_type:
            chosen[q.type].append((sample, q))
    jobs = [job for t in sorted(chosen) for job in chosen[t]]
    sem = asyncio.Semaphore(concurrency)
    results: list[dict] = []
    async with AsyncInspectorClient(address, timeout_s=120) as client:

        async def one(sample, q) -> None:  # type: ignore[no-untyped-def]
            async with sem:
                t0 = time.perf_counter()
                req = build_inspect_request(
                    dataset.abspath(sample.image_path),
                    q.text,
                    q.options,
                    line_id=line,
                    dataset=sample.dataset,
                    category=sample.category,
                    # the heat map and its overlay, for the types the evidence expert answers
                    return_heatmap=q.type in (ANOMALY_DETECTION, DEFECT_LOCALIZATION),
                )
                resp = await client.inspect_request(req)
                results.append(
                    {
                        "type": q.type,
                        "gold": q.answer,
                        "answer": resp.answer,
                        "ms": (time.perf_counter() - t0) * 1000,
                        "experts": "+".join(SHORT.get(e, e) for e in resp.trace.experts_used),
                        "models": dict(resp.trace.model_ids),
                        "degraded": list(resp.trace.degraded),
                        "source": resp.trace.verdict_source,
                        "image": sample.image_path,
                        "category": sample.category,
                        "defect": sample.defect_type,
                        "is_normal": sample.is_normal,
                        "evidence": _evidence(q, sample.is_normal, resp.trace),
                    }
                )

        await asyncio.gather(*(one(s, q) for s, q in jobs))
    return results


def _evidence(q, is_normal: bool, trace) -> dict | None:  # type: ignore[no-untyped-def]
    """The evidence expert's own answer to the question, and whether it is right (None: it did not run).

    Anomaly Detection: its verdict against the truth. Defect Localization: the option naming its top box's
    region (the same choice as `decision.backend: evidence`) against the gold letter. Other types: no answer of its own.
    """
    if not trace.HasField("evidence"):
        return None
    ev = trace.evidence
    correct: bool | None = None
    if q.type == ANOMALY_DETECTION:
        correct = ev.anomalous == (not is_normal)
    elif q.type == DEFECT_LOCALIZATION:
        region = ev.boxes[0].region if ev.boxes else ""
        correct = bool(region) and best_region_option(region, q.options) == q.answer
    return {"score": ev.score, "anomalous": ev.anomalous, "correct": correct, "overlay": ev.overlay_png or None}


def _table(console, results: list[dict]) -> dict:  # type: ignore[no-untyped-def]
    from rich.table import Column, Table

    from services.mmad.types import QUESTION_TYPES

    table = Table(
        Column("question type", no_wrap=True), "n", "correct", "accuracy", "VE accuracy", "p50 ms", "max ms",
        "experts used", "unparsed",
        caption="accuracy: the Decision Maker's answers. VE accuracy: the visual evidence expert's own answer "
        "(AD: its verdict; DL: the option naming its top box's region), – where it does not answer the type.",
    )  # fmt: skip
    summary = {}
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_type[r["type"]].append(r)
    for t in [t for t in QUESTION_TYPES if t in by_type] + sorted(set(by_type) - set(QUESTION_TYPES)):
        rows = by_type[t]
        correct = sum(r["answer"] == r["gold"] for r in rows)
        ms = [r["ms"] for r in rows]
        experts = Counter(r["experts"] for r in rows).most_common(1)[0][0]
        unparsed = sum(not r["answer"] for r in rows)
        judged = [r["evidence"]["correct"] for r in rows if r["evidence"] and r["evidence"]["correct"] is not None]
        ve = f"{100 * sum(judged) / len(judged):.0f}% ({sum(judged)}/{len(judged)})" if judged else "–"
        table.add_row(
            t, str(len(rows)), str(correct), f"{100 * correct / len(rows):.0f}%", ve,
            f"{percentile(ms, 50):.0f}", f"{max(ms):.0f}", experts, str(unparsed),
        )  # fmt: skip
        summary[t] = {"n": len(rows), "correct": correct, "p50_ms": percentile(ms, 50)}
        if judged:
            summary[t]["evidence"] = {"n": len(judged), "correct": sum(judged)}
    console.print(table)
    degraded = sum(bool(r["degraded"]) for r in results)
    console.print(f"{len(results)} inspections, {degraded} degraded")
    return summary


def _write_overlays(console, results: list[dict], out: Path, limit: int) -> list[Path]:  # type: ignore[no-untyped-def]
    """Write up to `limit` heat-map overlays (anomalous images first, one per image) and say where they are."""
    with_overlay = [r for r in results if r["evidence"] and r["evidence"]["overlay"]]
    if limit <= 0:
        return []
    if not with_overlay:
        console.print("no heat-map overlays: the visual evidence expert did not run on these questions")
        return []
    chosen: dict[str, dict] = {}
    for r in sorted(with_overlay, key=lambda r: (r["is_normal"], r["image"])):
        chosen.setdefault(r["image"], r)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in list(chosen.values())[:limit]:
        stem = Path(r["image"]).stem
        verdict = "anomalous" if r["evidence"]["anomalous"] else "normal"
        path = out / f"{r['category']}_{r['defect']}_{stem}_{verdict}.png"
        path.write_bytes(r["evidence"]["overlay"])
        paths.append(path)
    console.print(
        f"{len(paths)} heat-map overlays of the visual evidence expert (the query under its anomaly map, blue "
        "normal to red anomalous, the threshold mid-scale):",
        highlight=False,
    )
    console.print(f"overlays written to {out}", highlight=False, soft_wrap=True)
    for p in paths:
        console.print(f"  {p}", highlight=False, soft_wrap=True)
    return paths


def _say_verdicts(console, results: list[dict]) -> dict:  # type: ignore[no-untyped-def]
    """Anomaly Detection as a line sees it: defective parts shown defective, good parts shown good, and whose
    verdict it was (the evidence answers when the decision model is the offline random one)."""
    rows = [r for r in results if r["type"] == ANOMALY_DETECTION]
    if not rows:
        return {}
    defective = [r for r in rows if not r["is_normal"]]
    normal = [r for r in rows if r["is_normal"]]
    shown = {
        "defective_shown_defective": sum(r["answer"] == r["gold"] for r in defective),
        "defective": len(defective),
        "good_shown_good": sum(r["answer"] == r["gold"] for r in normal),
        "good": len(normal),
        "sources": dict(Counter(r["source"] for r in rows)),
    }
    console.print(
        f"Anomaly Detection: {shown['defective_shown_defective']}/{len(defective)} defective parts shown defective, "
        f"{shown['good_shown_good']}/{len(normal)} good parts shown good; verdict from "
        + "; ".join(f"{src or '-'} ({n})" for src, n in shown["sources"].items()),
        highlight=False,
        soft_wrap=True,
    )
    return shown


def _say_models(console, results: list[dict]) -> None:  # type: ignore[no-untyped-def]
    models: dict[str, str] = {}
    for r in results:
        models.update(r["models"])
    console.print("models that ran: " + ", ".join(f"{k}={v}" for k, v in sorted(models.items())))
    if any(OFFLINE_MARK in v for v in models.values()):
        console.print(
            "[yellow]These are offline test models: real architectures with RANDOM weights, so the answers above "
            "are meaningless.[/yellow] The code path is the real one. Point the config at real weights "
            "(embedding.model=ViT-B-16, embedding.weights=openai; decision.model=<path to Qwen2-VL-2B/7B-Instruct>) "
            "to get real answers."
        )
    evidence = models.get("evidence", "")
    if evidence and "random" not in evidence:
        console.print(
            "The visual evidence expert is the exception: pretrained weights (ImageNet), so its VE accuracy and "
            "heat maps are real measurements."
        )
    if models.get("embedding", "").startswith("efficientnet_lite0"):
        console.print(
            "So is the Reference Extractor: with no CLIP weights configured it embeds images with EfficientNet-Lite0's "
            "pretrained ImageNet features, so its references and inferred categories are real image neighbours."
        )
