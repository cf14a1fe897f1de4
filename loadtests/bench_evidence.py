"""Benchmark: the evidence stage's speed, and what its pretrained weights bring, in one run.

On the frozen evaluation split of bench_evidence_quality (a subset of each category's queries), measured
in the same run:

- bank build time per 100 normal images (features of every pose, coreset, index, leave-one-out calibration);
- per-image latency of one analysis at a time (decode, features, nearest patches, map, boxes), p50 and p90;
- images/s with `--clients` concurrent analyses sharing backbone calls through the dynamic batcher;
- image AUROC of the stage with the real weights against the same code with random weights.

CPU by default; `--gpu` runs the stage on CUDA (the device must be there). Prints one JSON line.

    python loadtests/bench_evidence.py [--gpu] [--queries 20] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_evidence_quality import Category, load_categories, split_data

from services.evaluation.anomaly_metrics import auroc
from services.evidence.config import EvidenceSettings
from services.evidence.core import EvidenceService

LINE = "bench"


def build(service: EvidenceService, cats: list[Category]) -> float:
    """Seconds to build every category's bank."""
    start = time.perf_counter()
    for c in cats:
        service.add_normal_images(LINE, c.dataset, c.name, c.templates)
    return time.perf_counter() - start


def image_auroc(service: EvidenceService, cats: list[Category], n: int) -> tuple[float, list[float]]:
    """Mean over categories of image AUROC on the first n queries of each; also each analysis' latency (ms)."""
    aurocs, latencies = [], []
    for c in cats:
        scores = []
        for q in c.queries[:n]:
            start = time.perf_counter()
            scores.append(service.analyze_sync(LINE, c.dataset, c.name, q.data).score)
            latencies.append((time.perf_counter() - start) * 1000)
        aurocs.append(auroc([q.label for q in c.queries[:n]], scores))
    return float(np.mean(aurocs)), latencies


async def throughput(service: EvidenceService, cats: list[Category], n: int, clients: int) -> float:
    """Images/s with `clients` concurrent analyze() calls (the batched path a server takes)."""
    jobs = [(c, q.data) for c in cats for q in c.queries[:n]]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def client() -> None:
        while not queue.empty():
            c, data = queue.get_nowait()
            await service.analyze(LINE, c.dataset, c.name, data)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    await service.close()
    return len(jobs) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="Run the stage on CUDA.")
    ap.add_argument("--queries", type=int, default=20, help="Queries per category (half normal, half defective).")
    ap.add_argument("--clients", type=int, default=8, help="Concurrent analyses for the images/s figure.")
    ap.add_argument("--categories", default="", help="Comma-separated subset (default: all).")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "echo-evidence-bench"), help="Data cache.")
    args = ap.parse_args()
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            ap.exit(2, "bench_evidence: --gpu needs a CUDA device, and torch sees none here; run without --gpu\n")
    device = "cuda" if args.gpu else "cpu"
    only = [c for c in args.categories.split(",") if c] or None
    cats = load_categories(split_data("eval", Path(args.cache)), only)
    images = sum(len(c.templates) for c in cats)
    line: dict[str, Any] = {"bench": "evidence", "device": device, "categories": [c.name for c in cats]}
    with tempfile.TemporaryDirectory() as tmp:
        real = EvidenceService.from_settings(EvidenceSettings(device=device, bank_store=f"{tmp}/real"))
        build_s = build(real, cats)
        auroc_real, lat = image_auroc(real, cats, args.queries)
        ips = asyncio.run(throughput(real, cats, args.queries, args.clients))
        rnd = EvidenceService.from_settings(EvidenceSettings(device=device, bank_store=f"{tmp}/rnd", weights="random"))
        build(rnd, cats)
        auroc_random, _ = image_auroc(rnd, cats, args.queries)
    line.update(
        backbone_id=real.backbone_id,
        bank_build_s_per_100_images=round(100 * build_s / images, 2),
        normal_images=images,
        latency_ms_p50=round(float(np.percentile(lat, 50)), 1),
        latency_ms_p90=round(float(np.percentile(lat, 90)), 1),
        images_per_s_sequential=round(1000 / float(np.mean(lat)), 2),
        images_per_s_batched=round(ips, 2),
        clients=args.clients,
        queries=len(lat),
        image_auroc_real_weights=round(auroc_real, 4),
        image_auroc_random_weights=round(auroc_random, 4),
    )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
