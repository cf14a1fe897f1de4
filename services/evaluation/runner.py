"""Run every question of an MMAD-format dataset through the Inspector, durably and resumably.

One run is a folder: `answers.jsonl` (one line per answered question, with its
trace), `errors.jsonl` (questions that failed; a rerun retries them) and
`run.json` (dataset, settings, models, sessions). Rerunning the same command
skips the ids already answered, so a killed run resumes where it stopped.

`evaluate()` is the whole flow: refuse settings that cannot answer the dataset,
connect (or start the embedded server), make sure the memory holds each
category's normal templates, then run each cell. A transient failure (a stage
restarting, a deadline under load, the server shedding load) is retried with
backoff; a question that still fails is recorded in errors.jsonl and the run
goes on, up to its failure budget (max_errors).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict

from services.client import AsyncInspectorClient, build_inspect_request
from services.common.errors import FailedPrecondition, task_group_error
from services.evaluation.answers import RUN_FILE, AnswerLog, append_error, read_answers
from services.evaluation.cells import Cell
from services.mmad.loader import MMADDataset
from services.mmad.scoring import Graded
from services.mmad.types import ANOMALY_DETECTION, QUESTION_TYPES, Question, Sample

T = TypeVar("T")

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
MAX_BACKOFF_S = 30.0


async def with_retries(call: Callable[[], Awaitable[T]], retries: int, backoff_s: float) -> T:
    """`call()`, tried again on a transient status (RETRYABLE) at most `retries` more times, waiting a jittered
    backoff_s, 2 x backoff_s, ... (at most MAX_BACKOFF_S) between tries; any other status is raised at once."""
    attempt = 0
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() not in RETRYABLE or attempt >= retries:
                raise
        attempt += 1
        await asyncio.sleep(random.uniform(0.5, 1.0) * min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))


@dataclass
class RunOptions:
    """How questions are sent.

    Attributes:
        line_id: the line (tenant) whose memory the questions use.
        concurrency: requests in flight at once.
        plan_types: send no question type, so the gateway's planner classifies each question.
        timeout_s: per-request deadline.
        max_qps: at most this many requests started per second (0: unlimited), to spare a shared server.
        seed: RequestSettings.seed (the 1-shot random reference's seed).
        limit: answer only the first N questions of the dataset (0: all), for quick checks.
        max_errors: the failure budget: stop the run after this many questions failed past their retries (they
            are logged in errors.jsonl and retried by a rerun).
        retries: tries again of a request that failed with UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED.
        backoff_s: the wait before the first retry; it doubles (jittered) for each next one.
        return_prompt: ask for the exact decision prompt in every trace (large).
        heatmaps: ask for the evidence heat map on one question per image (see heatmap_questions); each is
            kept as RUN_DIR/heatmaps/<image>.png for pixel AUROC and AUPRO, not inside answers.jsonl.
    """

    line_id: str = "eval"
    concurrency: int = 4
    plan_types: bool = False
    timeout_s: float = 120.0
    max_qps: float = 0.0
    seed: int = 0
    limit: int = 0
    max_errors: int = 20
    retries: int = 4
    backoff_s: float = 1.0
    return_prompt: bool = False
    heatmaps: bool = True


HEATMAP_DIR = "heatmaps"


@dataclass
class RunResult:
    """What one session of one cell did."""

    run_dir: Path
    cell: Cell
    total: int  # questions in scope
    skipped: int  # already answered before this session
    answered: int  # answered in this session
    errors: int
    wall_s: float
    error_messages: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.skipped + self.answered >= self.total


class TooManyErrors(RuntimeError):
    """The run stopped because requests kept failing; everything answered so far is kept."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def questions_in_scope(dataset: MMADDataset, limit: int = 0) -> list[tuple[Sample, Question]]:
    items = list(dataset.questions())
    return items[:limit] if limit > 0 else items


def heatmap_questions(dataset: MMADDataset) -> set[str]:
    """The one question per image that asks for the evidence heat map: its first Anomaly Detection question
    (where the product protocol runs the evidence expert), else its first question."""
    ids = set()
    for sample in dataset.samples:
        ad = [q for q in sample.questions if q.type == ANOMALY_DETECTION]
        first = (ad or sample.questions)[:1]
        ids.update(q.id for q in first)
    return ids


def build_request(
    sample: Sample,
    question: Question,
    image: bytes,
    cell: Cell,
    opts: RunOptions,
    references: Sequence[bytes] = (),
    *,
    heatmap: bool = False,
) -> Any:
    """The InspectRequest for one question under one cell (question type from the dataset unless plan_types).

    `references`: the normal images a template cell sends (MMAD's 1-shot protocol: random_templates[0]).
    `heatmap`: ask for the evidence heat map (RequestSettings.return_heatmap).
    """
    qtype = None if opts.plan_types or question.type not in QUESTION_TYPES else question.type
    return build_inspect_request(
        image,
        question.text,
        question.options,
        line_id=opts.line_id,
        dataset=sample.dataset,
        category=sample.category,
        question_type=qtype,
        seed=opts.seed,
        return_prompt=opts.return_prompt,
        deadline_ms=opts.timeout_s * 1000.0,
        references=list(references),
        return_heatmap=heatmap,
        **cell.request_kwargs(),
    )


def heatmap_name(image_path: str) -> str:
    """The heat map's file name for a dataset-relative image path (readable and unique: folders become __)."""
    return image_path.replace("/", "__").rsplit(".", 1)[0] + ".png"


def keep_heatmap(run_dir: Path, sample: Sample, resp: Any) -> str | None:
    """Move the trace's heat map to RUN_DIR/heatmaps/ (atomically, before its answer is logged) and drop the
    overlay, so answers.jsonl stays small; the relative path, or None when the trace has no heat map."""
    ev = resp.trace.evidence
    if not resp.trace.HasField("evidence") or not ev.heatmap.png:
        return None
    rel = f"{HEATMAP_DIR}/{heatmap_name(sample.image_path)}"
    path = run_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(ev.heatmap.png)
    os.replace(tmp, path)
    ev.heatmap.png = b""  # width, height and scale stay in the trace
    ev.overlay_png = b""
    return rel


def make_record(
    sample: Sample,
    question: Question,
    resp: Any,
    latency_ms: float,
    cell: Cell,
    session: float,
    heatmap: str | None = None,
) -> dict[str, Any]:
    """One answers.jsonl line. `answer` is the Inspector's letter as served, never re-parsed: the decision stage
    read the reply with the one parser (services/common/answers.py) in the mode it was generated in, and "" is
    an unparsed answer, which the report counts under both policies.

    `image` and `mask` (dataset-relative) and `heatmap` (run-relative) let the report score the evidence expert.
    """
    answer = resp.answer
    graded = Graded(
        dataset=sample.dataset,
        category=sample.category,
        type=question.type,
        gold=question.answer,
        predicted=answer,
        is_normal=sample.is_normal,
        question_id=question.id,
    )
    return {
        "id": question.id,
        "dataset": sample.dataset,
        "category": sample.category,
        "type": question.type,
        "gold": question.answer,
        "answer": answer,
        "correct": graded.correct,
        "unparsed": not graded.parsed,
        "is_normal": sample.is_normal,
        "image": sample.image_path,
        "mask": sample.mask_path,
        **({"heatmap": heatmap} if heatmap else {}),
        "n_options": len(question.options),
        "latency_ms": round(latency_ms, 3),
        "cell": cell.name,
        "session": session,
        "ts": time.time(),
        "trace": MessageToDict(resp.trace, preserving_proto_field_name=True),
    }


class _Throttle:
    """Spaces request starts to at most `qps` per second across all workers."""

    def __init__(self, qps: float) -> None:
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.next_at = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        at = max(now, self.next_at)
        self.next_at = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


class _ImageCache:
    """The questions of one image arrive together; keep the last few images' bytes."""

    def __init__(self, dataset: MMADDataset, size: int) -> None:
        self.dataset = dataset
        self.size = max(4, size)
        self.items: OrderedDict[str, bytes] = OrderedDict()

    async def get(self, rel: str) -> bytes:
        if rel in self.items:
            self.items.move_to_end(rel)
            return self.items[rel]
        data = await asyncio.to_thread(self.dataset.abspath(rel).read_bytes)
        self.items[rel] = data
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return data


class Reporter:
    """Progress with an ETA: a live rich bar on a terminal, a plain line every ~10% (or 30 s) otherwise."""

    def __init__(self, console: Any | None, title: str, total: int, done: int) -> None:
        self.console = console
        self.title = title
        self.total = total
        self.done = done
        self.start_done = done
        self.t0 = time.perf_counter()
        self.last_print = self.t0
        self.last_step = -1
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Reporter:
        if self.console is not None and self.console.is_terminal:
            from rich.progress import Progress, TextColumn

            from services.common.progress import bar_columns

            self._progress = Progress(*bar_columns(TextColumn("{task.fields[rate]}")), console=self.console)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, completed=self.done, rate="")
        elif self.console is not None:
            self.console.print(f"{self.title}: {self.done}/{self.total} already answered")
        return self

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return (self.done - self.start_done) / dt if dt > 0 else 0.0

    def eta_s(self) -> float | None:
        r = self.rate()
        return (self.total - self.done) / r if r > 0 else None

    def advance(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, rate=f"{self.rate():.2f} q/s")
            return
        if self.console is None:
            return
        step = 10 * self.done // max(1, self.total)
        now = time.perf_counter()
        if step != self.last_step or now - self.last_print > 30 or self.done == self.total:
            self.last_step, self.last_print = step, now
            eta = self.eta_s()
            eta_s = f"{eta:.0f} s" if eta is not None else "?"
            self.console.print(f"{self.title}: {self.done}/{self.total} answered, {self.rate():.2f} q/s, ETA {eta_s}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """A run's run.json ({} when absent); FAILED_PRECONDITION when it cannot be read.

    It holds what guards a resumed run against mixing settings or datasets, so an
    unreadable one stops the run rather than silently turning that guard off.
    """
    path = run_dir / RUN_FILE
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FailedPrecondition(
            f"{path} cannot be read ({e}), so resuming cannot be checked against the answers there; "
            "repair or delete it, or use another --out folder"
        ) from None
    if not isinstance(meta, dict):
        raise FailedPrecondition(f"{path} holds a {type(meta).__name__}, not a run description; use another --out")
    return meta


def _merge_run_json(run_dir: Path, update: dict[str, Any]) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    meta = read_run_json(run_dir)
    sessions = meta.get("sessions", [])
    meta.update({k: v for k, v in update.items() if k != "session"})
    if "session" in update:
        s = update["session"]
        sessions = [x for x in sessions if x.get("id") != s["id"]] + [s]
    meta["sessions"] = sessions
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return meta


def models_seen(records: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """stage -> distinct model ids over every trace (so a report says plainly which models answered)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for stage, model in (r.get("trace", {}).get("model_ids") or {}).items():
            seen[stage].add(model)
    return {k: sorted(v) for k, v in sorted(seen.items())}


@dataclass
class _Tally:
    """What the workers of one session did."""

    answered: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: bool = False


async def run_cell(
    client: AsyncInspectorClient,
    dataset: MMADDataset,
    run_dir: str | Path,
    cell: Cell,
    opts: RunOptions,
    *,
    meta: dict[str, Any] | None = None,
    console: Any | None = None,
) -> RunResult:
    """Answer every question not yet in RUN_DIR/answers.jsonl, appending each answer durably.

    Args:
        client: a connected client.
        dataset: the loaded MMAD-format dataset.
        run_dir: the run's folder (created).
        cell: request settings for every question.
        opts: concurrency, line id, limits.
        meta: extra run.json fields (server, settings).
        console: a rich Console for progress (None: silent).

    Raises:
        TooManyErrors: more than opts.max_errors requests failed (answers so far are kept).
        FailedPrecondition: the folder holds answers of other settings, or its run.json cannot be read.
    """
    run_dir = Path(run_dir)
    scope = questions_in_scope(dataset, opts.limit)
    session = time.time()
    t0 = time.perf_counter()
    with AnswerLog.open(run_dir) as log:
        _check_same_run(run_dir, dataset, cell, opts, bool(len(log)))
        skipped = sum(1 for _, q in scope if q.id in log)
        todo = [(s, q) for s, q in scope if q.id not in log]
        _merge_run_json(run_dir, _session_start(run_dir, dataset, scope, cell, opts, meta, session, skipped, todo))
        title = f"eval {cell.name}" if cell.name else "eval"
        with Reporter(console, title, len(scope), skipped) as progress:
            tally = await _answer_all(client, dataset, run_dir, cell, opts, log, todo, session, progress)
        wall = time.perf_counter() - t0
        records = list(log)
    done = skipped + tally.answered
    _merge_run_json(
        run_dir,
        {
            "answered": len(records),
            "models": models_seen(records),
            **({"finished_at": now_iso()} if done >= len(scope) else {}),
            "session": {
                "id": session,
                "started_at": datetime.fromtimestamp(session, UTC).isoformat(timespec="seconds"),
                "ended_at": now_iso(),
                "skipped": skipped,
                "answered": tally.answered,
                "errors": len(tally.errors),
                "wall_s": round(wall, 3),
            },
        },
    )
    if tally.stopped:
        raise TooManyErrors(
            f"{run_dir}: stopped after {len(tally.errors)} failed requests (first: {tally.errors[0]}); "
            f"{done} of {len(scope)} answered are kept, rerun to resume"
        )
    return RunResult(run_dir, cell, len(scope), skipped, tally.answered, len(tally.errors), wall, tally.errors[:5])


def _session_start(
    run_dir: Path,
    dataset: MMADDataset,
    scope: list[tuple[Sample, Question]],
    cell: Cell,
    opts: RunOptions,
    meta: dict[str, Any] | None,
    session: float,
    skipped: int,
    todo: list[tuple[Sample, Question]],
) -> dict[str, Any]:
    """The run.json fields written when a session starts."""
    return {
        "dataset_path": str(dataset.root.resolve()),
        "questions": len(scope),
        "cell": cell.to_dict(),
        "options": dict(vars(opts)),
        **(meta or {}),
        "started_at": read_run_json(run_dir).get("started_at") or now_iso(),
        "session": {"id": session, "started_at": now_iso(), "skipped": skipped, "todo": len(todo)},
    }


async def _answer_all(
    client: AsyncInspectorClient,
    dataset: MMADDataset,
    run_dir: Path,
    cell: Cell,
    opts: RunOptions,
    log: AnswerLog,
    todo: list[tuple[Sample, Question]],
    session: float,
    progress: Reporter,
) -> _Tally:
    """opts.concurrency workers take questions from one queue; each answer is appended as it arrives."""
    images = _ImageCache(dataset, 4 * opts.concurrency)
    throttle = _Throttle(opts.max_qps)
    tally = _Tally()
    queue = iter(todo)
    wants_heatmap = heatmap_questions(dataset) if opts.heatmaps else set()

    async def worker() -> None:
        for sample, q in queue:
            if tally.stopped:
                return
            await throttle.wait()
            template = sample.random_templates[:1] if cell.sends_template else []
            refs = [await images.get(t) for t in template]
            image = await images.get(sample.image_path)
            req = build_request(sample, q, image, cell, opts, refs, heatmap=q.id in wants_heatmap)
            start = time.perf_counter()
            try:
                resp = await with_retries(
                    lambda req=req: client.inspect_request(req, timeout_s=opts.timeout_s), opts.retries, opts.backoff_s
                )
            except grpc.aio.AioRpcError as e:
                msg = f"{e.code().name}: {e.details()}"
                tally.errors.append(msg)
                append_error(run_dir, {"id": q.id, "cell": cell.name, "error": msg, "ts": time.time()})
                tally.stopped = len(tally.errors) > opts.max_errors
                continue
            ms = (time.perf_counter() - start) * 1000.0
            heatmap = await asyncio.to_thread(keep_heatmap, run_dir, sample, resp)
            log.append(make_record(sample, q, resp, ms, cell, session, heatmap))
            tally.answered += 1
            progress.advance()

    try:
        # A TaskGroup cancels the other workers if one fails, so none writes after the log closes.
        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, opts.concurrency)):
                tg.create_task(worker())
    except BaseExceptionGroup as group:
        raise task_group_error(group) from None
    return tally


def _check_same_run(run_dir: Path, dataset: MMADDataset, cell: Cell, opts: RunOptions, has_answers: bool) -> None:
    """Resuming must not mix answers of different settings or datasets into one file."""
    if not has_answers:
        return
    meta = read_run_json(run_dir)
    if not meta:
        return
    before = Cell.from_dict(meta.get("cell") or {})
    if before.settings_key() != cell.settings_key():
        raise FailedPrecondition(
            f"{run_dir} holds answers for other settings ({before.describe()}); "
            f"now: {cell.describe()}. Use another --out folder."
        )
    old_data = meta.get("dataset_path")
    if old_data and old_data != str(dataset.root.resolve()):
        raise FailedPrecondition(
            f"{run_dir} holds answers for {old_data}, not {dataset.root}. Use another --out folder."
        )
    old_opts = meta.get("options") or {}
    for key in ("line_id", "plan_types", "seed"):
        if key in old_opts and old_opts[key] != getattr(opts, key):
            raise FailedPrecondition(
                f"{run_dir} was answered with {key}={old_opts[key]!r}, now {getattr(opts, key)!r}; use another --out"
            )


async def wait_ready(client: AsyncInspectorClient, timeout_s: float = 60.0) -> None:
    """Wait until the Inspector answers health checks (a server that is still starting is not an error)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            status = await client.health("", timeout_s=min(5.0, max(0.5, deadline - time.monotonic())))
            if status == "SERVING":
                return
            last = status
        except grpc.aio.AioRpcError as e:
            last = f"{e.code().name}: {e.details()}"
        await asyncio.sleep(0.2)
    raise ConnectionError(f"Inspector at {client.address} is not serving after {timeout_s:.0f} s ({last})")


async def ensure_memory(
    client: AsyncInspectorClient,
    dataset: MMADDataset,
    line_id: str,
    *,
    batch: int = 16,
    console: Any | None = None,
    retries: int = 4,
    backoff_s: float = 1.0,
) -> dict[str, int]:
    """Give the line the dataset's normal templates for every category whose memory or evidence bank is missing.

    Uses the Inspector's own RPCs, so it works the same on the embedded server and on a remote cluster. A
    category is left alone when its memory holds images and its evidence bank holds as many; otherwise all its
    templates go through AddNormalImages again, which is idempotent and builds whichever of the two is missing
    (a memory built before the evidence stage existed gets its bank).

    Every call is retried on a transient status (with_retries), so one slow answer under load does not end the
    run before its first question.

    Returns:
        "dataset/category" -> images sent (0 for categories already complete).
    """
    by_cat: dict[tuple[str, str], list[str]] = defaultdict(list)
    for ds, cat, path in dataset.templates():
        by_cat[(ds, cat)].append(path)
    listed = await with_retries(lambda: client.list_products(line_id), retries, backoff_s)
    products = {(p.dataset, p.category): p for p in listed.products}
    added: dict[str, int] = {}
    for (ds, cat), paths in by_cat.items():
        key = f"{ds}/{cat}"
        have = products.get((ds, cat))
        if have is not None and have.normal_images and have.evidence_bank_images >= have.normal_images:
            added[key] = 0
            if console is not None:  # an earlier run's memory answers: say so, the figures depend on it
                console.print(
                    f"memory: line={line_id} {key} already holds {have.normal_images} normal images and an evidence "
                    f"bank (from an earlier run; the dataset has {len(paths)} templates): this run uses them as they "
                    "are; a new --line or data_dir starts afresh"
                )
            continue
        n = 0
        for start in range(0, len(paths), batch):
            chunk = [await asyncio.to_thread(dataset.abspath(p).read_bytes) for p in paths[start : start + batch]]
            resp = await with_retries(
                lambda chunk=chunk, cat=cat, ds=ds: client.add_normal_images(line_id, cat, chunk, dataset=ds),
                retries,
                backoff_s,
            )
            n += resp.added + resp.existing
        added[key] = n
        if console is not None:
            console.print(f"memory: {n} normal templates added for line={line_id} {key}")
    return added


def _settings_summary(settings: Any) -> dict[str, Any]:
    """The embedded server's settings, minus anything secret."""
    d = settings.model_dump(mode="json")
    d.get("decision", {}).pop("api_key", None)
    return d


async def evaluate(
    dataset: MMADDataset,
    runs: Sequence[tuple[Cell, str | Path]],
    opts: RunOptions,
    *,
    address: str | None = None,
    settings: Any | None = None,
    start_embedded: Callable[[Any], Awaitable[Any]] | None = None,
    build_memory: bool = True,
    console: Any | None = None,
    meta: dict[str, Any] | None = None,
) -> list[RunResult]:
    """Run cells over a dataset against a server, or an embedded one started here from `settings`.

    Args:
        dataset: the loaded dataset.
        runs: (cell, run directory) pairs, run in order.
        opts: how requests are sent.
        address: the Inspector's host:port; None starts the embedded server from `settings` (port 0).
        settings: EchoSettings for the embedded server.
        start_embedded: starts the embedded server from `settings` (app.embedded.start_embedded; passed in,
            because the evaluation sits below the product that composes the server).
        build_memory: first give each category with an empty memory its normal templates.
        console: rich Console for progress and messages.
        meta: more run.json fields (e.g. the knowledge source, Table 1's datasets).
    """
    embedded = None
    extra = dict(meta or {})
    if address is None:
        if settings is None:
            raise ValueError("either an address, or settings and start_embedded for the embedded server, are needed")
        types = {q.type for _, q in questions_in_scope(dataset, opts.limit)}
        for cell, _ in runs:  # before the server starts and before the first request
            if problem := incompatible(settings, types, cell):
                raise FailedPrecondition(problem)
        if start_embedded is None:
            raise ValueError("either an address, or settings and start_embedded for the embedded server, are needed")
        if console is not None:
            console.print(f"starting the embedded server (decision backend: {settings.decision.backend})")
        embedded = await start_embedded(settings)
        address = embedded.address
        meta = {"server": "embedded", "protocol": settings.protocol, "settings": _settings_summary(settings), **extra}
    else:
        meta = {"server": address, "protocol": "the server's own settings", **extra}
    results: list[RunResult] = []
    try:
        async with AsyncInspectorClient(address, timeout_s=opts.timeout_s) as client:
            await wait_ready(client)
            if build_memory:
                meta["memory_added"] = await ensure_memory(
                    client, dataset, opts.line_id, console=console, retries=opts.retries, backoff_s=opts.backoff_s
                )
            for cell, run_dir in runs:
                results.append(await run_cell(client, dataset, run_dir, cell, opts, meta=meta, console=console))
    finally:
        if embedded is not None:
            await embedded.stop(grace=1.0)
    return results


def incompatible(settings: Any, types: set[str], cell: Cell) -> str | None:
    """Why these embedded-server settings cannot answer questions of these types under this cell, or None.

    `decision.backend: evidence` answers Anomaly Detection and Defect Localization from the visual evidence
    alone, and Defect Classification from the product's defect library: every other type, and every type whose
    plan runs no evidence expert (the paper protocol's map), would fail request after request; say so before the
    first one.
    """
    if settings.decision.backend != "evidence":
        return None
    from services.decision.evidence_answer import ANSWERS

    if other := sorted(types - set(ANSWERS)):
        return (
            f"decision.backend 'evidence' (--backend evidence) answers {', '.join(ANSWERS[:-1])} and {ANSWERS[-1]} "
            f"only, and this dataset also asks {', '.join(other)}: use an MLLM backend"
        )
    forced = dict(cell.experts).get("evidence")
    expert_map = settings.gateway.expert_map
    without = [t for t in sorted(types) if not (forced if forced is not None else "evidence" in expert_map.get(t, []))]
    if without:
        return (
            f"decision.backend 'evidence' (--backend evidence) answers from the visual evidence expert, which "
            f"protocol {settings.protocol!r} does not run for {', '.join(without)} (gateway.expert_map"
            f"{'; this cell turns it off' if forced is False else ''}): use --protocol product or --experts evidence=on"
        )
    return None


def load_run(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A run's records (complete lines only; never modifies the file) and its run.json ({} if absent)."""
    run_dir = Path(run_dir)
    records = read_answers(run_dir / "answers.jsonl")
    return records, read_run_json(run_dir)
