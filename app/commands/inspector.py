"""`echo-iad serve | inspect | product | demo`: the commands a plant engineer types."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.commands import existing

if TYPE_CHECKING:
    from services.client import InspectorClient
    from services.knowledge.entries import Entry

Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (env ECHO_IAD_CONFIG; ECHO_IAD__* variables override)."),
]
Server = Annotated[
    str, typer.Option("--server", "-s", help="Inspector address host:port (a host alone means port 50051).")
]
Application = Annotated[
    str,
    typer.Option(
        help="Cluster mode: the Ray Serve application of the Inspector behind Serve's gRPC proxy (e.g. 'inspector'). "
        "Leave empty for `echo-iad serve`."
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
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Root of the memory, banks, audit log and model caches (default from config: ./echo-data)."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Deploy every stage on Ray Serve instead: a Serve config YAML, or the name of a packaged one "
            "(local-cpu, single-gpu, multi-node-gpu), from any folder.",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve beyond loopback without TLS and tokens (a network you trust). On Ray: accept that Serve's "
            "gRPC proxy listens on every interface while the apps check no tokens.",
        ),
    ] = False,
    ingress: Annotated[
        str | None,
        typer.Option(
            "--ingress",
            help="With --ray: Serve's ingress, `haproxy` (HAProxy mode, bound to the config's http_options.host; "
            "the default for a Ray started here) or `proxy` (Serve's Python gRPC proxy). A running cluster keeps "
            "the one its nodes were started with; naming another is an error (docs/cluster.md).",
        ),
    ] = None,
) -> None:
    """Serve all six services (Inspector, Embedding, Retrieval, Knowledge, Decision, Evidence) on one gRPC port.

    Embedded mode: one process, Qdrant Edge, files on disk. Health checking (every stage's real check, every
    server.health_interval_s) and reflection are on; SIGTERM lets in-flight requests finish. Loopback with no
    tokens by default; another --host needs server.tls and server.auth in the config, or --insecure.
    With --ray, deploy to Ray Serve instead (cluster mode).
    """
    import asyncio

    from services.common.telemetry import setup_logging, setup_tracing, start_metrics_exporter
    from services.config import load_settings

    if ray is not None:
        from deploy.launch import serve_ray

        serve_ray(ray, insecure=insecure, ingress=ingress)
        return
    overrides: dict = {"server": {"insecure": True} if insecure else {}}
    if host is not None:
        overrides["server"]["host"] = host
    if port is not None:
        overrides["server"]["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    settings = load_settings(config, **overrides)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    setup_tracing(settings.telemetry)
    from app.embedded import serve_embedded

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
    image: Annotated[Path, typer.Argument(help="Image file (PNG/JPEG) to inspect.", callback=existing, dir_okay=False)],
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

    options = _parse_options(option) if option else {"A": "Yes.", "B": "No."}
    with inspector(server, application) as client, explained(client.address, application, {"image": image}):
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
    for line in verdict_lines(t):
        console.print(line)
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


def verdict_lines(t) -> list[str]:  # type: ignore[no-untyped-def]
    """Where the verdict comes from, the evidence (score, threshold, verdict, top region), a disagreement, and
    whether the answer waits for a person's review."""
    from services.gateway.verdict import evidence_words

    lines = [f"verdict from  {t.verdict_source}"] if t.verdict_source else []
    if t.HasField("evidence"):
        e = t.evidence
        words = evidence_words(e.score, e.threshold, e.anomalous, e.boxes[0].region if e.boxes else "")
        lines.append(f"evidence      {words}")
        if e.defect_summary:  # Defect Classification: the product's confirmed defects (its defect library)
            lines.append(f"defects       {e.defect_summary}")
    if t.model_answer:
        lines.append(f"model answer  {t.model_answer} (the evidence answered instead)")
    if t.evidence_disagrees:
        lines.append("[bold red]DISAGREEMENT[/bold red]  the decision model's answer and the evidence disagree")
    if t.review:
        lines.append(f"[bold yellow]review[/bold yellow]        {t.review}: {t.review_reason} (`echo-iad review list`)")
    return lines


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@contextlib.contextmanager
def explained(address: str, application: str = "", files: Mapping[str, Path] | None = None) -> Iterator[None]:
    """A failed call inside becomes one line for a person (CliError): the address, the files behind fields."""
    import grpc

    from services.client.errors import CliError, explain_rpc_error

    try:
        yield
    except grpc.RpcError as e:
        raise CliError(explain_rpc_error(e, address, files, application=application)) from None


@contextlib.contextmanager
def inspector(server: str, application: str) -> Iterator[InspectorClient]:
    """A client of the Inspector whose failures come out as one line naming its address."""
    from services.client import InspectorClient

    with InspectorClient(server, application=application) as client, explained(client.address, application):
        yield client


def require_line(line: str | None, client: InspectorClient) -> str:
    """The --line given, or a one-line usage error listing the lines the server has."""
    import grpc

    from services.client.errors import CliError, ExitCode, Problem

    if line:
        return line
    try:
        lines = [f"{x.line_id} ({', '.join(f'{p.dataset}/{p.category}' for p in x.products)})"
                 for x in client.list_lines().lines]  # fmt: skip
        known = f"lines on {client.address}: {'; '.join(lines)}" if lines else f"{client.address} has no lines yet"
    except grpc.RpcError as e:
        known = f"the lines could not be listed ({e.code().name})"
    raise CliError(Problem("USAGE", "--line is required", f"{known}; name one with --line", ExitCode.USAGE))


@dataclass
class KnowledgeFile:
    """A product's knowledge YAML, checked against the schema and the product's flags."""

    path: Path
    entry: Entry

    @classmethod
    def load(cls, path: Path, *, dataset: str, category: str) -> KnowledgeFile:
        """Read and check the YAML; CliError names the file and the field, or both sides of a disagreement."""
        import yaml

        from services.client.errors import CliError
        from services.knowledge.entries import SchemaError, canonical_dataset, parse_entry

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise CliError.bad_input(f"knowledge file {path}: cannot be read: {e}") from None
        except yaml.YAMLError as e:
            raise CliError.bad_input(f"knowledge file {path}: not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise CliError.bad_input(
                f"knowledge file {path}: the top level must be a mapping", "see the schema in knowledge_base/README.md"
            )
        for key, flag, given, same in (
            ("category", "--category", category, lambda a, b: a == b),
            ("dataset", "--dataset", dataset, lambda a, b: canonical_dataset(a) == canonical_dataset(b)),
        ):
            if data.get(key) not in (None, "") and not same(str(data[key]), given):
                raise CliError.bad_input(
                    f"knowledge file {path} is for {key} {data[key]!r} but {flag} is {given!r}",
                    f"make them agree (edit the file's `{key}:` or change {flag})",
                )
            data.setdefault(key, given)
        try:
            return cls(path, parse_entry(data))
        except SchemaError as e:
            raise CliError.bad_input(
                f"knowledge file {path}: {e.field}: {e.problem}", "see the schema in knowledge_base/README.md"
            ) from None


def _bad_image(path: Path) -> str | None:
    """Why this file cannot be a normal image (unreadable, not an image), or None."""
    from services.common.errors import InvalidArgument
    from services.common.images import ImageLimits, check_header

    try:
        check_header(path.read_bytes(), ImageLimits(sys.maxsize, sys.maxsize), field="file")
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    except InvalidArgument as e:
        return str(e).removeprefix("file: ")
    return None


@dataclass
class AddReport:
    added: int = 0
    existing: int = 0
    skipped: dict[Path, str] = field(default_factory=dict)  # bad file -> why
    bank_images: int = 0  # the product's evidence bank after the last batch
    threshold: float = 0.0


def _add_images(
    client: InspectorClient, images: list[Path], *, line: str, dataset: str, category: str, batch: int, skip_bad: bool
) -> AddReport:
    """Send images in batches; a file the server refuses is skipped (skip_bad) or stops the run, named."""
    import grpc

    from services.client.errors import CliError, explain_rpc_error, refused_field
    from services.common.progress import progress_bar

    report = AddReport()
    with progress_bar(f"adding {len(images)} normal images", len(images)) as advance:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            while chunk:
                files = {f"images[{i}]": p for i, p in enumerate(chunk)}
                try:
                    resp = client.add_normal_images(line, category, chunk, dataset=dataset)
                except grpc.RpcError as e:
                    problem = explain_rpc_error(e, client.address, files)
                    bad = files.get(refused_field(e.details() or ""))
                    if bad is None or not skip_bad:
                        done = f" ({report.added} added before it)" if report.added else " (nothing was added)"
                        raise CliError(replace(problem, message=problem.message + done)) from None
                    report.skipped[bad] = problem.message.split(f"({bad}): ", 1)[-1]
                    chunk = [p for p in chunk if p != bad]
                    advance(1)
                    continue
                report.added += resp.added
                report.existing += resp.existing
                report.bank_images, report.threshold = resp.evidence_bank_images, resp.evidence_threshold
                advance(len(chunk))
                break
    return report


@product_app.command("add")
def product_add(
    category: Annotated[str, typer.Option(help="Product category name, e.g. 'brake_disc'.")],
    normal_dir: Annotated[
        Path,
        typer.Option(help="Folder of images of GOOD parts (searched recursively).", callback=existing, file_okay=False),
    ],
    line: Annotated[
        str | None, typer.Option(help="Production line id (required; without it the lines on the server are listed).")
    ] = None,
    knowledge: Annotated[
        Path | None,
        typer.Option(
            help="Knowledge YAML for this product (schema: knowledge_base/README.md); checked before anything is "
            "added, and its category/dataset must agree with the flags."
        ),
    ] = None,
    dataset: Annotated[str, typer.Option(help="Namespace for your own products.")] = "Custom",
    skip_bad: Annotated[
        bool,
        typer.Option(help="Skip images that cannot be read or that the server refuses, add the rest, and list them."),
    ] = False,
    server: Server = "127.0.0.1:50051",
    application: Application = "",
    batch: Annotated[int, typer.Option(min=1, help="Images per AddNormalImages call.")] = 16,
) -> None:
    """Send a product's normal images and its knowledge entry to the Inspector (AddNormalImages, PutKnowledge).

    Everything is checked first: the knowledge YAML against the schema and the flags, and every image file.
    A bad file is named; nothing is added unless --skip-bad, which adds the rest and lists what it skipped.
    """
    from services.client.errors import CliError
    from services.knowledge.servicer import entry_to_proto

    kb = KnowledgeFile.load(knowledge, dataset=dataset, category=category) if knowledge is not None else None
    images = _images_in(normal_dir)
    if not images:
        raise CliError.bad_input(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {normal_dir}")
    bad = {p: why for p in images if (why := _bad_image(p)) is not None}
    for p, why in bad.items():
        typer.echo(f"{'skipped' if skip_bad else 'bad file'} {p}: {why}", err=True)
    if bad and not skip_bad:
        raise CliError.bad_input(
            f"{len(bad)} of {len(images)} files under {normal_dir} are not usable images (listed above); "
            "nothing was added",
            "fix or remove them, or pass --skip-bad to add the others",
        )
    images = [p for p in images if p not in bad]
    if not images:
        raise CliError.bad_input(f"no usable images under {normal_dir} (all {len(bad)} were skipped)")
    with inspector(server, application) as client:
        line = require_line(line, client)
        if kb is not None:
            stored = client.put_knowledge(entry_to_proto(kb.entry))
            typer.echo(f"knowledge: {stored.id} stored (version {stored.version}) from {kb.path}")
        report = _add_images(
            client, images, line=line, dataset=dataset, category=category, batch=batch, skip_bad=skip_bad
        )
    for p, why in report.skipped.items():
        typer.echo(f"skipped {p}: {why}", err=True)
    skipped = len(bad) + len(report.skipped)
    typer.echo(
        f"memory: {report.added} added, {report.existing} already present for line={line} {dataset}/{category}"
        + (f"; {skipped} bad files skipped (listed above)" if skipped else "")
    )
    threshold = f", threshold {report.threshold:.4g}" if report.threshold else " (a threshold needs 2 images)"
    typer.echo(f"evidence bank: {report.bank_images} normal images{threshold}")


@product_app.command("check")
def product_check(
    category: Annotated[str, typer.Option(help="Product category name.")],
    line: Annotated[
        str | None, typer.Option(help="Production line id (required; without it the lines on the server are listed).")
    ] = None,
    dataset: Annotated[str, typer.Option(help="Namespace the product was added under.")] = "Custom",
    knowledge: Annotated[
        Path | None,
        typer.Option(
            help="The knowledge YAML given to `product add`: then NOT READY unless the server has that very entry."
        ),
    ] = None,
    server: Server = "127.0.0.1:50051",
    application: Application = "",
) -> None:
    """Is this product ready to inspect? Counts normal images, finds its knowledge, runs a test inspection.

    READY needs normal images, a test inspection with a reference and nothing degraded, and the knowledge
    entry when --knowledge names one (knowledge is optional otherwise). Exit code 1 when NOT READY.
    """
    import grpc

    from services.knowledge.entries import entry_from_fields
    from services.knowledge.servicer import fields_from_proto

    expected = KnowledgeFile.load(knowledge, dataset=dataset, category=category) if knowledge is not None else None
    ok = True
    with inspector(server, application) as client:
        line = require_line(line, client)
        listing = client.list_normal_images(line, category=category, dataset=dataset, limit=1)
        n = listing.total
        typer.echo(f"normal images   {n} {'(ready)' if n else '(none: run `echo-iad product add`)'}")
        ok &= n > 0
        try:
            found = client.get_knowledge(dataset, category)
            entry = entry_from_fields(fields_from_proto(found.entry)).with_version(found.entry.version)
            degraded = list(found.degraded)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            entry, degraded = None, [e.details()] if "degraded" in (e.details() or "") else []
        if degraded:
            typer.echo(f"knowledge       degraded: {'; '.join(degraded)}")
            ok = False
        if entry is None:
            needed = expected is not None
            typer.echo(
                f"knowledge       missing{f' (given in {expected.path})' if needed else ''}"
                + ("" if needed else " (optional; improves classification)")
            )
            ok &= not needed
        elif expected is not None and not entry.same_content(expected.entry):
            typer.echo(f"knowledge       {entry.id} version {entry.version} differs from {expected.path}: add it again")
            ok = False
        else:
            typer.echo(f"knowledge       present ({entry.id}, version {entry.version})")
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
            for d in t.degraded:
                typer.echo(f"  degraded: {d}")
            ok &= bool(t.references) and not t.degraded
        products = client.list_products(line, dataset=dataset, category=category).products
        if products and products[0].evidence_features:
            typer.echo(f"evidence        {products[0].evidence_features}")
    typer.echo("READY" if ok else "NOT READY")
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach the gateway's top-level commands to the main app."""
    from app.demo import demo

    app.command()(serve)
    app.command()(inspect)
    app.add_typer(product_app, name="product")
    app.command()(demo)
