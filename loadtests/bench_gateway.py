"""Gateway overhead in embedded mode: end-to-end latency minus what the stages report as compute.

The server runs as its own process (`echo-iad serve`, decision backend `random`
so the LLM does not drown the figure); this process is the factory-line client.
Baseline, same server, same run: the bare gRPC round trip (a health Check).

What counts as compute is what the trace reports as each stage's own work: the
models, the searches, decoding and resizing (`embedding.preprocess`,
`decision.preprocess`), and the audit trail's durable write (`audit`, an fsync
with its own benchmark, bench_audit.py), along the request's critical path: the
reference branch (embedding, category, retrieval) and knowledge run at once when
the category is known, so the longer of the two counts, not their sum (a sum
would make the overhead of such a request negative). The rest is the gateway's
overhead: the calls to the stages, queues in front of the stages' threads,
conversions, the event loop. `overhead_with_audit_*` counts the audit write as
overhead too.
`server_cpu_ms_per_request` is the server process's CPU time per inspection.

    python loadtests/bench_gateway.py [--requests 200] [--quick] [--loopback]

`--loopback`: the gateway calls its stages over the server's gRPC port
(gateway.in_process off) instead of the in-process channel.

Prints ONE JSON line: overhead p50/p99 at 1 and 16 concurrent clients, the bare
round trip at the same concurrency, and their ratio. Goal: overhead p50 <= 3 ms
at 1 and at 16 clients. `bare_rtt_during_inspections_p50_ms`: the bare round trip
of one more client while the inspections run: what the transport alone costs at
that load (an inspection makes one such round trip, and it is inside its overhead).
`overhead_p50_ms_by_experts`: per set of experts that answered (evidence, the
slowest stage, puts the others off the critical path), and which failed: a stage
past its share of the deadline (a saturated server) reports no compute, so its
whole wait reads as overhead; `degraded_requests` counts those requests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import psutil

from services.client import InspectorClient, build_inspect_request
from services.common.percentiles import percentile
from services.common.ports import free_port

EXPERTS = ("reference", "knowledge", "evidence")
REFERENCE_BRANCH = {"embedding", "embedding.preprocess", "category", "retrieval"}
SERIAL = {"plan", "decision", "decision.preprocess"}
WAITED = ("embedding", "retrieval", "knowledge", "evidence", "decision")


def _compute_ms(timings) -> float:  # type: ignore[no-untyped-def]
    """The stages' own work on the critical path (services/gateway/core.py, _fan_out): the reference branch
    knowledge and evidence overlap unless the category had to be inferred first."""
    ms = {}
    for t in timings:
        ms[t.stage] = ms.get(t.stage, 0.0) + t.compute_ms
    reference = sum(v for k, v in ms.items() if k in REFERENCE_BRANCH)
    knowledge, evidence = ms.get("knowledge", 0.0), ms.get("evidence", 0.0)
    branches = reference + max(knowledge, evidence) if "category" in ms else max(reference, knowledge, evidence)
    return branches + sum(v for k, v in ms.items() if k in SERIAL)


def _waits(timings, e2e: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Where the overhead sits: each stage call's time beyond its compute (the call, the queue in front of the
    stage's threads, conversions), and `outside`, the time outside the Inspector's own run (the client's round
    trip, reading the request, writing the response; the audit write taken out)."""
    by = {t.stage: t for t in timings}
    out = {}
    for stage in WAITED:
        if stage in by:
            pre = by[f"{stage}.preprocess"].ms if f"{stage}.preprocess" in by else 0.0
            out[stage] = by[stage].ms - by[stage].compute_ms - pre
    if "total" in by:
        out["outside"] = e2e - by["total"].ms - (by["audit"].ms if "audit" in by else 0.0)
    return out


def _pct(xs: list[float], q: float) -> float:
    return round(percentile(xs, q * 100), 3) if xs else float("nan")


def _start_server(workdir: Path, port: int, loopback: bool = False) -> subprocess.Popen:
    env = {
        **os.environ,
        "ECHO_IAD__DATA_DIR": str(workdir / "state"),
        "ECHO_IAD__DECISION__BACKEND": "random",
        "ECHO_IAD__TELEMETRY__LOG_LEVEL": "WARNING",
    }
    if loopback:
        env["ECHO_IAD__GATEWAY__IN_PROCESS"] = "false"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = InspectorClient(f"127.0.0.1:{port}", retries=0)
    for _ in range(600):
        try:
            if client.health(timeout_s=1) == "SERVING":
                client.close()
                return proc
        except grpc.RpcError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def _requests(workdir: Path, address: str) -> list:
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = synthesize(workdir / "d", seed=0, per_category=8, templates_per_category=6, progress=False)
    ds = load_dataset(root)
    with InspectorClient(address) as client:
        for dataset, category in ds.categories():
            rels = [r for d, c, r in ds.templates() if (d, c) == (dataset, category)]
            client.add_normal_images("bench", category, [ds.abspath(r) for r in rels], dataset=dataset)
    cache: dict[str, bytes] = {}
    reqs = []
    for sample, q in ds.questions():
        data = cache.setdefault(sample.image_path, ds.abspath(sample.image_path).read_bytes())
        reqs.append(
            build_inspect_request(
                data, q.text, q.options, line_id="bench", dataset=sample.dataset, category=sample.category,
                question_type=q.type,
            )
        )  # fmt: skip
    return reqs


def _warm_up(reqs: list, n: int) -> list[int]:
    """Request indexes that warm the server up: 20, and one per (dataset, category, question type) among those
    measured, so that first-use work (a category's knowledge passages embedded once, its memory opened) is
    not measured as overhead."""
    first: dict[tuple[str, str, int], int] = {}
    for i in range(min(n, len(reqs))):
        r = reqs[i]
        first.setdefault((r.dataset, r.category, r.question.type), i)
    return sorted(set(range(min(n, 20))) | set(first.values()))


def _measure(address: str, reqs: list, n: int, concurrency: int, server: psutil.Process) -> dict:
    clients = [InspectorClient(address, retries=0) for _ in range(concurrency)]

    def inspect(i: int) -> tuple[float, float, float, str, dict[str, float]]:
        c = clients[i % concurrency]
        t0 = time.perf_counter()
        resp = c.inspect_request(reqs[i % len(reqs)])
        e2e = (time.perf_counter() - t0) * 1000
        compute = _compute_ms(resp.trace.timings)
        audit = sum(s.compute_ms for s in resp.trace.timings if s.stage == "audit")
        shape = "+".join(e for e in EXPERTS if e in resp.trace.experts_used) or "decision only"
        failed = sorted({d.split(":")[0] for d in resp.trace.degraded})  # e.g. evidence past its deadline share
        if failed:  # the failed call's wait has no compute to subtract: all of it reads as overhead
            shape += f" ({', '.join(failed)} failed)"
        return e2e, e2e - compute - audit, audit, shape, _waits(resp.trace.timings, e2e)

    def bare(i: int) -> float:
        t0 = time.perf_counter()
        clients[i % concurrency].health()
        return (time.perf_counter() - t0) * 1000

    probe = InspectorClient(address, retries=0)
    probed: list[float] = []
    inspecting = threading.Event()

    def probe_while_inspecting() -> None:
        """The bare round trip while the inspections run: the transport under the same load (one more client)."""
        while inspecting.is_set():
            t0 = time.perf_counter()
            probe.health()
            probed.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(inspect, _warm_up(reqs, n)))
        cpu0 = sum(server.cpu_times()[:2])
        inspecting.set()
        prober = threading.Thread(target=probe_while_inspecting)
        prober.start()
        t0 = time.perf_counter()
        rows = list(pool.map(inspect, range(n)))
        wall = time.perf_counter() - t0
        inspecting.clear()
        prober.join()
        cpu = sum(server.cpu_times()[:2]) - cpu0
        bare_ms = list(pool.map(bare, range(n)))
    for c in [*clients, probe]:
        c.close()
    overhead = [r[1] for r in rows]
    with_audit = [r[1] + r[2] for r in rows]
    e2e = [r[0] for r in rows]
    by_shape = {s: _pct([r[1] for r in rows if r[3] == s], 0.5) for s in sorted({r[3] for r in rows})}
    waits = {k: _pct([r[4][k] for r in rows if k in r[4]], 0.5) for k in (*WAITED, "outside")}
    return {
        "e2e_p50_ms": _pct(e2e, 0.5),
        "overhead_p50_ms": _pct(overhead, 0.5),
        "overhead_p99_ms": _pct(overhead, 0.99),
        "degraded_requests": sum("failed)" in r[3] for r in rows),
        "overhead_with_audit_p50_ms": _pct(with_audit, 0.5),
        "overhead_p50_ms_by_experts": by_shape,
        "wait_p50_ms_by_stage": {k: v for k, v in waits.items() if v == v},  # NaN: the stage never ran
        "audit_p50_ms": _pct([r[2] for r in rows], 0.5),
        "bare_rtt_p50_ms": _pct(bare_ms, 0.5),
        "bare_rtt_p99_ms": _pct(bare_ms, 0.99),
        "bare_rtt_during_inspections_p50_ms": _pct(probed, 0.5),
        "ratio_overhead_to_bare_p50": round(percentile(overhead, 50) / percentile(bare_ms, 50), 2),
        "req_per_s": round(n / wall, 1),
        "server_cpu_ms_per_request": round(cpu * 1000 / n, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="Requests per concurrency level")
    ap.add_argument("--quick", action="store_true", help="80 requests per level")
    ap.add_argument("--loopback", action="store_true", help="stage calls over the gRPC port, not in-process")
    args = ap.parse_args()
    n = 80 if args.quick else args.requests
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        proc = _start_server(workdir, port, args.loopback)
        address = f"127.0.0.1:{port}"
        try:
            reqs = _requests(workdir, address)
            result = {
                "bench": "gateway",
                "mode": "embedded",
                "stage_calls": "loopback" if args.loopback else "in-process",
                "decision_backend": "random",
                "requests": n,
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
            for conc in (1, 16):
                for k, v in _measure(address, reqs, n, conc, psutil.Process(proc.pid)).items():
                    result[f"c{conc}_{k}"] = v
            result["goal_overhead_p50_le_3ms"] = max(result["c1_overhead_p50_ms"], result["c16_overhead_p50_ms"]) <= 3.0
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
