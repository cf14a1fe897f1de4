"""`echo-iad knowledge ...`: read, check, import, export and hot-update the knowledge base.

Heavy imports (torch, sentence-transformers, grpc) happen inside the commands that need them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from app.commands import existing

app = typer.Typer(help="Read, import, export and hot-update the knowledge base.", no_args_is_help=True)

CONFIG_HELP = "YAML settings file (else $ECHO_IAD_CONFIG, else defaults)."
DIR_HELP = "Knowledge folder (default: knowledge.dir from the settings if it exists, else the shipped knowledge_base/)."
Config = Annotated[str | None, typer.Option(help=CONFIG_HELP)]
Directory = Annotated[str | None, typer.Option("--dir", help=DIR_HELP)]
ReadRedis = Annotated[str | None, typer.Option("--redis", help="Read from this Redis instead of the files.")]


def _settings(config: str | None):  # -> KnowledgeSettings
    from services.config import load_settings

    return load_settings(config)


def _root(directory: str | None, config: str | None) -> Path:
    from services.knowledge.entries import default_root

    if directory:
        return Path(directory)
    ks = _settings(config).knowledge
    root = Path(ks.dir).expanduser() if ks.dir else None
    # Before the first server start the folder is not seeded yet: read what it will be seeded from.
    return root if root is not None and root.is_dir() and any(root.iterdir()) else default_root()


def _entries(directory: str | None, redis_url: str | None, config: str | None):  # -> list[Entry]
    """The entries a read command lists, from Redis or the files; a store error is the command's one-line error."""
    from services.common.errors import EchoError
    from services.knowledge.stores import FileStore, redis_entries

    try:
        if redis_url:
            return redis_entries(redis_url, _settings(config).knowledge.redis_prefix)
        return FileStore(_root(directory, config)).entries()
    except EchoError as e:
        raise _fail(e) from None


def _fail(err: Exception) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=1)


@app.command("list")
def list_entries(
    dataset: str = typer.Option("", help="Only this dataset (MVTec, VisA, Synthetic, ...)."),
    directory: Directory = None,
    redis_url: ReadRedis = None,
    config: Config = None,
) -> None:
    """List the entries: id, version, defect types."""
    from services.knowledge.entries import canonical_dataset

    entries = _entries(directory, redis_url, config)
    for e in entries:
        if dataset and e.dataset != canonical_dataset(dataset):
            continue
        typer.echo(f"{e.id}\tv{e.version}\t{', '.join(d.name for d in e.defects)}")


@app.command()
def show(
    entry_id: str = typer.Argument(..., help="DATASET/CATEGORY, e.g. MVTec/bottle."),
    directory: Directory = None,
    redis_url: ReadRedis = None,
    config: Config = None,
) -> None:
    """Print one entry as YAML (the schema of knowledge_base/README.md)."""
    from services.knowledge.core import closest_ids
    from services.knowledge.entries import canonical_dataset

    dataset, _, category = entry_id.partition("/")
    entries = _entries(directory, redis_url, config)
    wanted = f"{canonical_dataset(dataset)}/{category}"
    entry = next((e for e in entries if e.id == wanted), None)
    if entry is None:
        close = closest_ids(entries, canonical_dataset(dataset), category)
        raise _fail(KeyError(f"unknown entry {wanted!r}; closest: {', '.join(close) or 'none'}"))
    typer.echo(entry.to_yaml().rstrip())


@app.command()
def validate(
    directory: Directory = None,
    config: Config = None,
) -> None:
    """Check every knowledge file against the schema; the first error names the file and the field."""
    from services.common.errors import ConfigError
    from services.knowledge.entries import load_dir

    root = _root(directory, config)
    try:
        entries = load_dir(root)
    except ConfigError as e:
        raise _fail(e) from None
    typer.echo(f"{len(entries)} entries in {root}: all valid")


@app.command()
def put(
    file: Path = typer.Argument(..., callback=existing, dir_okay=False, help="An entry in the schema's YAML."),
    redis_url: str | None = typer.Option(None, "--redis", help="Store it in this Redis (every replica sees it)."),
    server: str | None = typer.Option(
        None, help="Send it to a running knowledge stage (PutEntry), HOST:PORT (HOST alone: port 50051)."
    ),
    directory: str | None = typer.Option(None, "--dir", help="Write it into this knowledge folder."),
    config: Config = None,
) -> None:
    """Hot-update one entry: into Redis directly, through a server's PutEntry RPC, or into a knowledge folder."""
    from services.common.errors import ConfigError, EchoError
    from services.knowledge.entries import SchemaError, parse_entry, write_entry
    from services.knowledge.stores import redis_put

    if sum(x is not None for x in (redis_url, server, directory)) != 1:
        raise _fail(ValueError("give exactly one of --redis URL, --server HOST:PORT, --dir DIR"))
    import yaml

    try:
        entry = parse_entry(yaml.safe_load(file.read_text(encoding="utf-8")))
    except (SchemaError, yaml.YAMLError) as e:
        raise _fail(ConfigError(f"{file}: {e}")) from None
    try:
        if redis_url:
            version = redis_put(redis_url, entry, _settings(config).knowledge.redis_prefix)
        elif server:
            version = _put_rpc(server, entry)
        else:
            path = write_entry(Path(directory or "."), entry)
            typer.echo(f"{entry.id} written to {path}")
            return
    except EchoError as e:
        raise _fail(e) from None
    typer.echo(f"{entry.id} stored, version {version}")


def _put_rpc(address: str, entry) -> int:  # entry: Entry
    from echo.v1 import knowledge_pb2
    from services.client.client import with_default_port
    from services.common.stage_client import Deadline, StageEndpoint, connect_stage
    from services.knowledge.servicer import entry_to_proto

    async def put() -> int:  # not retried: each put makes a new version
        client = connect_stage("knowledge", with_default_port(address), StageEndpoint(timeout_share=1.0, retries=0))
        try:
            request = knowledge_pb2.PutEntryRequest(entry=entry_to_proto(entry))
            return int((await client.call("PutEntry", request, Deadline.after_ms(10_000))).version)
        finally:
            await client.close()

    return asyncio.run(put())


@app.command("import-mmad")
def import_mmad(
    file: Path = typer.Argument(..., callback=existing, dir_okay=False, help="An MMAD domain_knowledge.json."),
    out: Path = typer.Option(..., help="Knowledge folder to write <Dataset>/<category>.yaml into."),
    overwrite: bool = typer.Option(False, help="Replace files that already exist."),
) -> None:
    """Convert MMAD's domain_knowledge.json into our schema (fields MMAD lacks become "unspecified")."""
    from services.common.errors import EchoError
    from services.knowledge.entries import entry_path, write_entry
    from services.knowledge.mmad_format import load_mmad

    try:
        entries = load_mmad(file)
    except EchoError as e:
        raise _fail(e) from None
    written = skipped = 0
    for entry in entries:
        if entry_path(out, entry).exists() and not overwrite:
            skipped += 1
            continue
        write_entry(out, entry)
        written += 1
    typer.echo(f"{written} entries written to {out}" + (f", {skipped} existing kept (--overwrite)" if skipped else ""))


@app.command("export-mmad")
def export_mmad(
    out: Path = typer.Option(..., help="The domain_knowledge.json to write."),
    directory: Directory = None,
    redis_url: str | None = typer.Option(None, "--redis", help="Export what this Redis holds instead."),
    config: Config = None,
) -> None:
    """Write the knowledge base in MMAD's domain_knowledge.json format."""
    from services.knowledge.mmad_format import export_mmad as export

    entries = _entries(directory, redis_url, config)
    out.write_text(json.dumps(export(entries), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"{len(entries)} entries exported to {out}")


@app.command("refine")
def refine(
    data: Path = typer.Option(..., "--data", callback=existing, file_okay=False, help="MMAD-format dataset folder."),
    server: str | None = typer.Option(
        None,
        help="A running server (HOST:PORT): its Knowledge stage refines through its decision stage and keeps the "
        "cache. Omit to start the embedded server here, from --config (one port: knowledge calls decision).",
    ),
    application: str = typer.Option("", help="Ray Serve application of the Knowledge stage (cluster: knowledge)."),
    types: str = typer.Option(
        "", help="Comma-separated question types to refine for (default: those the expert map gives knowledge)."
    ),
    concurrency: int = typer.Option(2, min=1, help="Refinements in flight at once."),
    config: Config = None,
) -> None:
    """Precompute LLM-refined CSK for a dataset: one refinement per (category, question type, option set).

    The paper extracts context-specific knowledge with an LLM and reviews it by hand. This fills the refinement
    cache (knowledge.refine_cache) through the decision stage's model; then `refine-export`, edit, `refine-import`,
    and run with gateway.refine_knowledge on. Texts already cached (or reviewed) are not refined again.
    """
    import asyncio

    from services.common.errors import EchoError
    from services.mmad.loader import load_dataset
    from services.mmad.types import canonical_type

    settings = _settings(config)
    if types:
        wanted = [canonical_type(t) for t in types.split(",") if t.strip()]
        if None in wanted:
            raise _fail(ValueError(f"--types {types!r}: use MMAD question types, e.g. 'Defect Classification'"))
    else:
        wanted = [t for t, experts in settings.gateway.expert_map.items() if "knowledge" in experts]
    try:
        dataset = load_dataset(data)
        summary = asyncio.run(
            refine_dataset(
                dataset,
                [t for t in wanted if t],
                settings,
                address=server,
                application=application,
                concurrency=concurrency,
            )
        )
    except EchoError as e:
        raise _fail(e) from None
    typer.echo(summary.line())
    if summary.failed and not (summary.refined or summary.reviewed):
        raise typer.Exit(code=1)


@dataclass
class RefineSummary:
    keys: int = 0
    refined: int = 0  # served the model's text (refined now, or cached before)
    reviewed: int = 0  # served a human's text (refine-import)
    failed: int = 0
    cache: str = ""
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"{self.keys} (category, question type, option set) keys: {self.refined} refined by the model, "
            f"{self.reviewed} reviewed, {self.failed} failed; cache: {self.cache}"
        )
        return text + (f"\nfirst failure: {self.errors[0]}" if self.errors else "")


async def refine_dataset(
    dataset,  # MMADDataset
    types: list[str],
    settings,  # EchoSettings
    *,
    address: str | None = None,
    application: str = "",
    concurrency: int = 2,
) -> RefineSummary:
    """Ask the Knowledge stage for refined CSK once per distinct key of the dataset's questions of these types."""
    from rich.progress import Progress

    from echo.v1 import common_pb2, knowledge_pb2
    from services.common.enums import QUESTION_TYPE_ENUM
    from services.common.stage_client import Deadline, StageCallError, StageEndpoint, connect_stage
    from services.knowledge.refine import RefineKey

    todo: dict[RefineKey, tuple[str, str, str, dict[str, str]]] = {}
    for sample, q in dataset.questions():
        if q.type in types:
            key = RefineKey.of(sample.dataset, sample.category, q.type, list(q.options.values()))
            todo.setdefault(key, (sample.dataset, sample.category, q.text, q.options))
    summary = RefineSummary(keys=len(todo), cache=settings.knowledge.refine_cache if address is None else "(server)")
    embedded = None
    if address is None:
        from app.embedded import start_embedded

        embedded = await start_embedded(
            settings.model_copy(update={"server": settings.server.model_copy(update={"port": 0})})
        )
        address = embedded.address
    client = connect_stage("knowledge", address, StageEndpoint(application=application, timeout_share=1.0))
    gate = asyncio.Semaphore(concurrency)
    try:
        with Progress() as bar:
            task = bar.add_task("refining CSK", total=len(todo))

            async def one(key: RefineKey, ds: str, cat: str, text: str, options: dict[str, str]) -> None:
                question = common_pb2.Question(text=text, options=options, type=QUESTION_TYPE_ENUM[key.question_type])
                request = knowledge_pb2.GetContextRequest(
                    dataset=ds, category=cat, question=question, mode=common_pb2.CONTEXT_SPECIFIC, refine=True
                )
                degraded: list[str] = []
                async with gate:
                    try:
                        deadline = Deadline.after_ms((settings.knowledge.refine_timeout_s + 30) * 1000)
                        resp = await client.call("GetContext", request, deadline, degraded=degraded)
                    except StageCallError as e:
                        summary.failed += 1
                        summary.errors.append(f"{ds}/{cat} {key.question_type}: {e.code.name}: {e.details}")
                        return
                    finally:
                        bar.advance(task)
                if resp.refined == "reviewed":
                    summary.reviewed += 1
                elif resp.refined:
                    summary.refined += 1
                else:
                    summary.failed += 1
                    why = degraded[0].removeprefix("knowledge: ") if degraded else "not refined"
                    summary.errors.append(f"{ds}/{cat}: {why}")

            await asyncio.gather(*(one(k, *v) for k, v in todo.items()))
    finally:
        await client.close()
        if embedded is not None:
            await embedded.stop(grace=1.0)
    return summary


@app.command("refine-export")
def refine_export(
    file: Path = typer.Argument(..., dir_okay=False, help="Where to write the texts for review (JSON)."),
    cache: str | None = typer.Option(None, help="The refinement cache (default: knowledge.refine_cache)."),
    unreviewed: bool = typer.Option(False, help="Only the texts nobody has reviewed yet."),
    config: Config = None,
) -> None:
    """Export the LLM-refined knowledge for human review (edit 'refined', set 'reviewed': true)."""
    from services.knowledge.refine import RefineCache

    n = RefineCache(cache or _settings(config).knowledge.refine_cache).export(file, only_unreviewed=unreviewed)
    typer.echo(f"{n} refined texts written to {file}")


@app.command("refine-import")
def refine_import(
    file: Path = typer.Argument(..., callback=existing, dir_okay=False, help="A reviewed export (JSON)."),
    cache: str | None = typer.Option(None, help="The refinement cache (default: knowledge.refine_cache)."),
    config: Config = None,
) -> None:
    """Import reviewed texts; they are served instead of the model's and never overwritten by it."""
    from services.common.errors import EchoError
    from services.knowledge.refine import RefineCache

    path = cache or _settings(config).knowledge.refine_cache
    try:
        n = RefineCache(path).import_reviewed(file)
    except (EchoError, json.JSONDecodeError) as e:
        raise _fail(e) from None
    typer.echo(f"{n} reviewed texts imported into {path}")


@app.command()
def context(
    entry_id: str = typer.Argument(..., help="DATASET/CATEGORY, e.g. Synthetic/round_part."),
    question: str = typer.Option(..., help="The question text."),
    option: list[str] = typer.Option([], help="An option as LETTER=TEXT; repeat for each."),
    question_type: str = typer.Option("", "--type", help="e.g. 'Defect Classification'; empty: guessed."),
    mode: str = typer.Option("csk", help="none, dk or csk."),
    budget: int = typer.Option(0, help="CSK token budget; 0: knowledge.token_budget."),
    directory: Directory = None,
    config: Config = None,
) -> None:
    """Show the knowledge a question would get, and the passages it came from (loads MiniLM: seconds)."""
    import asyncio

    from services.common.errors import EchoError
    from services.knowledge.core import ContextRequest, KnowledgeGuide

    ks = _settings(config).knowledge
    if directory:
        ks = ks.model_copy(update={"dir": directory})
    options = {}
    for o in option:
        letter, sep, text = o.partition("=")
        if not sep:
            raise _fail(ValueError(f"--option {o!r}: expected LETTER=TEXT"))
        options[letter.strip()] = text.strip()
    dataset, _, category = entry_id.partition("/")
    try:
        guide = KnowledgeGuide.from_settings(ks.model_copy(update={"store": "files"}))
        req = ContextRequest(dataset, category, question, options, question_type, mode, budget)
        res = asyncio.run(guide.get_context(req))
    except EchoError as e:
        raise _fail(e) from None
    typer.echo(res.text)
    typer.echo(f"\n# mode {res.mode}, type {res.question_type or '-'}, defects {', '.join(res.defects) or '-'}")
    for p in res.passages:
        typer.echo(f"#   {p.score:+.3f} {p.id}")
