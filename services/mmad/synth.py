"""A generator of MMAD-format data: procedural products with real defects drawn into the pixels.

The real MMAD cannot be downloaded on our machines, so every test and demo runs on
this. Each query image is a normal rendering (random pose, lighting, texture noise)
with at most one defect painted into it; the defect's mask and every question's
correct answer come from what was actually drawn (type, region, appearance, effect).
Per-image randomness comes from its own SeedSequence, so a file's bytes depend only
on (seed, category, kind, index), never on which other images were generated.

Layout written (SYNTH spec, mirrors MMAD):
    Synthetic/<category>/image/<defect or good>/<NNN>.png
    Synthetic/<category>/ground_truth/<defect>/<NNN>_mask.png
    Synthetic/<category>/train/good/<NNN>.png        (normal templates)
    mmad.json, domain_knowledge.json, synth_info.json
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from services.common.errors import InvalidArgument
from services.mmad.catalogue import CATEGORIES, DATASET, DEFECT_LABELS, REGION_NAMES, SIZE, domain_knowledge, region_of
from services.mmad.defects import draw_defect
from services.mmad.questions import make_questions
from services.mmad.render import Scene, check_category, render_normal, render_scene

__all__ = [
    "CATEGORIES",
    "DATASET",
    "DEFECT_LABELS",
    "N_RANDOM",
    "N_SIMILAR",
    "REGION_NAMES",
    "SIZE",
    "ItemSpec",
    "RenderedItem",
    "Scene",
    "domain_knowledge",
    "draw_defect",
    "image_features",
    "item_rng",
    "make_questions",
    "plan",
    "rank_templates",
    "region_of",
    "render_item",
    "render_normal",
    "render_scene",
    "synthesize",
]

GENERATOR_VERSION = 1
N_SIMILAR = 5
N_RANDOM = 5


@dataclass(frozen=True)
class ItemSpec:
    """One image to generate; everything about it follows from these fields alone.

    Queries alternate normal / anomalous by index (even = good); anomalous ones cycle through the
    category's defect types, so any prefix of a category's queries has every type once it is long enough.
    """

    seed: int
    category: str
    kind: str  # "query" or "template"
    index: int  # per category and kind
    defect: str  # "good" or a defect type
    rel_path: str
    mask_rel_path: str | None


def plan(seed: int, categories: Sequence[str], per_category: int, templates_per_category: int) -> list[ItemSpec]:
    """The images synthesize() writes, in order: per category its templates, then its queries."""
    items: list[ItemSpec] = []
    for cat in categories:
        spec = check_category(cat)
        base = f"{DATASET}/{cat}"
        for i in range(templates_per_category):
            items.append(ItemSpec(seed, cat, "template", i, "good", f"{base}/train/good/{i:03d}.png", None))
        nd = len(spec.defects)
        for i in range(per_category):
            if i % 2 == 0:
                items.append(ItemSpec(seed, cat, "query", i, "good", f"{base}/image/good/{i // 2:03d}.png", None))
            else:
                j = i // 2
                d, n = spec.defects[j % nd], j // nd
                items.append(
                    ItemSpec(
                        seed,
                        cat,
                        "query",
                        i,
                        d,
                        f"{base}/image/{d}/{n:03d}.png",
                        f"{base}/ground_truth/{d}/{n:03d}_mask.png",
                    )
                )
    return items


def item_rng(item: ItemSpec) -> np.random.Generator:
    """The image's own generator: a SeedSequence keyed by (seed, category, kind, index)."""
    key = (zlib.crc32(item.category.encode()), 0 if item.kind == "template" else 1, item.index)
    return np.random.default_rng(np.random.SeedSequence(item.seed, spawn_key=key))


@dataclass
class RenderedItem:
    spec: ItemSpec
    image: Image.Image
    source: Image.Image  # the undamaged rendering (the same picture for normal images)
    mask: np.ndarray | None
    info: dict[str, Any] | None  # draw_defect info for anomalous queries
    conversation: list[dict[str, Any]]
    random_templates: list[int]  # indices into the category's templates


def render_item(item: ItemSpec, templates_per_category: int = 0, size: int = SIZE) -> RenderedItem:
    """Render one planned image (and, for a query, its questions and random template picks). Deterministic."""
    rng = item_rng(item)
    source, scene = render_scene(item.category, rng, size)
    if item.kind == "template":
        return RenderedItem(item, source, source, None, None, [], [])
    image, mask, info = source, None, None
    facts = scene.facts
    if item.defect != "good":
        image, mask, info = draw_defect(source, item.category, item.defect, rng, scene)
        facts = info["facts"]
    conversation = make_questions(item.category, rng, info, facts)
    k = min(N_RANDOM, templates_per_category)
    picks = sorted(int(i) for i in rng.choice(templates_per_category, size=k, replace=False)) if k else []
    return RenderedItem(item, image, source, mask, info, conversation, picks)


def image_features(img: Image.Image) -> np.ndarray:
    """Cheap similarity features: 32x32 RGB, mean-removed, unit length (cosine = dot product)."""
    arr = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32).ravel()
    arr = arr - arr.mean()
    return arr / (np.linalg.norm(arr) + 1e-8)


def rank_templates(query: Image.Image, template_features: np.ndarray) -> list[int]:
    """Template indices, most similar first (ties broken by index, so the order is deterministic)."""
    sims = template_features @ image_features(query)
    return sorted(range(len(sims)), key=lambda i: (-round(float(sims[i]), 6), i))


def _save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", compress_level=1)


def synthesize(
    out: str | Path,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    per_category: int = 40,
    templates_per_category: int = 12,
    progress: bool = True,
) -> Path:
    """Write a synthetic MMAD-format dataset to `out` and return `out`.

    Args:
        out: folder to write (created; existing files with the same names are overwritten).
        seed: the whole dataset is a pure function of the seed and the other arguments.
        categories: subset of CATEGORIES (default: all four).
        per_category: query images per category, alternating normal / anomalous (half each).
        templates_per_category: normal template images per category (train/good), used as references.
        progress: show a progress bar on stderr.
    """
    cats = list(dict.fromkeys(categories)) if categories else list(CATEGORIES)
    for c in cats:
        check_category(c)
    if per_category < 1:
        raise InvalidArgument("must be at least 1", field="per_category")
    if templates_per_category < 1:
        raise InvalidArgument("must be at least 1 (queries need reference templates)", field="templates_per_category")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    items = plan(seed, cats, per_category, templates_per_category)

    from services.common.progress import progress_bar

    mmad: dict[str, Any] = {}
    template_paths: dict[str, list[str]] = {c: [] for c in cats}
    template_feats: dict[str, list[np.ndarray]] = {c: [] for c in cats}
    with progress_bar("synth", len(items), enabled=progress) as advance:
        for item in items:
            r = render_item(item, templates_per_category)
            _save_png(r.image, root / item.rel_path)
            advance(1)
            if item.kind == "template":
                template_paths[item.category].append(item.rel_path)
                template_feats[item.category].append(image_features(r.image))
                continue
            if r.mask is not None and item.mask_rel_path:
                _save_png(Image.fromarray(r.mask.astype(np.uint8) * 255, mode="L"), root / item.mask_rel_path)
            paths = template_paths[item.category]
            ranked = rank_templates(r.source, np.stack(template_feats[item.category]))
            mmad[item.rel_path] = {
                "image_path": item.rel_path,
                "mask_path": item.mask_rel_path,
                "similar_templates": [paths[i] for i in ranked[:N_SIMILAR]],
                "random_templates": [paths[i] for i in r.random_templates],
                "conversation": r.conversation,
            }
    (root / "mmad.json").write_text(json.dumps(mmad, indent=1) + "\n", encoding="utf-8")
    (root / "domain_knowledge.json").write_text(json.dumps(domain_knowledge(cats), indent=1) + "\n", encoding="utf-8")
    meta = {
        "generator": "echo-iad synthetic MMAD",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "categories": cats,
        "per_category": per_category,
        "templates_per_category": templates_per_category,
        "size": SIZE,
    }
    (root / "synth_info.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return root
