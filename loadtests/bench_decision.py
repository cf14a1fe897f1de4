"""Benchmark the decision stage on CPU with the offline Qwen2-VL: one pass vs two passes, tokens/s, batching.

Prints ONE JSON line. Each figure comes with its baseline, measured in the same run:
- one-pass decision p50 vs a bare processor + forward of the same prompt (the stack's overhead);
- two-pass (Reasoning Expert + Decision Maker) p50 vs one pass, and reasoning tokens/s;
- concurrent decisions through the micro-batcher vs the same decisions one at a time.

    python loadtests/bench_decision.py [--quick] [--model-cache DIR] [--device cpu]

The model has random weights: latencies and throughput are real, answers are not.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.percentiles import percentile
from services.decision.backends.local import LocalModel, TransformersBackend
from services.decision.config import DecisionSettings
from services.decision.core import DecisionInput, DecisionMaker
from services.decision.preprocess import prepare_images
from services.decision.prompt import PromptInput, final_prompts

QUESTION = "Is there any defect in the object?"
OPTIONS = {"A": "Yes.", "B": "No."}


def _png(seed: int, size: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _p50(xs: list[float]) -> float:
    return round(percentile(xs, 50), 2)


async def _run(args: argparse.Namespace) -> dict:
    settings = DecisionSettings(
        model_cache=args.model_cache, device=args.device, max_reasoning_tokens=args.reasoning_tokens
    )
    t = time.perf_counter()
    model = LocalModel.load(settings)
    load_s = time.perf_counter() - t
    maker = DecisionMaker(TransformersBackend.from_settings(settings, model), settings)
    n = 8 if args.quick else 30
    inputs = [
        DecisionInput(_png(i, args.image_px), QUESTION, OPTIONS, [_png(1000 + i, args.image_px)], category="bottle")
        for i in range(n)
    ]
    for inp in inputs[:2]:  # warm-up: first calls allocate and pick kernels
        await maker.decide(inp)
        await maker.decide(DecisionInput(**{**inp.__dict__, "reasoning": True}))

    # Baseline: the same one-pass prompt through the bare processor + one forward, no stack around it.
    torch = model.torch
    raw_ms = []
    for inp in inputs:
        t = time.perf_counter()
        q, ref = prepare_images([("q", inp.query_image), ("r", inp.reference_images[0])], 56 * 56, 448 * 448)
        (prompt,) = final_prompts(PromptInput(QUESTION, OPTIONS, n_references=1, category="bottle"), q, [ref])
        enc = model.processor(text=[model.render(prompt)], images=prompt.images, return_tensors="pt")
        with torch.inference_mode():
            model.model(**enc.to(model.device), logits_to_keep=1)
        raw_ms.append((time.perf_counter() - t) * 1000)

    one_ms, pre_ms = [], []
    for inp in inputs:
        t = time.perf_counter()
        r = await maker.decide(inp)
        one_ms.append((time.perf_counter() - t) * 1000)
        pre_ms.append(r.preprocess_ms)

    two_ms, gen_tokens, gen_ms = [], 0, 0.0
    for inp in inputs:
        inp2 = DecisionInput(**{**inp.__dict__, "reasoning": True})
        t = time.perf_counter()
        r = await maker.decide(inp2)
        two_ms.append((time.perf_counter() - t) * 1000)
        gen_tokens += r.completion_tokens
        gen_ms += r.compute_ms

    # Batching: the same one-pass decisions concurrently vs one at a time.
    seq_s = sum(one_ms) / 1000
    maker.backend.batcher.batches.clear()
    t = time.perf_counter()
    await asyncio.gather(*(maker.decide(inp) for inp in inputs))
    conc_s = time.perf_counter() - t
    batches = list(maker.backend.batcher.batches)
    await maker.close()
    return {
        "bench": "decision",
        "model": f"{settings.model} (random weights, {sum(p.numel() for p in model.model.parameters()) / 1e6:.1f}M)",
        "device": str(model.device),
        "workload": f"1 reference + 1 query, {args.image_px}px, MMAD anomaly question, n={n}",
        "load_s": round(load_s, 2),
        "one_pass_p50_ms": _p50(one_ms),
        "baseline_bare_forward_p50_ms": _p50(raw_ms),
        "one_pass_overhead_ratio": round(percentile(one_ms, 50) / percentile(raw_ms, 50), 2),
        "preprocess_p50_ms": _p50(pre_ms),
        "two_pass_p50_ms": _p50(two_ms),
        "two_over_one_ratio": round(percentile(two_ms, 50) / percentile(one_ms, 50), 2),
        "reasoning_tokens_per_decision": round(gen_tokens / n, 1),
        "tokens_per_s": round(gen_tokens / (gen_ms / 1000), 1),
        "sequential_decisions_per_s": round(n / seq_s, 1),
        "batched_decisions_per_s": round(n / conc_s, 1),
        "batching_speedup": round(seq_s / conc_s, 2),
        "batch_sizes": batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 decisions per measurement instead of 30.")
    parser.add_argument("--model-cache", default=None, help="Where the offline model is built/cached (default: temp).")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--image-px", type=int, default=224, help="Side of the square test images.")
    parser.add_argument("--reasoning-tokens", type=int, default=64, help="Reasoning Expert pass: most new tokens.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.model_cache = args.model_cache or tmp
        print(json.dumps(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
