"""What every Echo-IAD Locust user shares: gRPC made for gevent, one request event per call, questions, shape.

Locust's gRPC pattern: grpc is initialised for gevent before any channel exists,
and an interceptor on each user's channel fires one Locust request event per
call. The Inspector's users (loadtests/locust/locustfile.py) and each stage's
(loadtests/locust/stages.py) build on `GrpcUser`. Every user cycles through the
question types in a fixed order, each starting at its own type, so a short run
asks every type. `--stages` shapes the load over time (a burst, a ramp);
`--calls-log` writes one line per call (exact latency and status) for the tools
that measure capacity, overload and recovery.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel exists

import grpc  # noqa: E402
from locust import LoadTestShape, User, constant, constant_throughput, events  # noqa: E402

from loadtests.kit.load import parse_stages  # noqa: E402
from services.client import InspectorClient  # noqa: E402
from services.gateway.config import DEFAULT_EXPERT_MAP  # noqa: E402
from services.mmad.preview import TYPE_ABBREVIATIONS  # noqa: E402
from services.mmad.types import QUESTION_TYPES  # noqa: E402


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("Echo-IAD")
    g.add_argument("--data", default="./echo-data/demo/dataset", help="MMAD-format dataset the questions come from")
    g.add_argument("--line", default="demo-line", help="Line id; with --lines N > 1, the prefix of N ids LINE-0..")
    g.add_argument("--lines", type=int, default=1, help="Distinct line ids; user k inspects for line k mod N")
    g.add_argument(
        "--line-rate", type=float, default=0.0, help="Inspections per second of each user (a line's takt); 0: no pause"
    )
    g.add_argument(
        "--types",
        default="all",
        help="Question types each user cycles through: all, no-reasoning (the types without the Reasoning Expert "
        "in the default expert map), or names/abbreviations (AD,DC,DL,DD,DA,OC,OA)",
    )
    g.add_argument(
        "--stages",
        default="",
        help="Load over time as DURATION:USERS,... (e.g. 20s:4,10s:24,30s:4: a burst); empty: -u users throughout",
    )
    g.add_argument(
        "--deadline-ms", type=float, default=60_000, help="Each request's deadline, sent in it (the client waits 5 s)"
    )
    g.add_argument("--application", default="", help="Ray Serve application every user routes to (cluster: inspector)")
    g.add_argument(
        "--request-log", default="", help="Append one JSON line per request: start (unix), seconds, code, details"
    )
    g.add_argument(
        "--onboard", action="store_true", help="Add the dataset's normal images to every line's memory at start"
    )
    g.add_argument("--ray", action="store_true", help="Ray Serve's gRPC proxy: route by `application` metadata")
    g.add_argument("--calls-log", default="", help="Write one CSV line per call: unix time, name, status, ms")
    g.add_argument("--max-questions", type=int, default=400, help="Questions loaded into the pool")


# ------------------------------------------------------------------ questions
@dataclass(frozen=True)
class Ask:
    """One question of the dataset with what every stage needs to be asked about it."""

    image: bytes
    text: str
    options: dict[str, str]
    type: str
    dataset: str
    category: str
    reference: bytes  # a normal image of the same product (for the decision stage alone)


def reasoning_types(expert_map: dict[str, list[str]] = DEFAULT_EXPERT_MAP) -> set[str]:
    return {t for t, experts in expert_map.items() if "reasoning" in experts}


def parse_types(spec: str) -> list[str]:
    """`all`, `no-reasoning`, or a comma-separated list of MMAD names or their abbreviations, in MMAD's order."""
    spec = spec.strip()
    if spec in ("", "all"):
        return list(QUESTION_TYPES)
    if spec == "no-reasoning":
        return [t for t in QUESTION_TYPES if t not in reasoning_types()]
    by_name = {t.lower(): t for t in QUESTION_TYPES} | {a.lower(): t for t, a in TYPE_ABBREVIATIONS.items()}
    chosen = set()
    for part in spec.split(","):
        if part.strip().lower() not in by_name:
            raise ValueError(f"--types: {part.strip()!r} is not a question type ({', '.join(TYPE_ABBREVIATIONS)})")
        chosen.add(by_name[part.strip().lower()])
    return [t for t in QUESTION_TYPES if t in chosen]


def load_asks(data: Path, types: list[str], max_questions: int) -> dict[str, list[Ask]]:
    """Questions of the chosen types, grouped by type, at most max_questions in all (spread over the types)."""
    from services.mmad.loader import load_dataset

    ds = load_dataset(data)
    normal = {(d, c): ds.abspath(t).read_bytes() for d, c, t in reversed(ds.templates())}  # the first of each
    per_type = max(1, max_questions // max(1, len(types)))
    asks: dict[str, list[Ask]] = {t: [] for t in types}
    images: dict[str, bytes] = {}
    for sample, q in ds.questions():
        if q.type not in asks or len(asks[q.type]) >= per_type:
            continue
        if sample.image_path not in images:
            images[sample.image_path] = ds.abspath(sample.image_path).read_bytes()
        ref = normal.get((sample.dataset, sample.category), images[sample.image_path])
        asks[q.type].append(
            Ask(images[sample.image_path], q.text, dict(q.options), q.type, sample.dataset, sample.category, ref)
        )
    missing = [t for t, a in asks.items() if not a]
    if missing:
        raise ValueError(f"{data}: no questions of type {', '.join(missing)}")
    return asks


_ASKS: dict[str, list[Ask]] = {}


@events.test_start.add_listener
def _load(environment: Any, **_kw: Any) -> None:
    opts = environment.parsed_options
    if not _ASKS:
        _ASKS.update(load_asks(Path(opts.data), parse_types(opts.types), opts.max_questions))
    if opts.onboard:
        onboard(opts)


def line_ids(opts: Any) -> list[str]:
    return [opts.line] if opts.lines <= 1 else [f"{opts.line}-{i}" for i in range(opts.lines)]


def onboard(opts: Any) -> None:
    """Every line gets the dataset's normal images (content-addressed: a second run adds nothing)."""
    from services.mmad.loader import load_dataset

    ds = load_dataset(Path(opts.data))
    by_product: dict[tuple[str, str], list[Path]] = {}
    for d, c, t in ds.templates():
        by_product.setdefault((d, c), []).append(ds.abspath(t))
    with InspectorClient(opts.host, retries=3, application="inspector" if opts.ray else "") as client:
        for line in line_ids(opts):
            for (dataset, category), paths in by_product.items():
                client.add_normal_images(line, category, paths, dataset=dataset)


# ------------------------------------------------------------------ one event per call
_STATUS = re.compile(r"\d+")
_BACKOFF_S = 0.25


class Failure(Exception):
    """A call's gRPC status as Locust groups failures: the code and its message with numbers masked."""


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Fires one Locust request event per call, named by the user's current label or the method."""

    def __init__(self, user: GrpcUser) -> None:
        self.user = user

    def intercept_unary_unary(self, continuation: Callable, client_call_details: Any, request: Any) -> Any:
        start = time.perf_counter()
        response = continuation(client_call_details, request)
        exception: Exception | None = None
        length = 0
        code, details = "OK", ""
        try:
            length = response.result().ByteSize()
        except grpc.RpcError as e:
            code, details = e.code().name, e.details() or ""
            exception = Failure(f"{code}: {_STATUS.sub('N', details)[:160]}")
        ms = (time.perf_counter() - start) * 1000.0
        name = self.user.label or client_call_details.method.rsplit(".", 1)[-1]
        self.user.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=ms,
            response_length=length,
            response=response,
            context={"status": code, "details": details},
            exception=exception,
        )
        return response


class GrpcUser(User):
    """A user with its own gRPC channel (TLS, tokens and routing as InspectorClient sets them up), intercepted.

    Subclasses set `service` (the Ray Serve application it is routed to with --ray) and call
    `self.call(stub_method, request, label)`.
    """

    abstract = True
    service: ClassVar[str] = "inspector"
    _numbers = itertools.count()

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        opts = environment.parsed_options
        self.opts = opts
        self.number = next(GrpcUser._numbers)
        self.client = InspectorClient(
            self.host,
            retries=0,
            timeout_s=opts.deadline_ms / 1000.0,
            application=opts.application or (self.service if opts.ray else ""),
        )
        self.channel = grpc.intercept_channel(self.client.channel, LocustInterceptor(self))
        self.label = ""
        self.types = list(_ASKS)
        self._asked = 0
        self._pace = constant_throughput(opts.line_rate) if opts.line_rate > 0 else constant(0)

    def on_start(self) -> None:
        """A paced line starts at its own point of the takt, so lines spawned together do not ask together."""
        if self.opts.line_rate > 0:
            time.sleep(random.Random(self.number).uniform(0, 1.0 / self.opts.line_rate))
            self._cp_last_run = time.perf_counter()

    def wait_time(self) -> float:
        return self._pace(self)

    def next_ask(self) -> Ask:
        """The next question: types in a fixed cycle starting at this user's own, questions in turn within each."""
        n = self._asked
        self._asked += 1
        t = self.types[(self.number + n) % len(self.types)]
        pool = _ASKS[t]
        return pool[(n // len(self.types) + self.number) % len(pool)]

    def call(self, method: Callable[..., Any], request: Any, label: str = "") -> Any:
        """One RPC through the intercepted channel; its failure is recorded by the interceptor, not raised."""
        self.label = label
        try:
            return method(request, timeout=self.opts.deadline_ms / 1000.0 + 5.0, metadata=self.client.metadata)
        except grpc.RpcError as e:
            if self.opts.line_rate <= 0 and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                time.sleep(_BACKOFF_S)  # as the refusal asks; an unpaced user would otherwise spin on refusals
            return None
        finally:
            self.label = ""

    def on_stop(self) -> None:
        self.client.close()


# ------------------------------------------------------------------ load over time
class Stages(LoadTestShape):
    """-u users at -r per second for -t, or --stages: each stage's users for its duration, then stop."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        spec = parse_stages(opts.stages)
        rate = float(opts.spawn_rate or 1)
        elapsed = self.get_run_time()
        if not spec:  # Locust applies -t to a shape only once the shape ends, so the shape ends itself
            return None if opts.run_time and elapsed >= opts.run_time else (int(opts.num_users or 1), rate)
        for duration, users in spec:
            if elapsed < duration:
                return users, max(rate, float(users))  # a stage starts at once: bursts are sudden
            elapsed -= duration
        return None


# ------------------------------------------------------------------ exact per-call log
_LOG: list[TextIO] = []


_REQUESTS: list[TextIO] = []


@events.test_start.add_listener
def _open_log(environment: Any, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts.calls_log and not _LOG:
        _LOG.append(open(opts.calls_log, "a", buffering=1 << 16))  # noqa: SIM115 (closed at test_stop)
    if opts.request_log and not _REQUESTS:
        _REQUESTS.append(open(opts.request_log, "a", buffering=1))  # noqa: SIM115 (line by line: read while written)


@events.request.add_listener
def _log_call(name: str, response_time: float, context: dict | None = None, **_kw: Any) -> None:
    status = (context or {}).get("status", "OK" if _kw.get("exception") is None else "ERROR")
    now = time.time()
    if _LOG:
        _LOG[0].write(f"{now:.3f},{name},{status},{response_time:.2f}\n")
    if _REQUESTS:
        record = {"start": now - response_time / 1000.0, "seconds": response_time / 1000.0, "code": status,
                  "details": (context or {}).get("details", ""), "name": name}  # fmt: skip
        _REQUESTS[0].write(json.dumps(record) + "\n")


@events.test_stop.add_listener
def _close_log(**_kw: Any) -> None:
    for logs in (_LOG, _REQUESTS):
        while logs:
            logs.pop().close()


__all__ = ["Ask", "GrpcUser", "Stages", "line_ids", "parse_stages", "parse_types", "reasoning_types"]
