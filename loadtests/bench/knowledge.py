"""Benchmark: GetContext latency over gRPC, CSK (MiniLM on CPU) against DK (no model) as the baseline.

python -m loadtests.bench.knowledge [--quick]

Starts the knowledge stage in this process on a free port with the shipped
knowledge_base/, builds MMAD-style questions of every type for every entry,
warms up (one CSK request per entry embeds its passages once), then sends the
same questions sequentially in DK mode and in CSK mode. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc

from echo.v1 import common_pb2, knowledge_pb2, knowledge_pb2_grpc
from services.common.percentiles import percentile
from services.common.serving import start_server
from services.config import load_settings
from services.knowledge.entries import Entry
from services.knowledge.server import build_stage

QUESTIONS = (
    (common_pb2.ANOMALY_DETECTION, "Is there any defect in the object?"),
    (common_pb2.DEFECT_CLASSIFICATION, "There is a defect in the object. What is the type of the defect?"),
    (common_pb2.DEFECT_LOCALIZATION, "There is a defect in the object. Where is the defect?"),
    (common_pb2.DEFECT_DESCRIPTION, "There is a defect in the object. What is the appearance of the defect?"),
    (common_pb2.DEFECT_ANALYSIS, "There is a defect in the object. What is the effect of the defect?"),
)


def questions_for(entry: Entry) -> list[knowledge_pb2.GetContextRequest]:
    """One question of each type, options drawn from the entry's own knowledge (as MMAD's are)."""
    d = entry.defects
    pick = [d[i % len(d)] for i in range(4)]
    options = {
        common_pb2.ANOMALY_DETECTION: ["Yes.", "No."],
        common_pb2.DEFECT_CLASSIFICATION: [x.display_name for x in pick],
        common_pb2.DEFECT_LOCALIZATION: ["At the top left.", "In the center.", "At the bottom right.", "At the edge."],
        common_pb2.DEFECT_DESCRIPTION: [x.signature.split(". ")[0] for x in pick],
        common_pb2.DEFECT_ANALYSIS: [x.effect.split(". ")[0] for x in pick],
    }
    return [
        knowledge_pb2.GetContextRequest(
            dataset=entry.dataset,
            category=entry.category,
            question=common_pb2.Question(
                text=text, options=dict(zip("ABCD", options[qtype], strict=False)), type=qtype
            ),
        )
        for qtype, text in QUESTIONS
    ]


async def run(n: int, threads: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-knowledge-")
    settings = load_settings(data_dir=tmp, knowledge={"store": "files", "torch_threads": threads})
    t0 = time.perf_counter()
    stage = await build_stage(settings.knowledge)
    load_s = time.perf_counter() - t0
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    guide = stage.servicer.guide  # type: ignore[attr-defined]
    reqs = [r for e in guide.list_entries() for r in questions_for(e)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = knowledge_pb2_grpc.KnowledgeStub(channel)
        cold = []
        for r in reqs[:: len(QUESTIONS)]:  # the first CSK request per entry embeds its passages
            r2 = knowledge_pb2.GetContextRequest()
            r2.CopyFrom(r)
            r2.mode = common_pb2.CONTEXT_SPECIFIC
            start = time.perf_counter()
            await stub.GetContext(r2)
            cold.append((time.perf_counter() - start) * 1000)
        out: dict[str, dict[str, list[float]]] = {}
        for mode_name, mode in (("dk", common_pb2.DOMAIN_KNOWLEDGE), ("csk", common_pb2.CONTEXT_SPECIFIC)):
            lat, compute, sizes = [], [], []
            for i in range(n):
                r = knowledge_pb2.GetContextRequest()
                r.CopyFrom(reqs[i % len(reqs)])
                r.mode = mode
                start = time.perf_counter()
                reply = await stub.GetContext(r)
                lat.append((time.perf_counter() - start) * 1000)
                compute.append(reply.compute_ms)
                sizes.append(len(reply.text))
            out[mode_name] = {"lat": lat, "compute": compute, "chars": sizes}
    await server.stop(None)
    guide.close()
    import torch

    dk, csk = out["dk"], out["csk"]
    return {
        "bench": "knowledge_get_context",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "entries": len(reqs) // len(QUESTIONS),
        "requests_per_mode": n,
        "csk_p50_ms": round(percentile(csk["lat"], 50), 2),
        "csk_p99_ms": round(percentile(csk["lat"], 99), 2),
        "csk_compute_p50_ms": round(percentile(csk["compute"], 50), 2),
        "baseline_dk_p50_ms": round(percentile(dk["lat"], 50), 2),
        "baseline_dk_p99_ms": round(percentile(dk["lat"], 99), 2),
        "ratio_csk_over_dk_p50": round(percentile(csk["lat"], 50) / percentile(dk["lat"], 50), 2),
        "csk_first_request_per_entry_p50_ms": round(percentile(cold, 50), 1),
        "csk_chars_mean": round(statistics.mean(csk["chars"])),
        "dk_chars_mean": round(statistics.mean(dk["chars"])),
        "stage_load_s": round(load_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 requests per mode instead of 1000.")
    parser.add_argument("--requests", type=int, default=0, help="Requests per mode (overrides --quick).")
    parser.add_argument("--threads", type=int, default=0, help="knowledge.torch_threads (0: torch's default).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = args.requests or (100 if args.quick else 1000)
    print(json.dumps(asyncio.run(run(n, args.threads))), flush=True)


if __name__ == "__main__":
    main()
