"""`echo-iad serve | inspect | product | demo`: the commands a plant engineer types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (env ECHO_IAD_CONFIG; ECHO_IAD__* variables override)."),
]
Server = Annotated[str, typer.Option("--server", "-s", help="Inspector address host:port.")]
Application = Annotated[
    str,
    typer.Option(
        help="Cluster mode: the Ray Serve application of the Inspector (e.g. 'inspector'; the Knowledge stage is "
        "then reached as 'knowledge' through the same proxy). Leave empty for `echo-iad serve`."
    ),
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

product_app = typer.Typer(
    help="Onboard a product on a line: its normal images and its knowledge. The first thing a plant engineer does.",
    no_args_is_help=True,
)


def serve(
    config: Config = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port (default from config: 50051).")] = None,
    ray: Annotated[
        Path | None, typer.Option("--ray", help="Serve config YAML: deploy every stage on Ray Serve instead.")
    ] = None,
) -> None:
    """Serve all five services (Inspector, Embedding, Retrieval, Knowledge, Decision) on one gRPC port.

    Embedded mode: one process, Qdrant Edge, files on disk. Health checking and reflection are on;
    SIGTERM lets in-flight requests finish. With --ray, deploy to Ray Serve instead (cluster mode).
    """
    import asyncio

    from services.common.telemetry import setup_logging, start_metrics_exporter
    from services.config import load_settings

    if ray is not None:
        from deploy.launch import serve_ray

        serve_ray(ray)
        return
    overrides: dict = {"server": {}}
    if host is not None:
        overrides["server"]["host"] = host
    if port is not None:
        overrides["server"]["port"] = port
    settings = load_settings(config, **overrides)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    from services.gateway.server import serve_embedded

    asyncio.run(serve_embedded(settings))


def _parse_options(options: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in options:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r}: write options as LETTER=TEXT, e.g. --option 'A=Yes.'")
        letter, text = item.split("=", 1)
        out[letter.strip().upper()] = text.strip()
    return out


def inspect(
    image: Annotated[Path, typer.Argument(help="Image file (PNG/JPEG) to inspect.", exists=True, dir_okay=False)],
    question: Annotated[str, typer.Option("--question", "-q", help="The question, e.g. 'Is there any defect?'")],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="An option as LETTER=TEXT; repeat. Default A=Yes. B=No.")
    ] = None,
    category: Annotated[str, typer.Option(help="Product category; inferred from memory when omitted.")] = "",
    dataset: Annotated[str, typer.Option(help="Dataset / product family namespace of the memory.")] = "",
    line: Annotated[str, typer.Option(help="Production line id (the tenant).")] = "default",
    question_type: Annotated[
        str | None, typer.Option("--type", help="Question type, e.g. 'Defect Classification'; planned when omitted.")
    ] = None,
    reference: Annotated[str | None, typer.Option(help="Reference mode: 0-shot, 1-shot, 1-shot* or k-shot.")] = None,
    knowledge: Annotated[str | None, typer.Option(help="Knowledge mode: none, dk or csk.")] = None,
    answer_format: Annotated[str | None, typer.Option("--format", help="Answer format: mc, open or tf.")] = None,
    deadline_ms: Annotated[float, typer.Option(help="Deadline in milliseconds (0: server default).")] = 0.0,
    show_prompt: Annotated[bool, typer.Option(help="Return and print the exact decision prompt.")] = False,
    server: Server = "127.0.0.1:50051",
    application: Application = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response as JSON.")] = False,
) -> None:
    """Ask the Inspector one question about one image and print the answer with its trace."""
    from google.protobuf.json_format import MessageToDict

    from services.client import InspectorClient

    options = _parse_options(option) if option else {"A": "Yes.", "B": "No."}
    with InspectorClient(server, application=application) as client:
        resp = client.inspect(
            image,
            question,
            options,
            line_id=line,
            category=category,
            dataset=dataset,
            question_type=question_type,
            reference_mode=reference,
            knowledge_mode=knowledge,
            answer_format=answer_format,
            deadline_ms=deadline_ms,
            return_prompt=show_prompt,
        )
    if as_json:
        typer.echo(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
        return
    print_response(resp)


def print_response(resp) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    from echo.v1 import common_pb2

    t = resp.trace
    console = Console()
    answer = f"{resp.answer}. {resp.answer_text}" if resp.answer else "(unparseable reply: no option chosen)"
    console.print(f"[bold]answer[/bold]        {answer}")
    qtype = common_pb2.QuestionType.Name(t.question_type)
    how = "client" if t.type_from_client else f"planned, confidence {t.type_confidence:.2f}"
    console.print(f"question type {qtype} ({how})")
    cat = f"{t.category} (inferred, confidence {t.category_confidence:.2f})" if t.category_inferred else t.category
    console.print(f"category      {cat or '-'}   dataset {t.dataset or '-'}")
    console.print(f"experts used  {', '.join(t.experts_used)}")
    for r in t.references:
        console.print(f"reference     {r.uri} (score {r.score:.3f})")
    if t.knowledge_entry_ids:
        console.print(f"knowledge     {', '.join(t.knowledge_entry_ids)} ({len(t.knowledge_passage_ids)} passages)")
    console.print(f"models        {', '.join(f'{k}={v}' for k, v in sorted(t.model_ids.items()))}")
    for d in t.degraded:
        console.print(f"[yellow]degraded[/yellow]      {d}")
    table = Table("stage", "ms", "compute ms", title="latency")
    for s in t.timings:
        table.add_row(s.stage, f"{s.ms:.1f}", f"{s.compute_ms:.1f}" if s.compute_ms else "")
    console.print(table)
    if t.reasoning:
        console.print(f"[bold]reasoning[/bold]\n{t.reasoning}")
    if t.prompt:
        console.print(f"[bold]prompt[/bold]\n{t.prompt}")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@product_app.command("add")
def product_add(
    line: Annotated[str, typer.Option(help="Production line id.")],
    category: Annotated[str, typer.Option(help="Product category name, e.g. 'brake_disc'.")],
    normal_dir: Annotated[
        Path, typer.Option(help="Folder of images of GOOD parts (searched recursively).", exists=True, file_okay=False)
    ],
    knowledge: Annotated[
        Path | None, typer.Option(help="Knowledge YAML for this product (schema: knowledge_base/README.md).")
    ] = None,
    dataset: Annotated[str, typer.Option(help="Namespace for your own products.")] = "Custom",
    server: Server = "127.0.0.1:50051",
    application: Application = "",
    batch: Annotated[int, typer.Option(help="Images per AddNormalImages call.")] = 16,
) -> None:
    """Send a product's normal images to the memory and its knowledge entry to the knowledge stage."""
    from rich.progress import Progress

    from services.client import InspectorClient

    images = _images_in(normal_dir)
    if not images:
        raise typer.BadParameter(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {normal_dir}")
    added = existing = 0
    with InspectorClient(server, application=application) as client, Progress() as progress:
        task = progress.add_task(f"adding {len(images)} normal images", total=len(images))
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            resp = client.add_normal_images(line, category, chunk, dataset=dataset)
            added += resp.added
            existing += resp.existing
            progress.advance(task, len(chunk))
    typer.echo(f"memory: {added} added, {existing} already present for line={line} {dataset}/{category}")
    if knowledge is not None:
        entry_id, version = put_knowledge_file(
            knowledge, server, dataset=dataset, category=category, cluster=bool(application)
        )
        typer.echo(f"knowledge: {entry_id} stored (version {version})")


def _knowledge_metadata(cluster: bool) -> tuple[tuple[str, str], ...] | None:
    return (("application", "knowledge"),) if cluster else None


def put_knowledge_file(
    path: Path, server: str, *, dataset: str, category: str, cluster: bool = False
) -> tuple[str, int]:
    """Send a knowledge YAML through the Knowledge stage's PutEntry RPC."""
    import grpc
    import yaml

    from echo.v1 import knowledge_pb2, knowledge_pb2_grpc
    from services.knowledge.entries import SchemaError, parse_entry
    from services.knowledge.servicer import entry_to_proto

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: the top level must be a mapping (schema: knowledge_base/README.md)")
    data.setdefault("dataset", dataset)
    data.setdefault("category", category)
    try:
        msg = entry_to_proto(parse_entry(data))
    except SchemaError as e:
        raise typer.BadParameter(f"{path}: {e.field}: {e.problem}") from None
    with grpc.insecure_channel(server) as channel:
        resp = knowledge_pb2_grpc.KnowledgeStub(channel).PutEntry(
            knowledge_pb2.PutEntryRequest(entry=msg), timeout=30, metadata=_knowledge_metadata(cluster)
        )
    return resp.id, resp.version


@product_app.command("check")
def product_check(
    line: Annotated[str, typer.Option(help="Production line id.")],
    category: Annotated[str, typer.Option(help="Product category name.")],
    dataset: Annotated[str, typer.Option(help="Namespace the product was added under.")] = "Custom",
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """Is this product ready to inspect? Counts normal images, finds its knowledge, runs a test inspection."""
    import grpc

    from echo.v1 import knowledge_pb2, knowledge_pb2_grpc
    from services.client import InspectorClient

    ok = True
    with InspectorClient(server, application=application) as client:
        listing = client.list_normal_images(line, category=category, dataset=dataset, limit=1)
        n = listing.total
        typer.echo(f"normal images   {n} {'(ready)' if n else '(none: run `echo-iad product add`)'}")
        ok &= n > 0
        with grpc.insecure_channel(server) as channel:
            entries = knowledge_pb2_grpc.KnowledgeStub(channel).ListEntries(
                knowledge_pb2.ListEntriesRequest(dataset=dataset),
                timeout=30,
                metadata=_knowledge_metadata(bool(application)),
            )
        has_kb = any(e.category == category for e in entries.entries)
        typer.echo(f"knowledge       {'present' if has_kb else 'missing (optional; improves classification)'}")
        if n:
            uri = listing.items[0].uri
            resp = client.inspect(
                uri,
                "Is there any defect in the object?",
                {"A": "Yes.", "B": "No."},
                line_id=line,
                category=category,
                dataset=dataset,
                send_uri=True,
            )
            t = resp.trace
            total = next((s.ms for s in t.timings if s.stage == "total"), 0.0)
            typer.echo(
                f"test inspection answer={resp.answer or '-'} experts={','.join(t.experts_used)} "
                f"references={len(t.references)} degraded={len(t.degraded)} total={total:.0f} ms"
            )
            ok &= bool(t.references) and not t.degraded
    typer.echo("READY" if ok else "NOT READY")
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach the gateway's top-level commands to the main app."""
    from services.gateway.demo import demo

    app.command()(serve)
    app.command()(inspect)
    app.add_typer(product_app, name="product")
    app.command()(demo)
