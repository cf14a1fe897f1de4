"""What keeping the audit trail costs: the files store's appends, and an Inspect with the log on against off.

Store: realistic records appended to the embedded files log (fsync=always with 1 and 16 concurrent writers,
fsync=interval with 16), against the baseline of a plain append with one fsync per record, in the same run
and folder. Gateway: an embedded server (decision backend `random`, so the model does not drown the figure)
answering the same question with the audit log on and off, interleaved in blocks, 1 and 16 clients.

    python loadtests/bench_audit.py [--records 1000] [--inspections 200] [--quick]

Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from echo.v1 import common_pb2, inspector_pb2, knowledge_pb2
from services.audit.files import FileAuditLog
from services.audit.record import to_json
from services.common.percentiles import percentile


def record(i: int) -> inspector_pb2.InspectionRecord:
    """About the size of a real record with references, knowledge passages and reasoning (~3 KB)."""
    return inspector_pb2.InspectionRecord(
        request_id=f"bench-{i:07d}",
        time_unix_ms=int(time.time() * 1000),
        line_id="line-b",
        dataset="Synthetic",
        category="screw",
        image_sha256=f"{i:064x}",
        request=inspector_pb2.InspectRequest(
            line_id="line-b",
            question=common_pb2.Question(
                text="There is a defect in the object. What is the appearance of the defect?",
                options={k: f"An option text of a typical MMAD length {k}." for k in "ABCD"},
            ),
        ),
        answer="B",
        answer_text="An option text of a typical MMAD length B.",
        verdict=inspector_pb2.VERDICT_ANSWERED,
        trace=common_pb2.Trace(
            question_type=common_pb2.DEFECT_DESCRIPTION,
            experts_used=["reference", "knowledge", "reasoning", "decision"],
            references=[common_pb2.Reference(id=f"ref-{i}", sha256="b" * 64, score=0.93, uri="/data/images/ab/x.png")],
            knowledge_entry_ids=["Synthetic/screw"],
            model_ids={"decision": "Qwen2-VL-7B-Instruct", "embedding": "ViT-B-16:openai", "knowledge": "MiniLM"},
            raw_reply="B",
            reasoning="The query shows a short dark jagged line on the shank that the reference lacks. " * 8,
            option_scores={k: 0.25 for k in "ABCD"},
            prompt_sha256="c" * 64,
            timings=[common_pb2.StageTiming(stage=s, ms=12.5, compute_ms=10.0) for s in ("embedding", "decision")],
        ),
        knowledge_passages=[
            knowledge_pb2.Passage(id=f"Synthetic/screw#crack.{k}", text="A jagged dark line that branches. " * 4)
            for k in ("signature", "location", "look_alikes")
        ],
    )


async def _appends(log: FileAuditLog, records: list, writers: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(records)

    async def writer() -> None:
        while queue:
            r = queue.pop()
            t = time.perf_counter()
            await log.append(r)
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return len(records) / (time.perf_counter() - start), latencies


def bench_store(root: Path, n: int) -> dict:
    records = [record(i) for i in range(n)]
    lines = [(to_json(r) + "\n").encode() for r in records]
    fd = os.open(root / "naive.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    start = time.perf_counter()
    for line in lines:
        os.write(fd, line)
        os.fsync(fd)
    naive = n / (time.perf_counter() - start)
    os.close(fd)
    out: dict = {"record_bytes": round(sum(map(len, lines)) / n), "baseline_fsync_per_record_per_s": round(naive)}
    for name, fsync, writers in (
        ("always_1", "always", 1),
        ("always_16", "always", 16),
        ("interval_16", "interval", 16),
    ):
        log = FileAuditLog(root / name, fsync=fsync)
        rate, lat = asyncio.run(_appends(log, records, writers))
        log.close_sync()
        out[name] = {
            "per_s": round(rate),
            "p50_ms": round(percentile(lat, 50), 3),
            "p99_ms": round(percentile(lat, 99), 3),
        }
    out["group_commit_speedup_16"] = round(out["always_16"]["per_s"] / naive, 2)
    return out


def bench_gateway(root: Path, n: int) -> dict:
    import numpy as np

    from app.background import BackgroundServer
    from services.client import InspectorClient, build_inspect_request
    from services.common.images import encode_png
    from services.config import load_settings
    from services.mmad.synth import render_normal

    settings = load_settings(data_dir=str(root / "state"), server={"port": 0}, decision={"backend": "random"},
                             telemetry={"log_level": "WARNING"})  # fmt: skip
    image = encode_png(render_normal("screw", np.random.default_rng(0)))
    req = build_inspect_request(image, "There is a defect in the object. Where is the defect?",
                                {"A": "Top left.", "B": "Center."}, line_id="line-b", category="screw",
                                question_type="Defect Localization")  # fmt: skip
    with BackgroundServer(settings) as srv, InspectorClient(srv.address, retries=0) as client:
        servicer = srv.embedded.stages[-1].servicer  # the audit trail sits beside the core, in the servicer
        audit = servicer.audit
        for _ in range(20):
            client.inspect_request(req)  # warm up
        lat: dict[bool, list[float]] = {True: [], False: []}
        for block in range(n // 20):
            on = block % 2 == 0
            servicer.audit = audit if on else None
            for _ in range(20):
                t = time.perf_counter()
                client.inspect_request(req)
                lat[on].append((time.perf_counter() - t) * 1000)
        rps: dict[bool, float] = {}
        for on in (True, False):
            servicer.audit = audit if on else None
            with ThreadPoolExecutor(16) as pool:
                start = time.perf_counter()
                list(pool.map(lambda _: client.inspect_request(req), range(n)))
                rps[on] = n / (time.perf_counter() - start)
        servicer.audit = audit
    p50_on, p50_off = percentile(lat[True], 50), percentile(lat[False], 50)
    return {
        "p50_ms_audit_on": round(p50_on, 2),
        "p50_ms_audit_off": round(p50_off, 2),
        "overhead_p50_ms": round(p50_on - p50_off, 2),
        "p99_ms_audit_on": round(percentile(lat[True], 99), 2),
        "p99_ms_audit_off": round(percentile(lat[False], 99), 2),
        "rps_16_clients_audit_on": round(rps[True], 1),
        "rps_16_clients_audit_off": round(rps[False], 1),
        "rps_ratio": round(rps[True] / rps[False], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--inspections", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="300 records, 80 inspections.")
    args = parser.parse_args()
    records, inspections = (300, 80) if args.quick else (args.records, args.inspections)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        root = Path(tmp)
        result = {
            "bench": "audit",
            "store_files": bench_store(root, records),
            "gateway": bench_gateway(root, inspections),
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
