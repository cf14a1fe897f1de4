"""Benchmark: the evidence stage's speed, and what its pretrained weights bring, in one run.

On the frozen evaluation split of bench_evidence_quality (a subset of each category's queries), measured
in the same run:

- bank build time per 100 normal images (features of every pose, coreset, index, k-fold calibration);
- per-image latency of one analysis at a time (decode, features, nearest patches, map, boxes), p50 and p90;
- images/s with `--clients` concurrent analyses sharing backbone calls through the dynamic batcher;
- image AUROC of the stage with the real weights against the same code with random weights.

CPU by default. `--gpu` runs the stage on CUDA (it refuses in one line without a CUDA device) and adds,
like `bench_embedding --gpu`, the image path against the raw backbone from the same call:

- raw: the backbone's forward (the configured feature levels) on pre-made normalised tensors, same batch
  and dtype (fp16 by default on CUDA);
- pipeline: 1024 px JPEG bytes through the stage's pipeline (batched nvjpeg decode and uint8 resize on one
  stream while the backbone, aggregation and copy to the host run the previous batch on another), img/s,
  its ratio to raw, and the pipeline's step times and overlap; serial: the two steps one after the other;
- each step's ms per batch run alone (decode, resize + normalise, backbone + aggregation);
- what the GPU path does to the scores: image AUROC and the largest score shift (as a share of the
  threshold) of the tensor path in fp32, fp16 (the default) and bf16 against fp32 + PIL (the CPU path),
  same queries.

`--gpu --device cpu` runs the same path on the CPU to check the benchmark itself (its figures say cpu).

`--runtimes torch,onnxruntime,openvino` compares the CPU runtimes of the backbone (evidence.runtime) instead,
all in one run, each building its own banks on the same `--templates` normal images per category: per-image
analyze latency (decode, features, nearest patches, map, boxes; p50, p99, images/s), the backbone alone
(features of one pre-made 448 px tensor, p50), bank build time, image AUROC, and against torch the largest
score shift (|score - torch's| / torch's threshold) and verdict agreement; ratios are torch's ms over each
runtime's. Self-configuration is off (the fixed 448 px configuration), so every runtime runs the same graph.
Prints one JSON line.

    python -m loadtests.bench.evidence [--queries 20] [--clients 8]
    python -m loadtests.bench.evidence --gpu [--batch 64] [--images 4096]
    python -m loadtests.bench.evidence --runtimes torch,onnxruntime,openvino [--templates 10] [--queries 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.bench.evidence_quality import Category, load_categories, split_data
from loadtests.kit.bench import img_per_s, make_images, pipeline_stats, step_profile
from services.common.anomaly_metrics import auroc
from services.common.pipeline import StageTimes
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


def scores(service: EvidenceService, cats: list[Category], n: int) -> dict[str, list[float]]:
    """Each category's banks built, then the scores of its first n queries."""
    build(service, cats)
    return {c.name: [service.analyze_sync(LINE, c.dataset, c.name, q.data).score for q in c.queries[:n]] for c in cats}


def score_shifts(args: argparse.Namespace, device: str, cats: list[Category], tmp: str) -> dict[str, Any]:
    """Image AUROC and score shifts of the GPU path's variants against the CPU path (fp32, PIL), same queries.

    The shift of a query is |score - score on the CPU path| / the CPU path's threshold: what moves a verdict.
    """
    variants = {
        "cpu_path_fp32_pil": ("fp32", False),
        "fp32_tensor": ("fp32", True),
        "fp16_tensor": ("fp16", True),  # the CUDA default
        "bf16_tensor": ("bf16", True),
    }
    out: dict[str, Any] = {}
    base: dict[str, list[float]] = {}
    thresholds: dict[str, float] = {}
    for name, (precision, tensor) in variants.items():
        settings = EvidenceSettings(device=device, bank_store=f"{tmp}/{name}", precision=precision)
        service = EvidenceService.from_settings(settings, decode_on_device=tensor)
        got = scores(service, cats, args.queries)
        aurocs = [auroc([q.label for q in c.queries[: args.queries]], got[c.name]) for c in cats]
        entry: dict[str, Any] = {"image_auroc": round(float(np.mean(aurocs)), 4)}
        if not base:
            base = got
            thresholds = {b.category: b.calibration.threshold for b in service.stats(LINE) if b.calibration}
        else:
            shift = [abs(a - b) / thresholds[c] for c in got for a, b in zip(got[c], base[c], strict=True)]
            entry.update(score_shift_max=round(max(shift), 4), score_shift_p50=round(float(np.median(shift)), 4))
        out[name] = entry
    return out


def gpu_figures(args: argparse.Namespace, service: EvidenceService) -> dict[str, Any]:
    """The image path against the raw backbone, in one call: raw, steps alone, serial, pipelined."""
    import torch

    feats = service.features
    on_cuda = service.preprocess.device.type == "cuda"
    n = args.images or 16 * args.batch
    images = make_images(64, args.size, "JPEG")
    out: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(0) if on_cuda else "cpu",
        "dtype": str(service.preprocess.dtype).removeprefix("torch."),
        "batch": args.batch,
        "images": n,
        "source": f"{args.size}px JPEG bytes ({np.mean([len(d) for d in images]) / 1024:.0f} KiB avg)",
    }

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    size = service.input_size
    x = torch.randn(args.batch, 3, size, size).to(service.preprocess.device, service.preprocess.dtype)
    raw = img_per_s(lambda: (feats.forward(x), sync()), args.batch, n, args.min_seconds)
    out["raw_img_s"] = round(raw, 1)
    steps = max(1, n // args.batch // 4)
    items = [(images[i % len(images)], f"images[{i}]") for i in range(args.batch)]
    pre = service.preprocess
    with ThreadPoolExecutor(1) as pool:  # worker threads, as the pipeline's steps run
        profile = (images, args.batch, steps, pre.tensor_cfg, pre.device, pre.dtype, feats.extract)
        out["step_ms_per_batch"] = pool.submit(step_profile, *profile).result()
    serial = img_per_s(lambda: service.run_batch(service.prepare_batch(items).payload), args.batch, n // 4, 0)
    out["serial_img_s"] = round(serial, 1)

    async def pipelined() -> tuple[float, dict[str, Any]]:
        gate = asyncio.Semaphore(args.in_flight)

        async def one(i: int) -> None:
            async with gate:
                chunk = [items[(i * args.per_request + j) % len(items)] for j in range(args.per_request)]
                await service.pipeline.submit_many(chunk)

        await asyncio.gather(*(one(i) for i in range(max(1, 4 * args.batch // args.per_request))))  # warm up
        service.pipeline.times = StageTimes()
        requests = max(1, n // args.per_request)
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        ips = requests * args.per_request / (time.perf_counter() - start)
        stats = pipeline_stats(service.pipeline.times)
        await service.close()
        return ips, stats

    ips, stats = asyncio.run(pipelined())
    out.update(
        figure="pipeline img/s (JPEG bytes -> batched decode + uint8 resize on one stream, backbone on another)",
        pipeline_img_s=round(ips, 1),
        baseline="raw backbone forward (feature levels) on pre-made tensors, same batch and dtype, same call",
        ratio=round(ips / raw, 3),
        ratio_serial=round(serial / raw, 3),
        pipeline=stats,
        per_request=args.per_request,
        goal=">= 0.6x raw (issue 16)",
    )
    return out


def ms_stats(ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(ms, 50)), 1),
        "p99": round(float(np.percentile(ms, 99)), 1),
        "images_per_s": round(1000 / float(np.mean(ms)), 2),
    }


def runtime_comparison(args: argparse.Namespace, cats: list[Category], tmp: str) -> dict[str, Any]:
    """Each runtime on the same banks' images and queries, in this one run (see the module docstring)."""
    import torch

    runtimes = [r for r in args.runtimes.split(",") if r]
    if runtimes[0] != "torch":
        raise SystemExit("bench_evidence: --runtimes must start with torch (the baseline of the ratios)")
    out: dict[str, Any] = {}
    base: dict[str, list[float]] = {}
    base_verdicts: list[bool] = []
    thresholds: dict[str, float] = {}
    x = torch.randn(1, 3, 448, 448)
    for rt in runtimes:
        settings = EvidenceSettings(
            device="cpu",
            runtime=rt,
            runtime_cache=f"{tmp}/runtime-cache",
            bank_store=f"{tmp}/{rt}",
            auto_config=False,
        )
        t0 = time.perf_counter()
        service = EvidenceService.from_settings(settings)
        start_s = time.perf_counter() - t0
        build_s = build(service, cats)
        service.analyze_sync(LINE, cats[0].dataset, cats[0].name, cats[0].queries[0].data)  # warm up
        got: dict[str, list[float]] = {}
        verdicts: list[bool] = []
        lat: list[float] = []
        for c in cats:
            got[c.name] = []
            for q in c.queries[: args.queries]:
                t = time.perf_counter()
                r = service.analyze_sync(LINE, c.dataset, c.name, q.data)
                lat.append((time.perf_counter() - t) * 1000)
                got[c.name].append(r.score)
                verdicts.append(r.anomalous)
        backbone = []
        for _ in range(args.backbone_reps):
            t = time.perf_counter()
            service.features.extract(x)
            backbone.append((time.perf_counter() - t) * 1000)
        aurocs = [auroc([q.label for q in c.queries[: args.queries]], got[c.name]) for c in cats]
        entry: dict[str, Any] = {
            "analyze_ms": ms_stats(lat),
            "backbone_ms_p50": round(float(np.percentile(backbone, 50)), 1),
            "bank_build_s_per_100_images": round(100 * build_s / sum(len(c.templates) for c in cats), 2),
            "start_s": round(start_s, 2),
            "image_auroc": round(float(np.mean(aurocs)), 4),
        }
        if not base:
            base, base_verdicts = got, verdicts
            thresholds = {b.category: b.calibration.threshold for b in service.stats(LINE) if b.calibration}
        else:
            shift = [abs(a - b) / thresholds[c] for c in got for a, b in zip(got[c], base[c], strict=True)]
            torch_entry = out["torch"]
            entry.update(
                score_shift_max=float(f"{max(shift):.3g}"),
                score_shift_p50=float(f"{float(np.median(shift)):.3g}"),
                verdicts_equal=sum(a == b for a, b in zip(verdicts, base_verdicts, strict=True)),
                analyze_speedup_p50=round(torch_entry["analyze_ms"]["p50"] / entry["analyze_ms"]["p50"], 2),
                backbone_speedup_p50=round(torch_entry["backbone_ms_p50"] / entry["backbone_ms_p50"], 2),
            )
        out[rt] = entry
    return {
        "queries": sum(min(len(c.queries), args.queries) for c in cats),
        "templates_per_category": args.templates,
        "threads": torch.get_num_threads(),
        "backbone_id": service.backbone_id,
        "runtimes": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="Run the stage on CUDA.")
    ap.add_argument("--queries", type=int, default=20, help="Queries per category (half normal, half defective).")
    ap.add_argument("--clients", type=int, default=8, help="Concurrent analyses for the images/s figure.")
    ap.add_argument("--categories", default="", help="Comma-separated subset (default: all).")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "echo-evidence-bench"), help="Data cache.")
    ap.add_argument("--device", default="", help="--gpu: override the device (cpu checks the GPU path's code here)")
    ap.add_argument("--batch", type=int, default=64, help="--gpu: images per backbone call")
    ap.add_argument("--images", type=int, default=0, help="--gpu: images per measurement (default 16 batches)")
    ap.add_argument("--size", type=int, default=1024, help="--gpu: side of the JPEG images of the pipeline figure")
    ap.add_argument("--per-request", type=int, default=16, help="--gpu: images per pipeline submission")
    ap.add_argument("--in-flight", type=int, default=32, help="--gpu: concurrent pipeline submissions")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="--gpu: shortest raw-forward measurement")
    ap.add_argument("--runtimes", default="", help="Compare CPU runtimes instead, e.g. torch,onnxruntime,openvino.")
    ap.add_argument("--templates", type=int, default=0, help="--runtimes: normal images per bank (0: all).")
    ap.add_argument("--backbone-reps", type=int, default=10, help="--runtimes: backbone-alone calls timed.")
    args = ap.parse_args()
    if args.gpu and not args.device:
        import torch

        if not torch.cuda.is_available():
            ap.exit(2, "bench_evidence: --gpu needs a CUDA device, and torch sees none here; run without --gpu\n")
    device = (args.device or "cuda") if args.gpu else "cpu"
    only = [c for c in args.categories.split(",") if c] or None
    cats = load_categories(split_data("eval", Path(args.cache)), only)
    images = sum(len(c.templates) for c in cats)
    line: dict[str, Any] = {"bench": "evidence", "device": device, "categories": [c.name for c in cats]}
    if args.runtimes:
        if args.templates:
            for c in cats:
                c.templates = c.templates[: args.templates]
        line["bench"] = "evidence_runtime"
        with tempfile.TemporaryDirectory() as tmp:
            line.update(runtime_comparison(args, cats, tmp))
        print(json.dumps(line))
        return
    if args.gpu:
        line["mode"] = "gpu" if device == "cuda" else f"gpu-path-on-{device}"

    def stage(store: str, **settings: Any) -> EvidenceService:
        """The stage on `device`; with --gpu, at --batch and on the GPU path (also with --device cpu)."""
        if args.gpu:
            settings["max_batch_size"] = args.batch
        s = EvidenceSettings(device=device, bank_store=store, **settings)
        return EvidenceService.from_settings(s, decode_on_device=True if args.gpu else None)

    with tempfile.TemporaryDirectory() as tmp:
        real = stage(f"{tmp}/real")
        build_s = build(real, cats)
        auroc_real, lat = image_auroc(real, cats, args.queries)
        ips = asyncio.run(throughput(real, cats, args.queries, args.clients))
        rnd = stage(f"{tmp}/rnd", weights="random")
        build(rnd, cats)
        auroc_random, _ = image_auroc(rnd, cats, args.queries)
        if args.gpu:
            line["gpu"] = gpu_figures(args, stage(f"{tmp}/g"))
            line["gpu_path_scores_vs_cpu_path"] = score_shifts(args, device, cats, tmp)
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
