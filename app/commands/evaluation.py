"""`echo-iad eval`: run MMAD-format evaluations, ablation grids, reports and comparisons.

    echo-iad eval --data DIR [--server ADDR | --embedded] [--concurrency N] [--out RUN_DIR]
    echo-iad eval --data DIR --protocol product      # the product default: the visual evidence expert on
    echo-iad eval ablate --data DIR --grid experts,shots,format,knowledge,evidence --out GRID_DIR
    echo-iad eval report RUN_DIR
    echo-iad eval compare RUN_A RUN_B

Every run folder is resumable: rerun the same command and answered questions are skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

app = typer.Typer(
    help=(
        "Run MMAD evaluations, ablations and comparisons.\n\n"
        "`echo-iad eval --data DIR` answers every question of an MMAD-format dataset and prints the paper's "
        "tables; rerunning resumes. It runs the paper's protocol (no visual evidence expert) unless "
        "`--protocol product` selects the product default (evidence on: the report adds image AUROC, pixel AUROC "
        "and AUPRO). Subcommands: run (the same), ablate, report, compare."
    ),
    no_args_is_help=True,
    invoke_without_command=True,
)

Data = Annotated[
    Path | None,
    typer.Option("--data", "-d", help="MMAD-format dataset folder (holds mmad.json).", file_okay=False),
]
ServerOpt = Annotated[
    str | None, typer.Option("--server", "-s", help="Inspector address host:port. Omit to run the embedded server.")
]
Embedded = Annotated[
    bool, typer.Option("--embedded", help="Start every service in this process (the default when --server is unset).")
]
Config = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML settings for the embedded server (env ECHO_IAD_CONFIG).")
]
Backend = Annotated[
    str | None,
    typer.Option(
        help=(
            "Embedded only: decision backend (transformers, openai, vllm, random, oracle). random and oracle are "
            "baselines that check the harness; oracle reads --data's answers."
        )
    ),
]
Concurrency = Annotated[int, typer.Option("--concurrency", "-j", min=1, help="Requests in flight at once.")]
Out = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Run folder (default ./echo-data/eval/<dataset folder>/<cell>); reruns resume."),
]
Line = Annotated[str, typer.Option("--line", help="Line id (tenant) whose memory the questions use.")]
PlanTypes = Annotated[
    bool, typer.Option("--plan-types", help="Send no question type: let the gateway's planner classify each question.")
]
Reference = Annotated[str | None, typer.Option(help="Reference mode: 0-shot, 1-shot, 1-shot* or k-shot.")]
KShots = Annotated[int, typer.Option(min=0, help="References for k-shot.")]
KnowledgeMode = Annotated[str | None, typer.Option(help="Knowledge mode: none, dk or csk.")]
KnowledgeSource = Annotated[
    str,
    typer.Option(
        "--knowledge",
        help=(
            "Embedded only: whose knowledge the Knowledge Guide serves. ours: the shipped knowledge_base/ (the "
            "product default); mmad: MMAD's own domain_knowledge.json from --data, imported, so DK/CSK comparisons "
            "match the paper."
        ),
    ),
]
Protocol = Annotated[
    str,
    typer.Option(
        help=(
            "Embedded only. paper (the default here): the protocol the Echo paper measured (MMAD's prompt and "
            "pixel budget, the paper's expert map), so no visual evidence expert. product: what `echo-iad serve` "
            "runs, with the visual evidence expert on (the report then adds image AUROC, pixel AUROC and AUPRO "
            "per category). A --config file's own values win."
        )
    ),
]
Datasets = Annotated[
    str,
    typer.Option(
        help="Table 1's datasets, comma-separated (default: the paper's MVTec-AD and VisA when answered; 'all')."
    ),
]
Format = Annotated[str | None, typer.Option("--format", help="Answer format: mc, open or tf.")]
Experts = Annotated[
    str,
    typer.Option(
        help="Force experts on/off, e.g. 'reference=off,evidence=on' (reference, knowledge, reasoning, evidence; "
        "default: the planner's map)."
    ),
]
Heatmaps = Annotated[
    bool,
    typer.Option(
        help="Ask for the evidence heat map on one question per image (kept in RUN_DIR/heatmaps/) for pixel AUROC "
        "and AUPRO; harmless where the evidence expert does not run."
    ),
]
Name = Annotated[
    str | None,
    typer.Option(
        help="Cell name recorded with every answer (default: from the settings, e.g. full, 0-shot_format-tf)."
    ),
]
Limit = Annotated[int, typer.Option(min=0, help="Answer only the first N questions (0: all).")]
Timeout = Annotated[float, typer.Option(help="Per-request deadline in seconds.")]
MaxQps = Annotated[float, typer.Option(help="Start at most this many requests per second (0: no limit).")]
Seed = Annotated[int, typer.Option(help="Request seed (the 1-shot random reference).")]
MaxErrors = Annotated[int, typer.Option(help="Stop after this many failed requests (a rerun retries them).")]
BuildMemory = Annotated[
    bool,
    typer.Option(help="Give categories with an empty memory the dataset's normal templates before asking."),
]
ShowCategories = Annotated[bool, typer.Option(help="Print the per-category table too.")]


def _console() -> Any:
    """Progress and messages: stderr."""
    from rich.console import Console

    return Console(stderr=True)


def _out() -> Any:
    """Tables: stdout, wide enough for MMAD's seven-type table when it goes to a file or a pipe."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=220)


def _load_dataset(data: Path) -> Any:
    from services.common.errors import EchoError
    from services.mmad.loader import load_dataset

    try:
        return load_dataset(data)
    except EchoError as e:
        raise typer.BadParameter(str(e), param_hint="--data") from None


def _settings(
    config: Path | None, backend: str | None, data: Path, protocol: str = "paper", knowledge: str = "ours"
) -> Any:
    """Embedded-server settings: the protocol's preset under the config file, a free port, the backend override
    (oracle reads --data) and the knowledge source (mmad: --data's domain_knowledge.json, imported)."""
    from services.common.errors import ConfigError
    from services.config import load_settings

    if knowledge not in ("ours", "mmad"):
        raise typer.BadParameter(f"{knowledge!r}: ours or mmad", param_hint="--knowledge")
    overrides: dict[str, Any] = {"server": {"port": 0}, "protocol": protocol}
    if backend:
        overrides["decision"] = {"backend": backend}
    try:
        settings = load_settings(config, **overrides)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--backend/--protocol") from None
    if settings.decision.backend == "oracle" and not settings.decision.oracle_data:
        settings.decision.oracle_data = str(data.resolve())
    if knowledge == "mmad":
        settings.knowledge.dir = _mmad_knowledge(data, Path(settings.data_dir))
    return settings


def _mmad_knowledge(data: Path, data_dir: Path) -> str:
    """MMAD's domain_knowledge.json imported into a knowledge folder of its own (once per file content)."""
    import hashlib
    import shutil
    import tempfile

    from services.common.errors import EchoError
    from services.knowledge.entries import write_entry
    from services.knowledge.mmad_format import load_mmad
    from services.mmad.loader import DOMAIN_KNOWLEDGE_JSON

    src = data / DOMAIN_KNOWLEDGE_JSON
    if not src.is_file():
        raise typer.BadParameter(f"{src} does not exist: MMAD ships it beside mmad.json", param_hint="--knowledge mmad")
    out = data_dir / "knowledge-mmad" / hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    if not out.is_dir():
        try:
            entries = load_mmad(src)
        except EchoError as e:
            raise typer.BadParameter(str(e), param_hint="--knowledge mmad") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=out.parent))
        for entry in entries:
            write_entry(tmp, entry)
        if out.is_dir():  # another run imported it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)
    return str(out)


def _datasets(raw: str) -> list[str] | None:
    return [d.strip() for d in raw.split(",") if d.strip()] or None


def _options(**kw: Any) -> Any:
    from services.evaluation.runner import RunOptions

    return RunOptions(**kw)


def _run(coro: Any, console: Any) -> Any:
    """Run the evaluation coroutine; expected failures become one red line and exit code 1, not a traceback."""
    import grpc

    from services.common.errors import EchoError
    from services.evaluation.runner import TooManyErrors

    try:
        return asyncio.run(coro)
    except (EchoError, ConnectionError, TooManyErrors) as e:
        console.print(f"[red]{e}[/red]", highlight=False)
    except grpc.aio.AioRpcError as e:
        console.print(f"[red]{e.code().name}: {e.details()}[/red]", highlight=False)
    raise typer.Exit(1)


def _target(server: str | None, embedded: bool) -> str | None:
    if server and embedded:
        raise typer.BadParameter("choose --server ADDR or --embedded, not both")
    return server


def _cell(
    name: str | None, experts: str, reference: str | None, k_shots: int, knowledge: str | None, fmt: str | None
) -> Any:
    from dataclasses import replace

    from services.evaluation.cells import Cell, parse_experts

    try:
        cell = Cell(
            experts=parse_experts(experts),
            reference_mode=reference,
            k_shots=k_shots,
            answer_format=fmt,
            knowledge_mode=knowledge,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return replace(cell, name=name or cell.slug())


@dataclass
class EvalOptions:
    """Every option of `echo-iad eval` and `echo-iad eval run`: one model, so the two cannot drift apart."""

    data: Data = None
    server: ServerOpt = None
    embedded: Embedded = False
    config: Config = None
    backend: Backend = None
    concurrency: Concurrency = 4
    out: Out = None
    line: Line = "eval"
    plan_types: PlanTypes = False
    reference: Reference = None
    k_shots: KShots = 0
    knowledge_mode: KnowledgeMode = None
    knowledge: KnowledgeSource = "ours"
    protocol: Protocol = "paper"
    datasets: Datasets = ""
    answer_format: Format = None
    experts: Experts = ""
    name: Name = None
    limit: Limit = 0
    timeout_s: Timeout = 120.0
    max_qps: MaxQps = 0.0
    seed: Seed = 0
    max_errors: MaxErrors = 20
    build_memory: BuildMemory = True
    heatmaps: Heatmaps = True
    show_categories: ShowCategories = True


def eval_options(*required: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a typer command every EvalOptions field as an option (`required` ones without a default); the
    command receives them as one `opts: EvalOptions`."""
    return functools.partial(_with_eval_options, required=frozenset(required))


def _with_eval_options(command: Callable[..., None], required: frozenset[str]) -> Callable[..., None]:
    option_fields = dataclasses.fields(EvalOptions)
    hints = get_type_hints(EvalOptions, include_extras=True)
    own_hints = get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=own_hints.get(p.name, p.annotation))
        for p in inspect.signature(command).parameters.values()
        if p.name != "opts"
    ]
    params = own + [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if f.name in required else f.default,
            annotation=hints[f.name],
        )
        for f in option_fields
    ]

    @functools.wraps(command)
    def with_options(*args: Any, **kwargs: Any) -> None:
        opts = EvalOptions(**{f.name: kwargs.pop(f.name) for f in option_fields})
        command(*args, opts=opts, **kwargs)

    with_options.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in params}
    return with_options


def run_eval(opts: EvalOptions) -> Path:
    """The body of `echo-iad eval` / `echo-iad eval run`; returns the run folder."""

    from app.embedded import start_embedded
    from services.evaluation.report import print_report, report_run
    from services.evaluation.runner import evaluate

    if opts.data is None:
        raise typer.BadParameter("--data DIR is required (an MMAD-format folder with mmad.json)")
    data = opts.data
    address = _target(opts.server, opts.embedded)
    console = _console()
    dataset = _load_dataset(data)
    cell = _cell(opts.name, opts.experts, opts.reference, opts.k_shots, opts.knowledge_mode, opts.answer_format)
    run_dir = opts.out or Path("echo-data/eval") / data.resolve().name / cell.name
    run_opts = _options(
        line_id=opts.line,
        concurrency=opts.concurrency,
        plan_types=opts.plan_types,
        timeout_s=opts.timeout_s,
        max_qps=opts.max_qps,
        seed=opts.seed,
        limit=opts.limit,
        max_errors=opts.max_errors,
        heatmaps=opts.heatmaps,
    )
    if opts.backend and address is not None:
        raise typer.BadParameter("--backend configures the embedded server; with --server the server's own applies")
    if opts.knowledge != "ours" and address is not None:
        raise typer.BadParameter("--knowledge configures the embedded server; load it into yours with import-mmad")
    settings = _settings(opts.config, opts.backend, data, opts.protocol, opts.knowledge) if address is None else None
    datasets = _datasets(opts.datasets)
    meta = {"knowledge_source": opts.knowledge, **({"table1_datasets": datasets} if datasets else {})}
    (result,) = _run(
        evaluate(
            dataset,
            [(cell, run_dir)],
            run_opts,
            address=address,
            settings=settings,
            start_embedded=start_embedded,
            build_memory=opts.build_memory,
            console=console,
            meta=meta,
        ),
        console,
    )
    console.print(
        f"{run_dir}: {result.answered} answered now, {result.skipped} already answered, "
        f"{result.errors} failed, {result.wall_s:.1f} s",
        highlight=False,
    )
    rep = report_run(run_dir, write=True, datasets=datasets)
    print_report(rep, _out(), per_category=opts.show_categories)
    if result.errors:
        console.print(f"[yellow]{result.errors} requests failed (see {run_dir / 'errors.jsonl'}); rerun to retry[/]")
        raise typer.Exit(1)
    return run_dir


@app.callback()
@eval_options()
def main(ctx: typer.Context, opts: EvalOptions) -> None:
    """Answer every question of an MMAD-format dataset through the Inspector and print the paper's tables.

    Answers go to RUN_DIR/answers.jsonl with their full traces, one durable line each; rerunning the same
    command skips answered questions, so a killed run resumes. The report (Table 1 layout, MMAD's seven
    types with overkill and miss rates, per category, latency) is printed and written as report.md,
    report.csv, per_category.csv and chart.png.

    The embedded server runs the paper's protocol by default (no visual evidence expert), so the figures
    compare with the Echo paper's; `--protocol product` runs the product default instead (what `echo-iad
    serve` runs, evidence on), and the report adds the evidence's image AUROC, pixel AUROC and AUPRO per
    category (evidence.csv).
    """
    if ctx.invoked_subcommand is not None:
        if opts.data is not None:
            raise typer.BadParameter("--data goes after the subcommand, e.g. `echo-iad eval ablate --data DIR`")
        return
    run_eval(opts)


@app.command("run")
@eval_options("data")
def run_command(opts: EvalOptions) -> None:
    """The same as `echo-iad eval --data DIR ...` (an explicit name for scripts)."""
    run_eval(opts)


@app.command("ablate")
def ablate_command(
    data: Annotated[Path, typer.Option("--data", "-d", help="MMAD-format dataset folder.", file_okay=False)],
    grid: Annotated[
        str,
        typer.Option(
            help="Comma-separated axes, named as in the paper: baseline (Table 1), knowledge (Table 2: DK vs CSK), "
            "experts (Table 3), references (Table 4), format (Fig. 5), shots (Fig. 6); and ours: evidence (the "
            "visual evidence expert off and on, with its image AUROC, pixel AUROC and AUPRO)."
        ),
    ] = "baseline,knowledge,experts,references,format,shots,evidence",
    server: ServerOpt = None,
    embedded: Embedded = False,
    config: Config = None,
    backend: Backend = None,
    concurrency: Concurrency = 4,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Grid folder (default ./echo-data/ablate/<dataset folder>).")
    ] = None,
    line: Line = "eval",
    plan_types: PlanTypes = False,
    limit: Limit = 0,
    timeout_s: Timeout = 120.0,
    max_qps: MaxQps = 0.0,
    seed: Seed = 0,
    max_errors: MaxErrors = 20,
    build_memory: BuildMemory = True,
    heatmaps: Heatmaps = True,
    protocol: Protocol = "paper",
    knowledge: KnowledgeSource = "ours",
    datasets: Datasets = "",
) -> None:
    """Run the paper's ablations as one grid (each distinct setting once, resumable) and print them under the
    paper's names: Tables 1-4, Fig. 5 and Fig. 6. Settings equal to the default (Echo, multiple choice, CSK,
    1-shot*) share one run; the baseline and Table 4's 1-shot use MMAD's random_templates[0].
    """

    from app.embedded import start_embedded
    from services.evaluation.ablation import run_grid
    from services.evaluation.cells import grid_cells

    address = _target(server, embedded)
    if backend and address is not None:
        raise typer.BadParameter("--backend configures the embedded server; with --server the server's own applies")
    axes = [a.strip() for a in grid.split(",") if a.strip()]
    try:
        grid_cells(axes)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--grid") from None
    console = _console()
    dataset = _load_dataset(data)
    grid_dir = out or Path("echo-data/ablate") / data.resolve().name
    opts = _options(
        line_id=line,
        concurrency=concurrency,
        plan_types=plan_types,
        timeout_s=timeout_s,
        max_qps=max_qps,
        seed=seed,
        limit=limit,
        max_errors=max_errors,
        heatmaps=heatmaps,
    )
    if knowledge != "ours" and address is not None:
        raise typer.BadParameter("--knowledge configures the embedded server; load it into yours with import-mmad")
    settings = _settings(config, backend, data, protocol, knowledge) if address is None else None
    tables = _run(
        run_grid(
            dataset,
            grid_dir,
            axes,
            opts,
            address=address,
            settings=settings,
            start_embedded=start_embedded,
            build_memory=build_memory,
            console=console,
            datasets=_datasets(datasets),
            meta={"knowledge_source": knowledge},
        ),
        console,
    )
    out_console = _out()
    for t in tables.values():
        out_console.print(t.to_rich())
    console.print(
        f"grid written to {grid_dir} (ablation.md, ablation_<axis>.csv, shots.png for Fig. 6, one folder per cell)"
    )


@app.command("report")
def report_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder (answers.jsonl) or an ablation grid folder (grid.json).")
    ],
    show_categories: ShowCategories = True,
    write: Annotated[bool, typer.Option(help="Also (re)write report.md, CSVs and the chart.")] = True,
    datasets: Datasets = "",
) -> None:
    """Print (and rewrite) the report of a run or a grid from its answers on disk; safe while a run is going."""

    from services.evaluation.ablation import GRID_FILE, grid_tables, write_grid_report
    from services.evaluation.report import print_report, report_run

    console = _out()
    if (run_dir / GRID_FILE).exists():
        tables = grid_tables(run_dir, _datasets(datasets))
        if write:
            write_grid_report(run_dir, tables)
        for t in tables.values():
            console.print(t.to_rich())
        return
    if not (run_dir / "answers.jsonl").exists():
        raise typer.BadParameter(f"{run_dir}: no answers.jsonl or grid.json here")
    rep = report_run(run_dir, write=write, datasets=_datasets(datasets))
    print_report(rep, console, per_category=show_categories)


@app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="Run folder A (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="Run folder B (the candidate).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the table here (.md or .csv).")] = None,
) -> None:
    """Per (dataset, type): accuracy of A and B on the questions both answered, B - A, and McNemar's p-value."""

    from services.evaluation.compare import compare_runs

    try:
        comparison = compare_runs(run_a, run_b)
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e)) from None
    _out().print(comparison.table.to_rich())
    if out is not None:
        if out.suffix == ".csv":
            comparison.table.write_csv(out)
        else:
            out.write_text(comparison.table.to_markdown(), encoding="utf-8")


if __name__ == "__main__":
    app()
