"""Benchmark the decision stage on CPU with the offline Qwen2-VL: pixel budget, passes, reasoning budget, batching.

Prints ONE JSON line. Each figure comes with its baseline, measured in the same run:
- the pixel budget: one-pass p50 and visual tokens per image at MMAD's 1280*28*28 (the default) vs the old
  448*448, on images large enough for the budget to bite (1024 px);
- one-pass decision p50 vs a bare processor + forward of the same prompt (the stack's overhead);
- two-pass (Reasoning Expert + Decision Maker) p50 vs one pass, and reasoning tokens/s;
- the reasoning budget: two-pass p50 at the default max_reasoning_tokens (512) vs the old 128;
- concurrent decisions through the micro-batcher vs the same decisions one at a time.

    python -m loadtests.bench.decision [--quick] [--model-cache DIR] [--device cpu]

The model has random weights: latencies and throughput are real, answers are not (a random model rarely
stops early, so the reasoning passes run to their budget: the worst case).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time

import numpy as np
from PIL import Image

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


OLD_MAX_PIXELS = 448 * 448  # the budget before MMAD's became the default
OLD_REASONING_TOKENS = 128


async def _paired(
    model: LocalModel, baseline: DecisionSettings, candidate: DecisionSettings, inputs: list[DecisionInput]
) -> dict[str, dict[str, float]]:
    """The same decisions under two settings, alternating per input so machine noise hits both alike.

    Per side: p50 of the whole decision, of its model compute (preprocessing excluded), of preprocessing,
    and the prompt and generated tokens per decision.
    """
    makers = {
        "baseline": DecisionMaker(TransformersBackend.from_settings(baseline, model), baseline),
        "candidate": DecisionMaker(TransformersBackend.from_settings(candidate, model), candidate),
    }
    for m in makers.values():
        await m.decide(inputs[0])  # warm-up at this resolution
    runs: dict[str, dict[str, list[float]]] = {
        k: {"ms": [], "compute": [], "pre": [], "in": [], "out": []} for k in makers
    }
    for inp in inputs:
        for side, maker in makers.items():
            t = time.perf_counter()
            r = await maker.decide(inp)
            runs[side]["ms"].append((time.perf_counter() - t) * 1000)
            runs[side]["compute"].append(r.compute_ms)
            runs[side]["pre"].append(r.preprocess_ms)
            runs[side]["in"].append(r.prompt_tokens)
            runs[side]["out"].append(r.completion_tokens)
    for m in makers.values():
        await m.close()
    return {
        side: {
            "p50_ms": _p50(v["ms"]),
            "compute_p50_ms": _p50(v["compute"]),
            "preprocess_p50_ms": _p50(v["pre"]),
            "prompt_tokens": round(sum(v["in"]) / len(v["in"]), 1),
            "completion_tokens": round(sum(v["out"]) / len(v["out"]), 1),
        }
        for side, v in runs.items()
    }


def _smooth_png(seed: int, size: int) -> bytes:
    """A product-like image (smooth shading, a little texture): decoding it costs what a real photo does."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 80 + 120 * (0.5 * xx + 0.5 * yy) + rng.normal(0, 4, (size, size))
    rgb = np.clip(np.stack([base, base * 0.9, base * 0.8], axis=-1), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


async def _run(args: argparse.Namespace) -> dict:
    settings = DecisionSettings(
        model_cache=args.model_cache, device=args.device, max_reasoning_tokens=args.reasoning_tokens
    )
    t = time.perf_counter()
    model = LocalModel.load(settings)
    load_s = time.perf_counter() - t
    n = 8 if args.quick else 30
    # The pixel budget, on images large enough for it to bite: old vs new, same weights, same questions.
    big = [
        DecisionInput(
            _smooth_png(i, args.budget_px), QUESTION, OPTIONS, [_smooth_png(500 + i, args.budget_px)], category="bottle"
        )
        for i in range(max(4, n // 2))
    ]
    budget = await _paired(model, settings.model_copy(update={"max_pixels": OLD_MAX_PIXELS}), settings, big)
    # The reasoning budget: the default vs the old 128 new tokens.
    small = [
        DecisionInput(
            _png(i, args.image_px), QUESTION, OPTIONS, [_png(700 + i, args.image_px)], category="bottle", reasoning=True
        )
        for i in range(max(4, n // 4))
    ]
    short = settings.model_copy(update={"max_reasoning_tokens": OLD_REASONING_TOKENS})
    reasoning = await _paired(model, short, settings, small)

    maker = DecisionMaker(TransformersBackend.from_settings(settings, model), settings)
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
        q, ref = prepare_images(
            [("q", inp.query_image), ("r", inp.reference_images[0])], settings.min_pixels, settings.max_pixels
        )
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
        "budget_workload": f"1 reference + 1 query, {args.budget_px}px, n={len(big)}",
        "max_pixels": settings.max_pixels,
        "at_max_pixels": budget["candidate"],
        "baseline_max_pixels": OLD_MAX_PIXELS,
        "at_baseline_pixels": budget["baseline"],
        "pixel_budget_prompt_token_ratio": round(
            budget["candidate"]["prompt_tokens"] / budget["baseline"]["prompt_tokens"], 2
        ),
        "pixel_budget_compute_ratio": round(
            budget["candidate"]["compute_p50_ms"] / budget["baseline"]["compute_p50_ms"], 2
        ),
        "pixel_budget_latency_ratio": round(budget["candidate"]["p50_ms"] / budget["baseline"]["p50_ms"], 2),
        "max_reasoning_tokens": settings.max_reasoning_tokens,
        "two_pass_at_max_reasoning_tokens": reasoning["candidate"],
        "baseline_max_reasoning_tokens": OLD_REASONING_TOKENS,
        "two_pass_at_baseline_reasoning_tokens": reasoning["baseline"],
        "reasoning_budget_latency_ratio": round(reasoning["candidate"]["p50_ms"] / reasoning["baseline"]["p50_ms"], 2),
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
    parser.add_argument("--budget-px", type=int, default=1024, help="Side of the images of the pixel-budget check.")
    parser.add_argument(
        "--reasoning-tokens",
        type=int,
        default=DecisionSettings().max_reasoning_tokens,
        help="Reasoning Expert pass: most new tokens (default: the settings' default).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.model_cache = args.model_cache or tmp
        print(json.dumps(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
