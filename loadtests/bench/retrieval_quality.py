"""Benchmark: what the Reference Extractor finds offline, with real image features against the random CLIP.

Both image encoders of the embedding stage run in the same run on the same images, each into its own memory
(Qdrant Edge, through `Memory.add_images` / `search` / `infer_category`, as the product calls them):

- `random_clip`: the offline encoder before issue 26 (`embedding.image_encoder: clip`), echo-tiny-clip with
  seeded random weights;
- `efficientnet_lite0`: the offline default (`auto` when no CLIP weights are configured): the pooled ImageNet
  features of the EfficientNet-Lite0 weights shipped with Echo-IAD, on the default `embedding.runtime`.

Two data sets:

- generator: `--per-category` normal renderings of every synthetic category onboarded, and one defect drawn into a
  copy of each (services/mmad/synth.py, seed 1000); each defective copy is a query;
- foreign: the frozen evaluation split of the foreign set (services/evaluation/foreign.py: grey crops of
  scikit-image's brick, grass and gravel photographs): its onboarded normals, and its held-out normal and
  defective crops as queries (none is drawn on an onboarded image, so the own-source figures are absent).

Per encoder and data set: `top1_same_category` (the top-1 reference over the whole line is of the query's
product), `top1_own_source` (the top-1 reference of a defective copy is the very image its defect was drawn on),
`own_source_recall_at_k`, `category_accuracy` (`Memory.infer_category` on image neighbours alone, no text
prompts: the lite encoder has no text tower), and the mean top-1 similarity (the random CLIP's near 1.0 says
every reference looks alike). Prints one JSON line.

    python -m loadtests.bench.retrieval_quality [--per-category 12] [--k 5] [--foreign-scale 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.images import ImageStore, encode_png, sha256_hex
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder
from services.evaluation import foreign
from services.mmad.synth import CATEGORIES, draw_defect, render_normal
from services.retrieval.config import RetrievalSettings
from services.retrieval.core import Memory
from services.retrieval.store import open_store

LINE = "bench"
SEED = 1000


@dataclass
class Query:
    image: bytes
    category: str
    source_sha: str = ""  # the onboarded image its defect was drawn on ("" when none)


@dataclass
class DataSet:
    dataset: str
    normals: dict[str, list[bytes]]
    queries: list[Query]


def generator_set(per_category: int, size: int) -> DataSet:
    normals: dict[str, list[bytes]] = {}
    queries = []
    for c_idx, (category, spec) in enumerate(sorted(CATEGORIES.items())):
        rng = np.random.default_rng(SEED + c_idx)
        normals[category] = []
        for i in range(per_category):
            img = render_normal(category, rng, size=size)
            bad, _, _ = draw_defect(img.copy(), category, spec.defects[i % len(spec.defects)], rng)
            data = encode_png(img)
            normals[category].append(data)
            queries.append(Query(encode_png(bad), category, sha256_hex(data)))
    return DataSet("Synthetic", normals, queries)


def foreign_set(scale: float) -> DataSet:
    normals: dict[str, list[bytes]] = {}
    queries = []
    for texture in foreign.TEXTURES:
        p = foreign.product(texture, "eval", scale)
        normals[texture] = [encode_png(im.image()) for im in p.normals]
        queries += [Query(encode_png(q.image()), texture) for q in p.queries]
    return DataSet(foreign.DATASET, normals, queries)


def measure(encoder: ClipEncoder, data: DataSet, root: Path, k: int) -> dict[str, Any]:
    settings = RetrievalSettings(engine="edge", path=str(root / "edge"), image_store=str(root / "images"))
    memory = Memory(open_store(settings, encoder.dim), settings, ImageStore(settings.image_store), encoder.embed_batch)
    try:
        start = time.perf_counter()
        for category, images in data.normals.items():
            memory.add_images(LINE, data.dataset, category, images)
        onboard_s = time.perf_counter() - start
        vectors = encoder.embed_batch([q.image for q in data.queries])
        same, own, own_k, correct, top_sims = [], [], [], [], []
        for q, v in zip(data.queries, vectors, strict=True):
            hits = memory.search(v, LINE, data.dataset, "", k)
            same.append(hits[0].point.category == q.category)
            top_sims.append(hits[0].score)
            if q.source_sha:
                own.append(hits[0].point.sha256 == q.source_sha)
                own_k.append(any(h.point.sha256 == q.source_sha for h in hits))
            correct.append(memory.infer_category(v, LINE, data.dataset).category == q.category)
    finally:
        memory.close()
    out: dict[str, Any] = {
        "top1_same_category": round(float(np.mean(same)), 4),
        "category_accuracy": round(float(np.mean(correct)), 4),
        "top1_similarity_mean": round(float(np.mean(top_sims)), 4),
    }
    if own:
        out["top1_own_source"] = round(float(np.mean(own)), 4)
        out[f"own_source_recall_at_{k}"] = round(float(np.mean(own_k)), 4)
    out["onboard_s_per_100_images"] = round(100 * onboard_s / sum(len(v) for v in data.normals.values()), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=12, help="Generator: normal images (and queries) per product.")
    ap.add_argument("--size", type=int, default=256, help="Generator: image side in pixels.")
    ap.add_argument("--k", type=int, default=5, help="References per search for the recall figure.")
    ap.add_argument("--foreign-scale", type=float, default=0.5, help="Share of the foreign set's queries (0: skip).")
    args = ap.parse_args()
    sets = [generator_set(args.per_category, args.size)]
    if args.foreign_scale > 0:
        sets.append(foreign_set(args.foreign_scale))
    encoders = {
        "random_clip": EmbeddingSettings(device="cpu", image_encoder="clip"),
    }
    line: dict[str, Any] = {"bench": "retrieval_quality", "device": "cpu", "k": args.k}
    with tempfile.TemporaryDirectory() as tmp:
        lite = EmbeddingSettings(device="cpu", image_encoder="efficientnet-lite0", runtime_cache=f"{tmp}/runtime")
        encoders["efficientnet_lite0"] = lite
        line["lite_runtime"] = lite.runtime
        for name, settings in encoders.items():
            encoder = ClipEncoder.for_images(settings)
            line.setdefault("model_ids", {})[name] = encoder.model_id
            for data in sets:
                key = "generator" if data.dataset == "Synthetic" else "foreign"
                line.setdefault(key, {"queries": len(data.queries), "products": len(data.normals)})
                line[key][name] = measure(encoder, data, Path(tmp) / name / key, args.k)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
