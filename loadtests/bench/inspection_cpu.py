"""CPU per inspection of the embedded server, by server.intra_op_threads, on the drill's question mix.

    python -m loadtests.bench.inspection_cpu [--requests 30] [--threads 0,1] [--types no-reasoning]

For each setting, a fresh `echo-iad serve` (offline models) with one onboarded line; after a warm-up, the
inspections go one at a time (no queueing, so CPU time is the work itself), cycling through the question types as
a Locust line does. Reported per setting: the server process's CPU ms per inspection (all its threads, from the
kernel's accounting, so OpenMP and ONNX Runtime pools count), wall ms per inspection, and the mean of each stage's
trace timing `[ms, compute_ms, calls]`. `0` is OpenMP's default (one thread per core), the baseline in the same
run. Prints ONE JSON line with the machine's load (`uptime`) before and after: on a shared machine wall times
move with the load, CPU ms much less.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from loadtests.kit.load import onboard, say, start_server, uptime, workspace


def question_types(spec: str) -> list[str]:
    """`all` or `no-reasoning` (the types the default expert map sends no reasoning pass), as the Locust users
    read --types (loadtests/locust/grpc_user.py, not imported here: it patches grpc for gevent)."""
    from services.gateway.config import DEFAULT_EXPERT_MAP
    from services.mmad.types import QUESTION_TYPES

    if spec == "all":
        return list(QUESTION_TYPES)
    if spec == "no-reasoning":
        return [t for t in QUESTION_TYPES if "reasoning" not in DEFAULT_EXPERT_MAP.get(t, [])]
    raise SystemExit(f"--types: {spec!r} is not all or no-reasoning")


def asks(data: Path, types: str, per_type: int = 30) -> list[tuple[bytes, Any, Any]]:
    """The dataset's questions of these types, interleaved by type (a line's cycle)."""
    from services.mmad.loader import load_dataset

    wanted = question_types(types)
    ds = load_dataset(data)
    by_type: dict[str, list[tuple[bytes, Any, Any]]] = defaultdict(list)
    for sample, q in ds.questions():
        if q.type in wanted and len(by_type[q.type]) < per_type:
            by_type[q.type].append((ds.abspath(sample.image_path).read_bytes(), q, sample))
    rounds = itertools.zip_longest(*by_type.values())
    return [a for r in rounds for a in r if a is not None]


def measure(work: Path, data: Path, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    from services.client import InspectorClient
    from services.client.client import build_inspect_request

    env = {"ECHO_IAD__SERVER__INTRA_OP_THREADS": str(threads)}
    os.environ.pop("OMP_NUM_THREADS", None)  # the setting, not this shell, decides
    server = start_server(work / f"threads-{threads}", env=env)
    try:
        onboard(server.address, data, ["line"])
        pool = asks(data, args.types)
        proc = psutil.Process(server.proc.pid)
        stages: dict[str, list[tuple[float, float]]] = defaultdict(list)
        with InspectorClient(server.address, retries=0, timeout_s=60) as client:

            def one(n: int, record: bool) -> None:
                img, q, s = pool[n % len(pool)]
                request = build_inspect_request(
                    img, q.text, dict(q.options), line_id="line", dataset=s.dataset, category=s.category,
                    question_type=q.type, deadline_ms=60_000,
                )  # fmt: skip
                reply = client.inspect_request(request)
                if record:
                    for t in reply.trace.timings:
                        stages[t.stage].append((t.ms, t.compute_ms))

            for n in range(args.warmup):
                one(n, False)
            cpu0, wall0 = sum(proc.cpu_times()[:2]), time.perf_counter()
            for n in range(args.warmup, args.warmup + args.requests):
                one(n, True)
            cpu1, wall1 = sum(proc.cpu_times()[:2]), time.perf_counter()
    finally:
        server.stop()
    return {
        "cpu_ms_per_inspection": round((cpu1 - cpu0) * 1000 / args.requests, 1),
        "wall_ms_per_inspection": round((wall1 - wall0) * 1000 / args.requests, 1),
        "stages_ms_compute_calls": {
            k: [round(sum(a for a, _ in v) / len(v), 1), round(sum(b for _, b in v) / len(v), 1), len(v)]
            for k, v in sorted(stages.items())
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30, help="Inspections measured per setting.")
    ap.add_argument("--warmup", type=int, default=15, help="Inspections first, not measured.")
    ap.add_argument("--threads", default="0,1", help="server.intra_op_threads values (0: OpenMP's default).")
    ap.add_argument("--types", default="no-reasoning", help="all, or no-reasoning (the drills' default mix).")
    ap.add_argument("--workdir", default="", help="Data and server state (default: a temp dir).")
    args = ap.parse_args()
    work, data = workspace(args.workdir, "echo-inspection-cpu-")
    before = uptime()
    results = {}
    for threads in (int(t) for t in args.threads.split(",")):
        results[str(threads)] = measure(work, data, threads, args)
        say("intra_op_threads", threads, results[str(threads)])
    print(json.dumps({
        "benchmark": "inspection_cpu", "types": args.types, "requests": args.requests,
        "by_intra_op_threads": results, "uptime_before": before, "uptime_after": uptime(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
