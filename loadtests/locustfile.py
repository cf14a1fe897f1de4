"""Locust users for the Inspector: factory-line clients speaking gRPC.

    echo-iad serve &                       # or a Ray Serve cluster behind its gRPC proxy
    locust -f loadtests/locustfile.py --headless -u 16 -r 4 -t 60s --host 127.0.0.1:50051 \
        --data ./echo-data/demo/dataset --line demo-line
    # a Ray Serve cluster: any node's proxy, the Inspector application, a 20 s deadline, every request logged
    locust -f loadtests/locustfile.py --headless -u 4 -t 120s --host NODE:9000 --application inspector \
        --deadline-ms 20000 --request-log requests.jsonl ...

Each user picks questions of every type from an MMAD-format dataset and sends
them with the query image bytes. Requests are reported to Locust under the
question type, so its table shows latency per type. `--request-log` appends one
JSON line per request (wall-clock start, seconds, status code, details), for
drills that need to know what clients saw and when.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # grpc must cooperate with gevent before any channel exists

import grpc  # noqa: E402
from locust import User, between, events, task  # noqa: E402

from services.client.client import InspectorClient, build_inspect_request  # noqa: E402


@events.init_command_line_parser.add_listener
def _(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--data", default="./echo-data/demo/dataset", help="MMAD-format dataset to draw questions from")
    parser.add_argument("--line", default="demo-line", help="Production line id the memory was built for")
    parser.add_argument("--max-questions", type=int, default=200, help="Questions loaded into the pool")
    parser.add_argument("--application", default="", help="Ray Serve application to route to (cluster: inspector)")
    parser.add_argument(
        "--deadline-ms", type=float, default=60_000, help="Each inspection's deadline, sent in the request and kept"
    )
    parser.add_argument("--request-log", default="", help="Append one JSON line per request to this file")


CLIENT_GRACE_S = 2.0
_POOL: list[tuple[bytes, object, str, str]] = []


@events.test_start.add_listener
def _load_pool(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    from services.mmad.loader import load_dataset

    opts = environment.parsed_options
    ds = load_dataset(Path(opts.data))
    cache: dict[str, bytes] = {}
    for sample, q in ds.questions():
        if len(_POOL) >= opts.max_questions:
            break
        if sample.image_path not in cache:
            cache[sample.image_path] = ds.abspath(sample.image_path).read_bytes()
        _POOL.append((cache[sample.image_path], q, sample.dataset, sample.category))
    random.Random(0).shuffle(_POOL)


class InspectorUser(User):
    """One factory-line station asking questions with a short think time."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.deadline_ms = opts.deadline_ms
        # The server must answer within the request's deadline; the client waits a little longer, so an answer
        # that comes late is seen as late instead of being cut off at the deadline by the client itself.
        timeout_s = self.deadline_ms / 1000.0 + CLIENT_GRACE_S
        self.client = InspectorClient(self.host, timeout_s=timeout_s, retries=0, application=opts.application)
        self.line = opts.line
        self.log = open(opts.request_log, "a") if opts.request_log else None  # noqa: SIM115 (closed in on_stop)

    def on_stop(self) -> None:
        self.client.close()
        if self.log is not None:
            self.log.close()

    @task
    def inspect(self) -> None:
        image, q, dataset, category = random.choice(_POOL)
        req = build_inspect_request(
            image,
            q.text,
            q.options,
            line_id=self.line,
            dataset=dataset,
            category=category,
            question_type=q.type,
            deadline_ms=self.deadline_ms,
        )
        started_at = time.time()
        start = time.perf_counter()
        exc: grpc.RpcError | None = None
        length = 0
        try:
            resp = self.client.inspect_request(req)
            length = resp.ByteSize()
        except grpc.RpcError as e:
            exc = e
        seconds = time.perf_counter() - start
        events.request.fire(
            request_type="grpc",
            name=q.type,
            response_time=seconds * 1000.0,
            response_length=length,
            exception=exc,
            context={},
        )
        if self.log is not None:
            code, details = (exc.code().name, exc.details() or "") if exc is not None else ("OK", "")
            record = {"start": started_at, "seconds": seconds, "type": q.type, "code": code, "details": details}
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
