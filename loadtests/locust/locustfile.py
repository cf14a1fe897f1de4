"""Locust users for the Inspector: factory lines asking about their parts over gRPC.

    echo-iad serve &                       # or Ray Serve's proxy with --ray
    locust -f loadtests/locust/locustfile.py --headless -u 8 -r 8 -t 60s --host 127.0.0.1:50051 \
        --data ./echo-data/demo/dataset --line line --lines 8 --line-rate 0.5 --onboard

Each user is one line (user k inspects for line k mod --lines), sends the query
image bytes at its own fixed rate (--line-rate; 0: as fast as answers come) and
cycles through the question types in a fixed order (--types), so the table shows
latency per type. `--stages 20s:4,10s:24,30s:4` makes a burst.
`python -m loadtests.locust.run` runs the named scenarios and writes the reports.
"""

from __future__ import annotations

from locust import task

from echo.v1 import inspector_pb2_grpc
from loadtests.locust.grpc_user import GrpcUser, Stages, line_ids
from services.client.client import build_inspect_request

__all__ = ["InspectorUser", "Stages"]  # Stages: Locust runs the file's load shape


class InspectorUser(GrpcUser):
    """One factory line: its own line id, its own takt, every question type in turn."""

    service = "inspector"

    def on_start(self) -> None:
        lines = line_ids(self.opts)
        self.line = lines[self.number % len(lines)]
        self.stub = inspector_pb2_grpc.InspectorStub(self.channel)
        super().on_start()

    @task
    def inspect(self) -> None:
        ask = self.next_ask()
        request = build_inspect_request(
            ask.image,
            ask.text,
            ask.options,
            line_id=self.line,
            dataset=ask.dataset,
            category=ask.category,
            question_type=ask.type,
            deadline_ms=self.opts.deadline_ms,
        )
        self.call(self.stub.Inspect, request, ask.type)
