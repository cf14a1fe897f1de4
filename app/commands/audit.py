"""`echo-iad audit list | show | export | replay`: the audit trail, read through the Inspector over gRPC."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from app.commands.inspector import Application, Server

app = typer.Typer(
    help=(
        "The audit trail: every answered inspection with what it was based on (image, plan, references, "
        "knowledge, models, prompt hash, reply, timings). Read through the Inspector, so it works against "
        "`echo-iad serve` and a Ray cluster alike."
    ),
    no_args_is_help=True,
)
Line = Annotated[str, typer.Option("--line", "-l", help="Production line id (every query is scoped to one line).")]
Category = Annotated[str, typer.Option(help="Only this product category.")]
Dataset = Annotated[str, typer.Option(help="Only this dataset / product family namespace.")]
Verdict = Annotated[str, typer.Option(help="Only this verdict: good, defect, answered or unparsed.")]
Since = Annotated[
    str, typer.Option(help="At or after: an ISO date or time (local), or a span back from now: 30m, 24h, 7d.")
]
Until = Annotated[str, typer.Option(help="Before: same forms as --since.")]


def _time(text: str, option: str) -> int:
    from services.audit.record import parse_time

    try:
        return parse_time(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


def _filters(category: str, dataset: str, verdict: str, since: str, until: str) -> dict:
    from services.common.enums import VERDICT_ENUM

    if verdict and verdict not in VERDICT_ENUM:
        raise typer.BadParameter(f"{verdict!r} is not one of {', '.join(VERDICT_ENUM)}", param_hint="--verdict")
    return {
        "category": category,
        "dataset": dataset,
        "verdict": verdict,
        "since_ms": _time(since, "--since"),
        "until_ms": _time(until, "--until"),
    }


def _local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


VERDICT_STYLE = {"good": "green", "defect": "bold red", "answered": "cyan", "unparsed": "yellow"}


@app.command("list")
def list_(
    line: Line = "default",
    category: Category = "",
    dataset: Dataset = "",
    verdict: Verdict = "",
    since: Since = "",
    until: Until = "",
    limit: Annotated[int, typer.Option(help="Most records to show (newest first).")] = 20,
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """The latest inspections of a line, newest first, with their verdicts."""
    from rich.console import Console
    from rich.table import Table

    from services.audit.record import question_type_name, total_ms, verdict_name
    from services.client import InspectorClient

    filters = _filters(category, dataset, verdict, since, until)
    with InspectorClient(server, application=application) as client:
        page = client.list_inspections(line, limit=min(limit, 1000), **filters)
    table = Table("time", "request id", "category", "question type", "answer", "verdict", "ms", "degraded")
    for r in page.records:
        v = verdict_name(r.verdict)
        table.add_row(
            _local(r.time_unix_ms),
            r.request_id,
            f"{r.dataset}/{r.category}" if r.dataset else r.category,
            question_type_name(r.trace.question_type),
            f"{r.answer}. {r.answer_text}" if r.answer else "-",
            f"[{VERDICT_STYLE.get(v, '')}]{v}[/]",
            f"{total_ms(r):.0f}",
            str(len(r.trace.degraded) or ""),
        )
    console = Console()
    console.print(table)
    more = " (more: raise --limit or use `echo-iad audit export`)" if page.next_page_token else ""
    console.print(f"{len(page.records)} inspections on line {line!r}{more}")


@app.command()
def show(
    request_id: Annotated[str, typer.Argument(help="The request id of the inspection (as `audit list` shows it).")],
    line: Line = "default",
    server: Server = "127.0.0.1:50051",
    application: Application = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole record as JSON.")] = False,
) -> None:
    """One inspection in full: the question, the answer, what it was based on, and the timings."""
    from rich.console import Console

    from app.commands.inspector import print_response
    from services.audit.record import iso_time, to_json, verdict_name
    from services.client import InspectorClient

    with InspectorClient(server, application=application) as client:
        record = client.get_inspection(line, request_id).record
    if as_json:
        typer.echo(to_json(record))
        return
    console = Console()
    q = record.request.question
    console.print(
        f"[bold]inspection[/bold]    {record.request_id} on line {record.line_id} at {iso_time(record.time_unix_ms)}"
    )
    console.print(f"question      {q.text}")
    for letter in sorted(q.options):
        console.print(f"  {letter}. {q.options[letter]}")
    console.print(f"verdict       {verdict_name(record.verdict) or '-'}")
    console.print(f"image         sha256 {record.image_sha256}")
    console.print(f"prompt        sha256 {record.trace.prompt_sha256 or '- (no prompt: baseline backend)'}")
    print_response(record)  # answer, plan, experts, references, knowledge ids, models, degraded, timings, reasoning
    for p in record.knowledge_passages:
        console.print(f"[bold]passage[/bold] {p.id}\n  {p.text}")
    if record.trace.raw_reply:
        console.print(f"[bold]raw reply[/bold]\n{record.trace.raw_reply}")


@app.command()
def export(
    since: Since = "",
    until: Until = "",
    line: Line = "default",
    category: Category = "",
    dataset: Dataset = "",
    verdict: Verdict = "",
    fmt: Annotated[str, typer.Option("--format", help="jsonl (every field) or csv (one flat row each).")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")] = None,
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """Every matching inspection, oldest first, as JSON lines or CSV (for the quality system).

    The CSV says whose verdict each answer is (verdict_source) and its review state (pending, or the standing
    operator confirmation); the JSON lines carry the record as kept (`echo-iad review show` has the confirmations).
    """
    import csv

    from services.audit.record import CSV_COLUMNS, csv_row, review_words, to_json
    from services.client import InspectorClient

    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter(f"{fmt!r}: use jsonl or csv", param_hint="--format")
    filters = _filters(category, dataset, verdict, since, until)
    stream = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout  # noqa: SIM115
    n = 0
    try:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
        if writer is not None:
            writer.writeheader()
        with InspectorClient(server, application=application) as client:
            reviews = _reviews(client, line) if writer is not None else {}
            for record in client.iter_inspections(line, oldest_first=True, limit=500, **filters):
                if writer is not None:
                    writer.writerow(csv_row(record, review_words(reviews.get(record.request_id), record)))
                else:
                    stream.write(to_json(record) + "\n")
                n += 1
    finally:
        if out:
            stream.close()
    typer.echo(f"exported {n} inspections of line {line!r}" + (f" to {out}" if out else ""), err=True)


def _reviews(client, line: str) -> dict:  # type: ignore[no-untyped-def]
    """Every review item of the line by inspection id (the queue and the confirmed ones)."""
    found, token = {}, ""
    while True:
        page = client.list_reviews(line, limit=1000, page_token=token)
        found.update((item.record.request_id, item) for item in page.items)
        token = page.next_page_token
        if not token:
            return found


@app.command("replay")
def replay_(
    request_id: Annotated[str, typer.Argument(help="The request id of the recorded inspection.")],
    line: Line = "default",
    server: Server = "127.0.0.1:50051",
    application: Application = "",
    check: Annotated[bool, typer.Option(help="Exit with status 1 when the answer or verdict changed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
) -> None:
    """Ask today's models a recorded question again and print what changed (how to check a model upgrade).

    The recorded request and image are sent to the Inspector as a new inspection (itself recorded, its id
    starting with `replay-`), then the answer, verdict, plan, references, knowledge, models, prompt hash and
    option scores are compared with the record.
    """
    import json
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from services.audit.replay import replay
    from services.client import InspectorClient

    with InspectorClient(server, application=application) as client:
        result = replay(client, line, request_id)
    changed = {c.field for c in result.changes}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "request_id": request_id,
                    "replay_id": result.response.request_id,
                    "changes": [asdict(c) for c in result.changes],
                }
            )
        )
    else:
        console = Console()
        console.print(f"replayed {request_id} as {result.response.request_id}")
        if not result.changes:
            console.print("no change: same answer, plan, evidence, models and prompt")
        else:
            table = Table("what", "recorded", "today", title="what changed")
            for c in result.changes:
                style = "bold" if c.field in ("answer", "verdict") else ""
                table.add_row(c.field, c.recorded, c.today, style=style)
            console.print(table)
    if check and changed & {"answer", "verdict"}:
        raise typer.Exit(1)
