"""Per-stage metrics in the cluster, exported through Ray's metrics agent.

Replicas come and go and several share a node, so a per-process HTTP exporter
(embedded mode's `telemetry.metrics_port`) has no fixed port to scrape. Ray
Serve metrics go through each node's metrics agent instead, which Prometheus
scrapes at the node's metrics export port (`ray start --metrics-export-port`);
Ray prefixes every name with `ray_` and adds the deployment, replica and
application tags. These mirror services/common/telemetry.py's names and labels,
next to Serve's own `ray_serve_deployment_request_counter`,
`ray_serve_deployment_processing_latency_ms`, `ray_serve_actual_batch_size` and
`ray_serve_batch_queue_length`.
"""

from __future__ import annotations

from ray.serve.metrics import Counter, Gauge, Histogram

REQUESTS = Counter("echo_requests", description="RPCs handled, by status code.", tag_keys=("service", "method", "code"))
LATENCY = Histogram(
    "echo_request_seconds",
    description="RPC latency inside the replica.",
    boundaries=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    tag_keys=("service", "method"),
)
IN_FLIGHT = Gauge("echo_in_flight", description="Requests being served by this replica.", tag_keys=("stage",))
BATCH_SIZE = Histogram(
    "echo_batch_size",
    description="Items per model call.",
    boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256],
    tag_keys=("stage",),
)
QUEUE_DEPTH = Gauge("echo_queue_depth", description="Requests waiting for a batch.", tag_keys=("stage",))
