"""Benchmark: images/s through the embedding service path against a raw open_clip forward of the same model.

Measured in one run, same model, batch size and machine:

- raw: `model.encode_image` on pre-made, preprocessed tensors (open_clip as a script would call it);
- batcher: pre-made tensors through the service's micro-batcher (the batching overhead alone);
- service: encoded image bytes through `EmbeddingService.embed_images` (preprocessing off the event loop,
  dynamic batching, the model), from concurrent single-image requests on the CPU.

`--gpu` measures the GPU pipeline instead: 1024 px JPEG bytes, batched nvjpeg decode and a uint8 resize
on one CUDA stream while the model (ViT-B-16 in bf16 by default) runs the previous batch on another,
through the service, against the raw model on pre-made tensors at the same batch, in the same call. It
also reports each step's time per batch run alone (decode, resize + normalize, model), the two steps
one after the other (the synchronous batch function), and the pipeline's overlap: the summed step
times over its wall time (1.0: serial; up to 2.0: fully overlapped). Goals: service/raw >= 0.9 on CPU;
with --gpu, >= 6,000 img/s and >= 0.6x raw on one H100/H200. `--gpu` refuses to run without CUDA;
`--gpu --device cpu` runs the same path on the CPU to check the benchmark itself (its figures say cpu).
`--runtimes torch,onnxruntime[,openvino]` compares the CPU runtimes of the offline image encoder
(EfficientNet-Lite0, embedding.runtime) instead, in one run on the same images: per-image p50 and p99 of the
model call (one preprocessed 224 px image, batch 1), images/s at --batch, and the largest cosine difference
of each runtime's vectors from torch's on the same images; ratios against torch from the same run.
Prints one JSON line.

    python -m loadtests.bench.embedding [--quick] [--model ViT-B-16 --weights random] [--batch 32]
    python -m loadtests.bench.embedding --gpu [--batch 256] [--images 8192]
    python -m loadtests.bench.embedding --runtimes torch,onnxruntime,openvino [--reps 200] [--batch 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from loadtests.kit.bench import img_per_s, make_images, pipeline_stats, step_profile
from services.common.pipeline import StageTimes
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder, EmbeddingService, ImageJob


def raw_forward(encoder: ClipEncoder, settings: EmbeddingSettings, batch: int, n: int, min_s: float) -> float:
    """img/s of a fresh open_clip model (same name, weights, seed, device, dtype) on pre-made tensors.

    It runs on one worker thread, as the service's model calls do: on a busy 2-core machine torch's
    OpenMP pool behaves very differently on the main thread, which would compare threads, not code.
    """
    import open_clip
    import torch
    import torch.nn.functional as F

    from services.embedding.model import register_model_configs

    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = open_clip.create_model(settings.model).to(encoder.device, encoder.dtype).eval()
    x = torch.randn(batch, 3, *encoder.image_size).to(encoder.device, encoder.dtype)
    return img_per_s(lambda: F.normalize(model.encode_image(x).float(), dim=-1).cpu(), batch, n, min_s)


async def through_service(
    svc: EmbeddingService, images: list[bytes], n: int, per_request: int, in_flight: int, warmup: int
) -> float:
    """img/s of n images sent as concurrent requests of per_request images, at most in_flight at a time.

    The pipeline's step times count from the end of the warm-up.
    """
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            chunk = [images[(i * per_request + j) % len(images)] for j in range(per_request)]
            await svc.embed_images(chunk)

    await asyncio.gather(*(one(i) for i in range(max(1, warmup // per_request))))  # warm up
    svc.pipeline.times = StageTimes()
    requests = max(1, n // per_request)
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    return requests * per_request / (time.perf_counter() - start)


async def through_batcher(svc: EmbeddingService, tensors: list[Any], n: int, in_flight: int) -> float:
    """img/s of pre-made tensors through the pipeline alone (single-image submissions, no decoding)."""
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            await svc.pipeline.submit_many([ImageJob(tensors[i % len(tensors)])])

    await asyncio.gather(*(one(i) for i in range(in_flight)))
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


def cpu_bench(args: argparse.Namespace) -> dict[str, Any]:
    settings = EmbeddingSettings(
        model=args.model,
        weights=args.weights,
        device=args.device or "cpu",
        max_batch_size=args.batch,
        max_wait_ms=args.wait_ms,
        preprocess_workers=args.workers,
    )
    encoder = ClipEncoder.from_settings(settings)
    n = args.images or (4 * args.batch if args.quick else 16 * args.batch)
    images = make_images(64, args.size, "PNG")
    tensors = [encoder.preprocess(d) for d in images]
    raw = raw_forward(encoder, settings, args.batch, n, args.min_seconds)

    async def run() -> tuple[float, float]:
        svc = EmbeddingService(encoder, settings)
        try:
            batched = await through_batcher(svc, tensors, n, 2 * args.batch)
            service = await through_service(svc, images, n, 1, 2 * args.batch, 2 * args.batch)
        finally:
            await svc.close()
        return batched, service

    batched, service = asyncio.run(run())
    return {
        "bench": "embedding",
        "mode": "cpu",
        "model": encoder.model_id,
        "device": str(encoder.device),
        "batch": args.batch,
        "images": n,
        "source": f"{args.size}px PNG bytes",
        "figure": "service img/s (PNG bytes -> preprocessing pool -> micro-batcher -> model)",
        "service_img_s": round(service, 1),
        "baseline": "raw open_clip encode_image on pre-made tensors, same batch",
        "raw_img_s": round(raw, 1),
        "ratio": round(service / raw, 3),
        "batcher_only_img_s": round(batched, 1),
        "ratio_batcher_only": round(batched / raw, 3),
        "goal": "ratio >= 0.9 on CPU",
    }


def runtime_bench(args: argparse.Namespace) -> dict[str, Any]:
    """The lite encoder on each CPU runtime, same images, same run (see the module docstring)."""
    import tempfile

    from services.common.percentiles import percentile

    runtimes = [r for r in args.runtimes.split(",") if r]
    if runtimes[0] != "torch":
        raise SystemExit("bench_embedding: --runtimes must start with torch (the baseline of the ratios)")
    images = make_images(32, args.size, "PNG")
    out: dict[str, Any] = {}
    torch_vectors: np.ndarray | None = None
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1) as pool:  # the model thread, as served
        for rt in runtimes:
            settings = EmbeddingSettings(device="cpu", runtime=rt, runtime_cache=tmp, max_batch_size=args.batch)
            encoder = ClipEncoder.for_images(settings)
            tensors = [encoder.preprocess(d) for d in images]
            one = encoder._stack(tensors[:1])
            batch = encoder._stack([tensors[i % len(tensors)] for i in range(args.batch)])

            def latencies(enc: ClipEncoder = encoder, x: Any = one) -> list[float]:
                for _ in range(5):
                    enc.forward(x)
                ms = []
                for _ in range(args.reps):
                    start = time.perf_counter()
                    enc.forward(x)
                    ms.append((time.perf_counter() - start) * 1000.0)
                return ms

            ms = pool.submit(latencies).result()
            n = args.images or (4 * args.batch if args.quick else 16 * args.batch)
            ips = img_per_s(lambda enc=encoder, x=batch: enc.forward(x), args.batch, n, args.min_seconds)
            vectors = pool.submit(encoder.embed_batch, images).result()
            if torch_vectors is None:
                torch_vectors = vectors
            cos = (vectors * torch_vectors).sum(axis=1)
            out[rt] = {
                "p50_ms": round(percentile(ms, 50), 2),
                "p99_ms": round(percentile(ms, 99), 2),
                "img_s": round(ips, 1),
                "max_cosine_diff_vs_torch": float(f"{float((1.0 - cos).max()):.2e}"),
            }
            out["model"] = encoder.model_id
    base = out["torch"]
    for rt in runtimes[1:]:
        out[rt]["speedup_p50"] = round(base["p50_ms"] / out[rt]["p50_ms"], 2)
        out[rt]["speedup_img_s"] = round(out[rt]["img_s"] / base["img_s"], 2)
    import torch

    return {
        "bench": "embedding_runtime",
        "mode": "cpu-runtimes",
        "model": out.pop("model"),
        "threads": torch.get_num_threads(),
        "images": len(images),
        "source": f"{args.size}px PNG bytes, preprocessed to 224 px",
        "figure": "per-image p50/p99 of the model call (batch 1) and img/s at the batch, per runtime",
        "batch": args.batch,
        "reps": args.reps,
        "baseline": "torch fp32, same encoder, same images, same run",
        "runtimes": {rt: out[rt] for rt in runtimes},
    }


def gpu_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if not args.device and not torch.cuda.is_available():
        raise SystemExit(
            "bench_embedding --gpu: no CUDA device is visible here (torch.cuda.is_available() is False), so there "
            "is no GPU figure to measure. Run it on a GPU machine, or add --device cpu to check the same path on "
            "the CPU (its figures are CPU figures)."
        )
    settings = EmbeddingSettings(
        model=args.model,
        weights=args.weights,
        device=args.device or "cuda",
        max_batch_size=args.batch,
        max_wait_ms=args.wait_ms,
        preprocess_workers=args.workers,
    )
    encoder = ClipEncoder.from_settings(settings)
    on_cuda = encoder.device.type == "cuda"
    n = args.images or (8 * args.batch if args.quick else 32 * args.batch)
    images = make_images(128, args.size, "JPEG")
    out: dict[str, Any] = {
        "bench": "embedding",
        "mode": "gpu" if on_cuda else "gpu-path-on-cpu",
        "model": encoder.model_id,
        "device": torch.cuda.get_device_name(0) if on_cuda else str(encoder.device),
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "batch": args.batch,
        "images": n,
        "source": f"{args.size}px JPEG bytes ({np.mean([len(d) for d in images]) / 1024:.0f} KiB avg)",
    }
    out["raw_img_s"] = round(raw_forward(encoder, settings, args.batch, n, args.min_seconds), 1)

    # The device path must give the CPU (PIL) path's embeddings: one preprocessing geometry for both.
    sample = images[:16] + make_images(4, 333, "JPEG", seed=1) + make_images(2, 200, "PNG", seed=2)
    on_device = encoder.embed_items([ImageJob(d) for d in sample])  # bytes: the tensor path (nvjpeg on CUDA)
    on_cpu = encoder.embed_batch([encoder.preprocess(d) for d in sample])  # PIL decode + open_clip transform
    device_vectors = np.stack([r.vector for r in on_device if not isinstance(r, BaseException)])
    out["device_vs_cpu_preprocess_cos_min"] = round(float((device_vectors * on_cpu).sum(axis=1).min()), 5)

    steps = max(1, n // args.batch // 4)
    jobs = [ImageJob(images[i % len(images)], False, f"images[{i}]") for i in range(args.batch)]

    def serial() -> float:
        """Both steps one after the other on one thread (what the service did before the pipeline)."""
        encoder.run_batch(encoder.prepare_batch(jobs, tensor_path=True).payload)
        start = time.perf_counter()
        for _ in range(steps):
            encoder.run_batch(encoder.prepare_batch(jobs, tensor_path=True).payload)
        return steps * args.batch / (time.perf_counter() - start)

    with ThreadPoolExecutor(1) as pool:  # worker threads, as the service's steps run (see raw_forward)
        profile = (images, args.batch, steps, encoder.preprocess_cfg, encoder.device, encoder.dtype, encoder.forward)
        out["step_ms_per_batch"] = pool.submit(step_profile, *profile).result()
        out["serial_img_s"] = round(pool.submit(serial).result(), 1)

    async def run() -> tuple[float, dict[str, float]]:
        svc = EmbeddingService(encoder, settings, decode_on_device=True)
        try:
            ips = await through_service(svc, images, n, args.per_request, args.in_flight, 4 * args.batch)
            return ips, pipeline_stats(svc.pipeline.times)
        finally:
            await svc.close()

    service, pipe = asyncio.run(run())
    out.update(
        {
            "figure": "service img/s (JPEG bytes -> batched decode + uint8 resize on one stream, model on another)",
            "service_img_s": round(service, 1),
            "baseline": "raw open_clip encode_image on pre-made tensors, same batch, same call",
            "ratio": round(service / out["raw_img_s"], 3),
            "ratio_serial": round(out["serial_img_s"] / out["raw_img_s"], 3),
            "pipeline": pipe,
            "per_request": args.per_request,
            "goal": "service >= 6000 img/s and >= 0.6x raw on one H100/H200 (ViT-B-16 bf16, 1024 px JPEG)",
        }
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="GPU pipeline from 1024 px JPEG bytes (ViT-B-16, batch 256)")
    ap.add_argument("--quick", action="store_true", help="fewer images")
    ap.add_argument("--model", default="", help="open_clip model (default: echo-tiny-clip; ViT-B-16 with --gpu)")
    ap.add_argument("--weights", default="random", help="weights source (see embedding.weights)")
    ap.add_argument("--device", default="", help="override the device (e.g. run the --gpu path on cpu to test it)")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default 32; 256 with --gpu)")
    ap.add_argument("--images", type=int, default=0, help="images per measurement")
    ap.add_argument("--size", type=int, default=0, help="source image side in px (default 256; 1024 with --gpu)")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="shortest raw-forward measurement")
    ap.add_argument("--wait-ms", type=float, default=5.0, help="micro-batcher max wait")
    ap.add_argument("--workers", type=int, default=2, help="preprocessing threads")
    ap.add_argument("--per-request", type=int, default=32, help="--gpu: images per request")
    ap.add_argument("--in-flight", type=int, default=32, help="--gpu: concurrent requests")
    ap.add_argument("--runtimes", default="", help="compare the lite encoder's CPU runtimes, e.g. torch,onnxruntime")
    ap.add_argument("--reps", type=int, default=100, help="--runtimes: timed single-image calls per runtime")
    args = ap.parse_args()
    if args.runtimes:
        args.batch, args.size = args.batch or 16, args.size or 256
        print(json.dumps(runtime_bench(args)))
        return
    args.model = args.model or ("ViT-B-16" if args.gpu else "echo-tiny-clip")
    args.batch = args.batch or (256 if args.gpu else 32)
    args.size = args.size or (1024 if args.gpu else 256)
    print(json.dumps(gpu_bench(args) if args.gpu else cpu_bench(args)))


if __name__ == "__main__":
    main()
