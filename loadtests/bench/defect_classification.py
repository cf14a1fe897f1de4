"""Benchmark: Defect Classification without an MLLM, from 1, 3 and 5 confirmed examples per defect type, vs chance.

One run, one JSON line. On the generator's evaluation seed (services/mmad/synth.py; the seed the evidence bench
froze before tuning), per category: a bank of the category's normal templates; a defect library of its first
confirmed defects (each type's first 5 defective queries, boxed by the bounding box of the drawn defect's mask,
as an operator would draw it); then the next `--queries` defective queries of each type answer MMAD's own Defect
Classification question (its options, its gold letter) through the stage's ClassifyDefect logic: the query's top
evidence box against the library, candidates = the question's options. The library grows 1 -> 3 -> 5 examples per
type; each query's features are extracted once and classified at each size. Chance: the mean of 1 / number of
options over the questions answered.

    python -m loadtests.bench.defect_classification [--queries 6] [--templates 20] [--categories a,b]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.common.images import encode_png
from services.common.names import defect_type_key
from services.common.values import Box
from services.mmad.catalogue import CATEGORIES
from services.mmad.synth import ItemSpec, render_item
from services.mmad.types import DEFECT_CLASSIFICATION

EVAL_SEED = 1000  # loadtests/bench/evidence_quality.py's EVAL_SET seed: frozen before any tuning
SHOTS = (1, 3, 5)
LINE = "bench"


def defect_queries(category: str, defect: str, start: int, count: int, seed: int) -> list[Any]:
    """The category's defective queries of one type, from its `start`-th on (query index 2j+1 cycles the types)."""
    types = CATEGORIES[category].defects
    nd, first = len(types), types.index(defect)
    out = []
    for n in range(start, start + count):
        i = 2 * (first + n * nd) + 1
        out.append(render_item(ItemSpec(seed, category, "query", i, defect, "", None)))
    return out


def mask_box(mask: np.ndarray) -> Box:
    """The bounding box of a drawn defect: the box an operator draws when confirming it."""
    ys, xs = np.nonzero(mask)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, 0.0, "", 0.0, True)


def dc_question(item: Any) -> dict[str, Any]:
    return next(q for q in item.conversation if q["type"] == DEFECT_CLASSIFICATION)


def run_category(service: Any, category: str, templates: int, queries: int, seed: int) -> dict[str, Any]:
    """Bank, library grown 1 -> 3 -> 5 per type, and the held-out queries' accuracy at each size."""
    normals = [encode_png(render_item(ItemSpec(seed, category, "template", i, "good", "", None)).image)
               for i in range(templates)]  # fmt: skip
    service.add_normal_images(LINE, "Synthetic", category, normals)
    types = CATEGORIES[category].defects
    confirm = {d: defect_queries(category, d, 0, max(SHOTS), seed) for d in types}
    held = [q for d in types for q in defect_queries(category, d, max(SHOTS), queries, seed)]
    feats = [service.defects.features(LINE, "Synthetic", category, encode_png(q.image)) for q in held]
    out: dict[str, Any] = {"types": list(types), "questions": len(held)}
    have = 0
    for shots in SHOTS:
        for d in types:
            for item in confirm[d][have:shots]:
                service.defects.add(LINE, "Synthetic", category, encode_png(item.image), d, mask_box(item.mask))
        have = shots
        lib = service.defects.library_of(feats[0][0])
        right, chance = 0, 0.0
        for item, (bank, f, g) in zip(held, feats, strict=True):
            q = dc_question(item)
            wanted = service.defects.candidate_types(list(q["Options"].values()), 0)
            res = service.defects.classify_features(bank, lib, f, g, None, wanted, 0)
            letter = next((k for k, v in q["Options"].items() if defect_type_key(v) == res.classified.defect_type), "")
            right += letter == q["Answer"]
            chance += 1 / len(q["Options"])
        out[f"accuracy_{shots}_shot"] = round(right / len(held), 4)
        out["chance"] = round(chance / len(held), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=6, help="Held-out defective queries per type and category.")
    ap.add_argument("--templates", type=int, default=20, help="Normal templates in each category's bank.")
    ap.add_argument("--categories", default="", help="Comma-separated subset (default: all).")
    ap.add_argument("--input-size", type=int, default=0, help="evidence.input_size (0: the stage's default).")
    ap.add_argument("--out", default="", help="Also write the JSON line to this file.")
    args = ap.parse_args()

    from services.evidence.config import EvidenceSettings
    from services.evidence.core import EvidenceService

    cats = [c for c in args.categories.split(",") if c] or list(CATEGORIES)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        over: dict[str, Any] = {"bank_store": f"{tmp}/banks", "device": "cpu", "auto_config": False}
        if args.input_size:
            over["input_size"] = args.input_size
        settings = EvidenceSettings(**over)
        service = EvidenceService.from_settings(settings)
        per = {c: run_category(service, c, args.templates, args.queries, EVAL_SEED) for c in cats}
    n = sum(p["questions"] for p in per.values())

    def mean(key: str) -> float:
        return round(sum(p[key] * p["questions"] for p in per.values()) / n, 4)

    line = {
        "bench": "defect_classification",
        "seed": EVAL_SEED,
        "categories": cats,
        "questions": n,
        "templates_per_category": args.templates,
        "held_out_per_type": args.queries,
        **{f"accuracy_{s}_shot": mean(f"accuracy_{s}_shot") for s in SHOTS},
        "chance": mean("chance"),
        "per_category": per,
        "settings": {
            "input_size": settings.input_size,
            "auto_config": False,
            "defect_k": settings.defect_k,
            "defect_top_patches": settings.defect_top_patches,
        },
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(line)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
