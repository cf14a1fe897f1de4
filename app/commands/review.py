"""`echo-iad review list | show | confirm`: the operator in the loop, through the Inspector over gRPC."""

from __future__ import annotations

from typing import Annotated

import typer

from app.commands.inspector import Application, Server

app = typer.Typer(
    help=(
        "The review queue: parts the line got an answer for at once but a person should confirm (the evidence "
        "scored them in the review band, or the model and the evidence disagree).\n\n"
        "Confirming teaches the product: `good` (a false alarm) adds the image to its normal memory and evidence "
        "bank, which recalibrates; `defect --type crack` adds it to its defect library. The latest confirmation "
        "stands; the audit trail keeps every one, with who and when. Confirming needs a token with `review: true` "
        "(set ECHO_IAD_TOKEN_FILE); line tokens can list but not confirm."
    ),
    no_args_is_help=True,
)
Line = Annotated[str, typer.Option("--line", "-l", help="Production line id.")]
InspectionId = Annotated[str, typer.Argument(help="The inspection's request id (as `review list` shows it).")]
STATE_STYLE = {"pending": "bold yellow", "confirmed": "green"}


def _state(value: int) -> str:
    from services.common.enums import REVIEW_STATE_ENUM

    return next((k for k, v in REVIEW_STATE_ENUM.items() if v == value), "")


def _stands(item) -> str:  # type: ignore[no-untyped-def]
    """The standing confirmation in a few words ("-" while pending)."""
    if not item.confirmations:
        return "-"
    from services.audit.record import verdict_name

    c = item.confirmations[-1]
    return verdict_name(c.verdict) + (f": {c.defect_type}" if c.defect_type else "") + f" ({c.by})"


@app.command("list")
def list_(
    line: Line = "default",
    state: Annotated[str, typer.Option(help="Only pending or confirmed; empty: both (pending first).")] = "",
    category: Annotated[str, typer.Option(help="Only this product category.")] = "",
    limit: Annotated[int, typer.Option(help="Most items to show.")] = 50,
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """The review queue of a line: pending parts first (newest first), then the confirmed ones."""
    from rich.console import Console
    from rich.table import Table

    from app.commands.audit import _local
    from app.commands.inspector import inspector
    from services.audit.record import verdict_name
    from services.common.enums import REVIEW_STATE_ENUM

    if state and state not in REVIEW_STATE_ENUM:
        raise typer.BadParameter(f"{state!r} is not one of {', '.join(REVIEW_STATE_ENUM)}", param_hint="--state")
    with inspector(server, application) as client:
        page = client.list_reviews(line, state=state, category=category, limit=min(limit, 1000))
    table = Table("time", "inspection", "product", "answered", "evidence", "why", "state", "confirmed as")
    for item in page.items:
        r, s = item.record, _state(item.state)
        e = r.evidence
        table.add_row(
            _local(r.time_unix_ms),
            r.request_id,
            f"{r.dataset}/{r.category}",
            verdict_name(r.verdict) or "-",
            f"{e.score:.4g} / {e.threshold:.4g}" if e.threshold else "-",
            r.trace.review_reason or "-",
            f"[{STATE_STYLE.get(s, '')}]{s}[/]",
            _stands(item),
        )
    console = Console()
    console.print(table)
    more = " (more: raise --limit)" if page.next_page_token else ""
    console.print(f"{page.pending} pending on line {line!r}{more}")


@app.command()
def show(
    inspection_id: InspectionId,
    line: Line = "default",
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """One inspection under review: its answer, evidence and why it was queued, and every confirmation."""
    from rich.console import Console

    from app.commands.inspector import inspector, verdict_lines
    from services.audit.record import iso_time, verdict_name
    from services.client.errors import CliError, ExitCode, Problem

    with inspector(server, application) as client:
        items = client.list_reviews(line, inspection_id=inspection_id).items
    if not items:
        hint = "list the queue with `echo-iad review list --line LINE`"
        raise CliError(
            Problem("NOT_FOUND", f"no inspection {inspection_id!r} on line {line!r}", hint, ExitCode.NOT_FOUND)
        )
    item = items[0]
    r = item.record
    console = Console()
    console.print(f"[bold]inspection[/bold]    {r.request_id} on line {r.line_id} at {iso_time(r.time_unix_ms)}")
    console.print(f"product       {r.dataset}/{r.category}   image sha256 {r.image_sha256}")
    console.print(f"answer        {r.answer}. {r.answer_text} ({verdict_name(r.verdict) or '-'})")
    for text in verdict_lines(r.trace):
        console.print(text)
    console.print(f"review        {_state(item.state) or 'not queued'}" + (
        f" ({r.trace.review_reason})" if r.trace.review_reason else ""))  # fmt: skip
    for c in item.confirmations:
        what = verdict_name(c.verdict) + (f": {c.defect_type}" if c.defect_type else "")
        forced = " (forced)" if c.forced else ""
        console.print(f"confirmed     {what}{forced} by {c.by} at {iso_time(c.time_unix_ms)}: {c.outcome}")
        if c.note:
            console.print(f"  note        {c.note}")


@app.command()
def confirm(
    inspection_id: InspectionId,
    verdict: Annotated[str, typer.Argument(help="What the part really is: good (a false alarm) or defect.")],
    line: Line = "default",
    defect_type: Annotated[str, typer.Option("--type", help="With defect: its kind, e.g. crack, scratch.")] = "",
    box: Annotated[
        str, typer.Option(help="With defect: where it is, x0,y0,x1,y1 in image pixels (default: the evidence's box).")
    ] = "",
    force: Annotated[
        bool, typer.Option(help="Accept good for a part the evidence scored over 2x its threshold (not a misclick).")
    ] = False,
    note: Annotated[str, typer.Option(help="A remark kept with the confirmation.")] = "",
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """Confirm one inspection as good or defect; the product learns from it at once.

    Examples: `echo-iad review confirm console-1a2b good --line line-7`;
    `echo-iad review confirm console-1a2b defect --type crack --line line-7`.
    """
    from app.commands.inspector import inspector

    if verdict not in ("good", "defect"):
        raise typer.BadParameter(f"{verdict!r}: use good or defect", param_hint="VERDICT")
    region = None
    if box:
        try:
            x0, y0, x1, y1 = (int(v) for v in box.split(","))
        except ValueError:
            raise typer.BadParameter(f"{box!r}: use x0,y0,x1,y1 (four integers)", param_hint="--box") from None
        region = (x0, y0, x1, y1)
    with inspector(server, application) as client:
        resp = client.confirm_review(
            line, inspection_id, verdict, defect_type=defect_type, box=region, force=force, note=note
        )
    typer.echo(resp.message)
