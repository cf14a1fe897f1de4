"""Benchmark: the operator loop, measured. Does confirming parts teach the product, and at what review load?

A simulated operator at the evidence stage's API (EvidenceService, as loadtests/bench/evidence_quality.py uses
it). Per product, a bank of a few normal images, then parts arrive as a stream. Each part the stage sends to a
person (band "review") or fails (a flagged part someone looks at) is reviewed against the ground truth:

- a normal part (a false alarm, or a pass-worthy part in the band): "good", AddNormalImages (the bank grows and
  recalibrates);
- a defective part: "defect: <type>", AddDefect with the drawn defect's bounding box (its library moves the
  product's review threshold: evidence.miss_rate, the miss budget).

The operator also checks a random sample of the parts that passed (`--audit-rate`, audit sampling): without it a
missed defect is never shown to anyone, and the loop could only learn from what it already flagged.

At most `--max-confirmations` per product (20: the issue's budget). Before the stream and after every `--every`
parts it reports, on FRESH parts (never in the stream or the bank): the false-alarm rate (normals failed), the
miss rate (defects passed: neither failed nor sent to a person; and, apart, defects not failed) and the review
load (share of fresh parts in the review band). Fresh features are extracted once (the feature view is fixed:
evidence.auto_config off) and scored against the bank as it stands at each checkpoint.

Products: the generator's evaluation seed (services/mmad/synth.py, seed 1000: frozen before tuning) and the foreign
set's evaluation split (services/evaluation/foreign.py: real texture photographs). One JSON line (before and
after feedback, from the same run) and a PNG plot of the three rates over the stream.

    python -m loadtests.bench.feedback [--stream 30] [--fresh-normals 40] [--fresh-defects 16] [--png out.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.images import encode_png
from services.common.values import Box
from services.evaluation import foreign
from services.evidence.bank import BankKey
from services.mmad.catalogue import CATEGORIES
from services.mmad.synth import ItemSpec, render_item

EVAL_SEED = 1000
LINE = "bench"


@dataclass
class Part:
    image: bytes
    defect: str  # "" for a normal part
    box: Box | None = None  # the drawn defect's bounding box (what the operator draws)


@dataclass
class Product:
    dataset: str
    name: str
    bank: list[bytes]
    stream: list[Part]
    fresh: list[Part]


@dataclass
class Curve:
    """One product's checkpoints: parts seen, and the three rates on its fresh parts."""

    seen: list[int] = field(default_factory=list)
    far: list[float] = field(default_factory=list)
    miss: list[float] = field(default_factory=list)
    miss_fail: list[float] = field(default_factory=list)
    review: list[float] = field(default_factory=list)
    confirmations: dict[str, int] = field(default_factory=lambda: {"good": 0, "defect": 0})
    bank_images: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)


def mask_box(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, 0.0, "", 0.0, True)


def generator_product(category: str, bank: int, stream: int, normals: int, defects: int) -> Product:
    """Templates for the bank; the stream and the fresh parts from disjoint query indices (even: normal, odd: a
    defect cycling through the category's types)."""
    types = CATEGORIES[category].defects

    def query(i: int) -> Part:
        d = "good" if i % 2 == 0 else types[(i // 2) % len(types)]
        item = render_item(ItemSpec(EVAL_SEED, category, "query", i, d, "", None))
        if d == "good":
            return Part(encode_png(item.image), "")
        return Part(encode_png(item.image), d, mask_box(item.mask))

    templates = [render_item(ItemSpec(EVAL_SEED, category, "template", i, "good", "", None)).image for i in range(bank)]
    stream_parts = [query(i) for i in range(stream)]
    base = stream + stream % 2  # fresh indices follow the stream's
    fresh = [query(base + 2 * j) for j in range(normals)] + [query(base + 2 * j + 1) for j in range(defects)]
    return Product("Synthetic", category, [encode_png(t) for t in templates], stream_parts, fresh)


def foreign_product(texture: str, bank: int, stream: int, normals: int, defects: int) -> Product:
    """The foreign set's eval split: onboarded normals for the bank; held-out normals and local defects (with masks)
    and global ones (the whole image) for the stream and, from later indices, the fresh parts."""
    photo = foreign.photograph(texture)

    def part(kind: str, i: int) -> Part:
        im = foreign.make_image(texture, "eval", kind, i, photo)
        data = encode_png(im.image())
        if kind == "held_out":
            return Part(data, "")
        return Part(data, im.defect, mask_box(im.mask))

    def defect(j: int) -> Part:
        return part("local" if j % 2 == 0 else "global", j // 2)

    half = stream // 2
    stream_parts = [part("held_out", i // 2) if i % 2 == 0 else defect(i // 2) for i in range(2 * half)]
    fresh = [part("held_out", half + j) for j in range(normals)] + [defect(2 * half + j) for j in range(defects)]
    bank_images = [encode_png(foreign.make_image(texture, "eval", "normal", i, photo).image()) for i in range(bank)]
    return Product(foreign.DATASET, texture, bank_images, stream_parts, fresh)


def checkpoint(service: Any, p: Product, fresh: list[tuple[Any, Any]], curve: Curve, seen: int) -> None:
    """The three rates on the fresh parts against the bank as it stands now."""
    bank = service.bank(BankKey(LINE, p.dataset, p.name))
    bands = [service.score(bank, f, g).band for f, g in fresh]
    normal = [b for b, part in zip(bands, p.fresh, strict=True) if not part.defect]
    bad = [b for b, part in zip(bands, p.fresh, strict=True) if part.defect]
    curve.seen.append(seen)
    curve.far.append(sum(b == "fail" for b in normal) / len(normal))
    curve.miss.append(sum(b == "pass" for b in bad) / len(bad))
    curve.miss_fail.append(sum(b != "fail" for b in bad) / len(bad))
    curve.review.append(sum(b == "review" for b in bands) / len(bands))
    curve.bank_images.append(len(bank.images))
    curve.threshold.append(round(float(bank.calibration.threshold), 4))


def run_product(
    service: Any, p: Product, every: int, budget: int, audit_rate: float, seed: int
) -> tuple[Curve, dict[str, Any]]:
    service.add_normal_images(LINE, p.dataset, p.name, p.bank)
    fresh = [service.defects.features(LINE, p.dataset, p.name, part.image)[1:] for part in p.fresh]
    curve = Curve()
    checkpoint(service, p, fresh, curve, 0)
    reviewed = flagged = audited = 0
    rng = np.random.default_rng([seed, sum(map(ord, f"{p.dataset}/{p.name}"))])
    for n, part in enumerate(p.stream, 1):
        r = service.analyze_sync(LINE, p.dataset, p.name, part.image)
        audit = r.band == "pass" and rng.random() < audit_rate  # a sample of passes: misses are seen too
        if r.band in ("review", "fail") or audit:
            reviewed += r.band == "review"
            flagged += r.band == "fail"
            audited += audit
            done = curve.confirmations["good"] + curve.confirmations["defect"]
            if done < budget:
                if not part.defect:
                    service.add_normal_images(LINE, p.dataset, p.name, [part.image])
                    curve.confirmations["good"] += 1
                else:
                    service.defects.add(LINE, p.dataset, p.name, part.image, part.defect, part.box)
                    curve.confirmations["defect"] += 1
        if n % every == 0 or n == len(p.stream):
            checkpoint(service, p, fresh, curve, n)
    stream_load = {
        "review_band": reviewed / len(p.stream),
        "failed": flagged / len(p.stream),
        "audited": audited / len(p.stream),
    }
    return curve, stream_load


def mean_curve(curves: list[Curve], key: str) -> list[float]:
    """The mean over products of a rate at each checkpoint (every product has the same checkpoints)."""
    return [round(float(v), 4) for v in np.mean([getattr(c, key) for c in curves], axis=0)]


def plot(curves: dict[str, Curve], far_target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = next(iter(curves.values())).seen
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("far", "false alarms"), ("miss", "misses (passed)"), ("review", "review load")):
        ax.plot(seen, mean_curve(list(curves.values()), key), marker="o", label=label)
    ax.axhline(far_target, color="grey", linestyle="--", linewidth=1, label="configured false-alarm rate")
    ax.set_xlabel("parts seen per product (the operator confirms at most 20)")
    ax.set_ylabel("share of fresh parts (mean over products)")
    ax.set_title("The operator loop on fresh parts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=int, default=10, help="Normal images each product starts with.")
    ap.add_argument("--stream", type=int, default=30, help="Parts per product in the stream (half defective).")
    ap.add_argument("--every", type=int, default=10, help="Report on the fresh parts after every this many parts.")
    ap.add_argument("--fresh-normals", type=int, default=40, help="Fresh normal parts per product.")
    ap.add_argument("--fresh-defects", type=int, default=16, help="Fresh defective parts per product.")
    ap.add_argument("--max-confirmations", type=int, default=20, help="The operator's budget per product.")
    ap.add_argument(
        "--audit-rate",
        type=float,
        default=0.25,
        help="Share of passed stream parts the operator also checks (audit sampling: how misses get confirmed).",
    )
    ap.add_argument("--seed", type=int, default=0, help="The audit sample's seed.")
    ap.add_argument("--categories", default="", help="Generator categories (default: all).")
    ap.add_argument("--textures", default=",".join(foreign.TEXTURES), help="Foreign textures ('' for none).")
    ap.add_argument("--input-size", type=int, default=0, help="evidence.input_size (0: the stage's default).")
    ap.add_argument("--out", default="", help="Also write the JSON line to this file.")
    ap.add_argument("--png", default="", help="Write the plot here.")
    args = ap.parse_args()

    from services.evidence.config import EvidenceSettings
    from services.evidence.core import EvidenceService

    sizes = (args.bank, args.stream, args.fresh_normals, args.fresh_defects)
    cats = [c for c in args.categories.split(",") if c] or list(CATEGORIES)
    products = [generator_product(c, *sizes) for c in cats]
    products += [foreign_product(t, *sizes) for t in args.textures.split(",") if t]
    start = time.perf_counter()
    curves: dict[str, Curve] = {}
    stream_load: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        over: dict[str, Any] = {"bank_store": f"{tmp}/banks", "device": "cpu", "auto_config": False}
        if args.input_size:
            over["input_size"] = args.input_size
        settings = EvidenceSettings(**over)
        service = EvidenceService.from_settings(settings)
        for p in products:
            curves[f"{p.dataset}/{p.name}"], stream_load[f"{p.dataset}/{p.name}"] = run_product(
                service, p, args.every, args.max_confirmations, args.audit_rate, args.seed
            )
    listed = list(curves.values())
    fresh_normals = args.fresh_normals * len(products)

    def pooled(key: str, at: int) -> float:
        return round(float(np.mean([getattr(c, key)[at] for c in listed])), 4)

    before = {k: pooled(k, 0) for k in ("far", "miss", "miss_fail", "review")}
    after = {k: pooled(k, -1) for k in ("far", "miss", "miss_fail", "review")}
    line = {
        "bench": "feedback",
        "seed": EVAL_SEED,
        "products": list(curves),
        "fresh_normals": fresh_normals,
        "fresh_defects": args.fresh_defects * len(products),
        "far_configured": settings.false_alarm_rate,
        "before": before,
        "after": after,
        "far_at_or_below_configured_after": after["far"] <= settings.false_alarm_rate,
        "miss_not_higher_after": after["miss"] <= before["miss"],
        "miss_fail_not_higher_after": after["miss_fail"] <= before["miss_fail"],
        "curve": {"seen": listed[0].seen, **{k: mean_curve(listed, k) for k in ("far", "miss", "miss_fail", "review")}},
        "per_product": {
            name: {
                "far": c.far,
                "miss": c.miss,
                "review": c.review,
                "confirmations": c.confirmations,
                "bank_images": c.bank_images,
                "threshold": c.threshold,
                "stream_load": {k: round(v, 4) for k, v in stream_load[name].items()},
            }
            for name, c in curves.items()
        },
        "settings": {
            "bank": args.bank,
            "stream": args.stream,
            "every": args.every,
            "max_confirmations": args.max_confirmations,
            "input_size": settings.input_size,
            "auto_config": False,
            "false_alarm_rate": settings.false_alarm_rate,
            "review_rate": settings.review_rate,
            "miss_rate": settings.miss_rate,
            "review_max": settings.review_max,
            "audit_rate": args.audit_rate,
        },
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(line)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.png:
        plot(curves, settings.false_alarm_rate, Path(args.png))


if __name__ == "__main__":
    main()
