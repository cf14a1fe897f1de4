"""What several benchmarks measure the same way, defined once: test images, img/s of a step, per-step times
of the image path, a pipeline's batch statistics, and the stages' compute on the Inspector's critical path."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from services.common.pipeline import StageTimes

REFERENCE_BRANCH = {"embedding", "embedding.preprocess", "category", "retrieval"}


SERIAL = {"plan", "decision", "decision.preprocess"}


def make_images(n: int, size: int, fmt: str, seed: int = 0) -> list[bytes]:
    """n distinct smooth random images, encoded (PNG or JPEG), size x size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append(buf.getvalue())
    return out


def img_per_s(step: Callable[[], Any], batch: int, n: int, min_s: float) -> float:
    """img/s of `step` (one batch, waited for) on one worker thread: 3 warm-up calls, then n images or min_s."""
    import torch

    def measure() -> float:
        with torch.inference_mode():
            for _ in range(3):
                step()
            steps, start = 0, time.perf_counter()
            while steps < max(1, n // batch) or time.perf_counter() - start < min_s:
                step()
                steps += 1
            return steps * batch / (time.perf_counter() - start)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(measure).result()


def step_profile(
    images: list[bytes], batch: int, steps: int, cfg: dict[str, Any], device: Any, dtype: Any, model: Callable
) -> dict[str, float]:
    """Milliseconds per batch of each step run alone, each waited for (decode, resize + normalize, model).

    `cfg`: the tensor path's geometry; `model`: pixels on `device` in `dtype` -> its result on the host.
    """
    import torch

    from services.embedding.preprocess import decode_tensors, normalize_into, resize_crop_uint8

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    datas = [images[i % len(images)] for i in range(batch)]
    totals = {"decode_ms": 0.0, "resize_normalize_ms": 0.0, "model_ms": 0.0}
    for step in range(steps + 1):  # the first round warms up
        t0 = time.perf_counter()
        decoded = decode_tensors(datas, device)
        sync()
        t1 = time.perf_counter()
        small = resize_crop_uint8(torch.stack(decoded), cfg)
        pixels = torch.empty(small.shape, dtype=dtype, device=device)
        normalize_into(pixels, small, cfg)
        sync()
        t2 = time.perf_counter()
        model(pixels)
        t3 = time.perf_counter()
        if step:
            for key, ms in zip(totals, ((t1 - t0), (t2 - t1), (t3 - t2)), strict=True):
                totals[key] += ms * 1000.0 / steps
    return {k: round(v, 2) for k, v in totals.items()}


def pipeline_stats(t: StageTimes) -> dict[str, Any]:
    """A pipeline's batches, each step's ms per batch, and the overlap (summed step times / wall; 1.0: serial)."""
    wall = t.wall_ms()
    return {
        "batches": t.batches,
        "mean_batch": round(t.items / max(1, t.batches), 1),
        "prepare_ms_per_batch": round(t.prepare_ms / max(1, t.batches), 2),
        "model_ms_per_batch": round(t.run_ms / max(1, t.batches), 2),
        "overlap": round((t.prepare_ms + t.run_ms) / wall, 3) if wall else 0.0,
    }


def critical_compute_ms(timings) -> float:  # type: ignore[no-untyped-def]
    """The stages' own work on the critical path (services/gateway/core.py, _fan_out): the reference branch
    knowledge and evidence overlap unless the category had to be inferred first."""
    ms = {}
    for t in timings:
        ms[t.stage] = ms.get(t.stage, 0.0) + t.compute_ms
    reference = sum(v for k, v in ms.items() if k in REFERENCE_BRANCH)
    knowledge, evidence = ms.get("knowledge", 0.0), ms.get("evidence", 0.0)
    branches = reference + max(knowledge, evidence) if "category" in ms else max(reference, knowledge, evidence)
    return branches + sum(v for k, v in ms.items() if k in SERIAL)
