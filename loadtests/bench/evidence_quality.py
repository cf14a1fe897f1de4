"""Benchmark: how well the evidence stage finds defects on the generator's data, against two baselines.

One run, one JSON line. For every synthetic category (with its defect masks), per category and averaged:
image AUROC, pixel AUROC and AUPRO of

- `real`: the evidence stage as configured (EfficientNet-Lite0 with the packaged ImageNet weights), which
  self-configures each product's features from its normal images (evidence.auto_config) and adds the global score;
- `fixed`: the fixed default before self-configuration (evidence.auto_config, global_score, position_norm off);
- `random`: the fixed default, same code, with random weights (what the pretrained weights bring);
- `baseline`: a plain PatchCore-style scorer: EfficientNet-Lite0 levels 2+3 at 320 px, 3x3 average-pooled,
  every normal patch kept (no coreset), the image score the largest nearest-patch distance, the pixel map
  the patch distances upsampled and Gaussian-smoothed (sigma 4).

Each bank holds the category's normal templates (train/good); the queries are the category's test images,
half normal, half defective. For `real` it also reports Anomaly Detection balanced accuracy when the
stage's calibrated verdict answers MMAD's "Is there any defect?" questions, and the false-alarm rate
measured on the normal test images (and `--extra-normals` more per category) against the configured one.

With `--foreign eval|tuning` every stage variant also runs the foreign set (services/evaluation/foreign.py:
crops of scikit-image's real texture photographs, local and global defects drawn in, its split frozen before any
tuning), reported under `foreign` with image AUROC for local and global defects apart.

Never tuned on what it reports: the evaluation set (`--split eval`, the default) was frozen below before
any tuning; tuning used `--split tuning` only. Report both.

    python -m loadtests.bench.evidence_quality [--split eval|tuning] [--variants real,fixed,random] [--foreign eval]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from services.common.anomaly_metrics import aupro, auroc, pixel_auroc
from services.evaluation.foreign import evaluate as evaluate_foreign
from services.evaluation.foreign import self_config_summary
from services.evidence.config import EvidenceSettings
from services.mmad.loader import load_dataset
from services.mmad.synth import synthesize
from services.mmad.types import ANOMALY_DETECTION, Sample

# Frozen before any tuning (seed and options); tuning used TUNING_SET only.
EVAL_SET = {"seed": 1000, "per_category": 80, "templates_per_category": 40}
TUNING_SET = {"seed": 0, "per_category": 80, "templates_per_category": 40}
SPLITS = {"eval": EVAL_SET, "tuning": TUNING_SET}
TARGETS = {"image_auroc_mean": 0.99, "pixel_auroc_mean": 0.98, "image_auroc_min": 0.95}
LINE = "bench"


@dataclass
class Query:
    sample: Sample
    data: bytes
    label: int  # 1: defective
    mask: np.ndarray  # bool (h, w)


@dataclass
class Category:
    dataset: str
    name: str
    templates: list[bytes]
    queries: list[Query]
    extra_normals: list[bytes] = field(default_factory=list)  # held-out normals only for the false-alarm rate


@dataclass
class Outcome:
    """A variant's answers for one category: image scores, pixel maps, verdicts."""

    scores: list[float] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)
    verdicts: list[bool] = field(default_factory=list)
    extra_verdicts: list[bool] = field(default_factory=list)
    threshold: float = float("nan")
    self_config: dict[str, Any] = field(default_factory=dict)  # the product's choice and why (stage variants)


def split_data(split: str, cache: Path, categories: list[str] | None = None) -> Path:
    """The split's dataset, generated once into cache (a folder per split definition)."""
    spec = SPLITS[split]
    root = cache / f"synth-s{spec['seed']}-q{spec['per_category']}-t{spec['templates_per_category']}"
    info = root / "synth_info.json"
    if not info.is_file():
        synthesize(root, categories=categories, progress=False, **spec)
    return root


def extra_normal_images(root: Path, category: str, count: int) -> list[bytes]:
    """`count` more normal queries of the split's generator (the indices after its own): false alarms need many."""
    from services.common.images import encode_png
    from services.mmad.synth import ItemSpec, render_item

    info = json.loads((root / "synth_info.json").read_text())
    first = int(info["per_category"]) + int(info["per_category"]) % 2  # even query indices are normal
    specs = (ItemSpec(info["seed"], category, "query", i, "good", "", None) for i in range(first, first + 2 * count, 2))
    return [encode_png(render_item(spec).image) for spec in specs]


def load_categories(root: Path, only: list[str] | None = None, extra_normals: int = 0) -> list[Category]:
    ds = load_dataset(root)
    templates: dict[tuple[str, str], list[str]] = {}
    for dataset, category, rel in ds.templates():
        templates.setdefault((dataset, category), []).append(rel)
    out = []
    for dataset, category in ds.categories():
        if only and category not in only:
            continue
        queries = []
        for s in ds.samples:
            if (s.dataset, s.category) != (dataset, category):
                continue
            data = ds.abspath(s.image_path).read_bytes()
            w, h = Image.open(io.BytesIO(data)).size
            mask = np.zeros((h, w), bool)
            if s.mask_path:
                mask = np.asarray(Image.open(ds.abspath(s.mask_path)).convert("L")) > 127
            queries.append(Query(s, data, 0 if s.is_normal else 1, mask))
        tpl = [ds.abspath(r).read_bytes() for r in sorted(templates[(dataset, category)])]
        extra = extra_normal_images(root, category, extra_normals) if extra_normals else []
        out.append(Category(dataset, category, tpl, queries, extra))
    return out


def run_stage(settings: EvidenceSettings, cats: list[Category]) -> tuple[dict[str, Outcome], dict[str, float]]:
    """Build each category's bank through the stage, then analyze every query; also time both."""
    from services.evidence.core import EvidenceService

    service = EvidenceService.from_settings(settings)
    out: dict[str, Outcome] = {}
    build_s = analyze_s = 0.0
    n_templates = n_queries = 0
    for c in cats:
        start = time.perf_counter()
        service.add_normal_images(LINE, c.dataset, c.name, c.templates)
        build_s += time.perf_counter() - start
        n_templates += len(c.templates)
        o = Outcome()
        o.self_config = self_config_summary(service.stats(LINE, c.dataset, c.name)[0].self_config)
        start = time.perf_counter()
        for q in c.queries:
            r = service.analyze_sync(LINE, c.dataset, c.name, q.data, keep_map=True)
            o.scores.append(r.score)
            o.maps.append(r.anomaly_map)
            o.verdicts.append(r.anomalous)
            o.threshold = r.threshold
        analyze_s += time.perf_counter() - start
        for data in c.extra_normals:
            o.extra_verdicts.append(service.analyze_sync(LINE, c.dataset, c.name, data).anomalous)
        n_queries += len(c.queries)
        out[c.name] = o
    timing = {
        "bank_build_s_per_100_images": round(100 * build_s / max(n_templates, 1), 2),
        "analyze_ms_per_image": round(1000 * analyze_s / max(n_queries, 1), 1),
    }
    return out, timing


def run_baseline(cats: list[Category]) -> dict[str, Outcome]:
    """The plain PatchCore-style scorer (module docstring), exact nearest patches over every normal patch."""
    import faiss
    import torch
    import torch.nn.functional as F

    from services.evidence.core import smooth_map
    from services.evidence.features import TimmPatchFeatures, make_preprocessor

    settings = EvidenceSettings(layers=[2, 3], input_size=320, pool=3, device="cpu")
    feats = TimmPatchFeatures(settings)
    prep = make_preprocessor(settings, feats)

    def grid(data: bytes) -> np.ndarray:
        return feats.extract(prep(data)[0][None])[0]

    out = {}
    for c in cats:
        normal = np.concatenate([grid(t).reshape(-1, feats.dim) for t in c.templates])
        index = faiss.IndexFlatL2(feats.dim)
        index.add(np.ascontiguousarray(normal, np.float32))
        o = Outcome()
        for q in c.queries:
            g = grid(q.data)
            d, _ = index.search(np.ascontiguousarray(g.reshape(-1, feats.dim)), 1)
            dist = np.sqrt(np.maximum(d[:, 0], 0)).reshape(g.shape[:2])
            o.scores.append(float(dist.max()))
            smoothed = torch.from_numpy(smooth_map(dist, 320, 4.0))[None, None]
            h, w = q.mask.shape
            o.maps.append(F.interpolate(smoothed, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy())
        out[c.name] = o
    return out


def metrics(cat: Category, o: Outcome) -> dict[str, float]:
    labels = [q.label for q in cat.queries]
    return {
        "image_auroc": round(auroc(labels, o.scores), 4),
        "pixel_auroc": round(pixel_auroc([q.mask for q in cat.queries], o.maps), 4),
        "aupro": round(aupro([q.mask for q in cat.queries], o.maps), 4),
    }


def summarize(cats: list[Category], outcomes: dict[str, Outcome]) -> dict[str, Any]:
    per = {c.name: metrics(c, outcomes[c.name]) for c in cats}
    for c in cats:
        if outcomes[c.name].self_config:
            per[c.name]["self_config"] = outcomes[c.name].self_config
    keys = ("image_auroc", "pixel_auroc", "aupro")
    mean = {k: round(float(np.mean([p[k] for p in per.values()])), 4) for k in keys}
    return {"mean": mean, "min_image_auroc": min(p["image_auroc"] for p in per.values()), "per_category": per}


def verdict_scores(cats: list[Category], outcomes: dict[str, Outcome], far_target: float) -> dict[str, Any]:
    """Evidence-only Anomaly Detection (MMAD's questions, balanced accuracy) and the measured false-alarm rate."""
    from services.mmad.scoring import grade, score

    graded = []
    alarms = normals = 0
    for c in cats:
        for q, anomalous in zip(c.queries, outcomes[c.name].verdicts, strict=True):
            if q.label == 0:
                normals += 1
                alarms += anomalous
            for question in q.sample.questions:
                if question.type == ANOMALY_DETECTION:
                    graded.append(grade(q.sample, question, "Yes." if anomalous else "No."))
        normals += len(outcomes[c.name].extra_verdicts)
        alarms += sum(outcomes[c.name].extra_verdicts)
    report = score(graded, types=[ANOMALY_DETECTION]).wrong
    ds = cats[0].dataset
    return {
        "ad_balanced_accuracy": round(report.accuracy[ds][ANOMALY_DETECTION] / 100, 4),
        "ad_questions": len(graded),
        "far_configured": far_target,
        "far_measured": round(alarms / max(normals, 1), 4),
        "normal_images": normals,
        "thresholds": {c.name: round(outcomes[c.name].threshold, 3) for c in cats},
    }


VARIANT_SETTINGS: dict[str, dict[str, Any]] = {
    "real": {},
    "fixed": {"auto_config": False, "global_score": "off", "position_norm": "off"},
    "random": {"weights": "random", "auto_config": False, "global_score": "off", "position_norm": "off"},
}


def run_variant(
    variant: str,
    split: str,
    cache: str,
    only: list[str] | None,
    base: dict[str, Any],
    extra_normals: int = 0,
    foreign: str = "",
    foreign_scale: float = 1.0,
    generator: bool = True,
) -> dict[str, Any]:
    """One variant over every category: its row of the JSON line (and, for `real`, its settings and verdicts)."""
    cats = load_categories(split_data(split, Path(cache)), only, extra_normals if variant == "real" else 0)
    cats = cats if generator else []  # a foreign-only job (the generator's runs in another worker)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if variant == "baseline":
            outcomes, timing = run_baseline(cats), {}
        else:
            over = VARIANT_SETTINGS[variant]
            settings = EvidenceSettings(**{**base, **over, "bank_store": f"{tmp}/{variant}", "device": "cpu"})
            outcomes, timing = run_stage(settings, cats) if cats else ({}, {})
            if foreign:
                start_f = time.perf_counter()
                fs = settings.model_copy(update={"bank_store": f"{tmp}/{variant}-foreign"})
                out["foreign"] = {
                    **evaluate_foreign(fs, foreign, scale=foreign_scale),
                    "wall_s": round(time.perf_counter() - start_f, 1),
                }
            if variant == "real" and cats:
                out["settings"] = settings.model_dump(exclude={"bank_store"})
                out["verdict"] = verdict_scores(cats, outcomes, settings.false_alarm_rate)
    if cats:
        out["row"] = {**summarize(cats, outcomes), **timing, "wall_s": round(time.perf_counter() - start, 1)}
    return out


def _run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    return run_variant(*job)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=sorted(SPLITS), default="eval", help="eval (reported) or tuning.")
    ap.add_argument("--variants", default="real,fixed,random", help="Comma-separated: real, fixed, random, baseline.")
    ap.add_argument("--foreign", choices=["", "eval", "tuning"], default="", help="Also run this foreign-set split.")
    ap.add_argument("--foreign-scale", type=float, default=1.0, help="Shrink the foreign queries (tuning runs).")
    ap.add_argument("--categories", default="", help="Comma-separated subset (default: all).")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "echo-evidence-bench"), help="Data cache.")
    ap.add_argument("--config", default="", help="YAML of evidence settings to evaluate (default: the defaults).")
    ap.add_argument(
        "--jobs", type=int, default=1, help="Variants run in this many worker processes (same data, one JSON line)."
    )
    ap.add_argument(
        "--extra-normals",
        type=int,
        default=0,
        help="Per category, this many more normal images of the split's generator, scored by `real` only to "
        "measure the false-alarm rate (a 1%% rate needs hundreds of normals; the split's own 40 each are few).",
    )
    args = ap.parse_args()
    only = [c for c in args.categories.split(",") if c] or None
    cats = load_categories(split_data(args.split, Path(args.cache)), only)
    base: dict[str, Any] = {}
    if args.config:
        import yaml

        base = yaml.safe_load(Path(args.config).read_text()) or {}
    variants = [v for v in args.variants.split(",") if v]
    line: dict[str, Any] = {"bench": "evidence_quality", "split": args.split, **SPLITS[args.split]}
    line["categories"] = [c.name for c in cats]
    if args.extra_normals:
        line["extra_normals_per_category"] = args.extra_normals
    # with several workers and --foreign, each variant's generator and foreign runs are separate jobs
    split_sets = bool(args.foreign) and args.jobs > len(variants)
    jobs = [
        (
            v,
            args.split,
            args.cache,
            only,
            base,
            args.extra_normals,
            "" if split_sets else args.foreign,
            args.foreign_scale,
        )
        for v in variants
    ]
    if split_sets:
        jobs += [(v, args.split, args.cache, only, base, 0, args.foreign, args.foreign_scale, False) for v in variants]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_job, jobs))
    else:
        results = [_run_job(job) for job in jobs]
    rows: dict[str, Any] = {}
    for v, res in zip([j[0] for j in jobs], results, strict=True):
        if "row" in res:
            rows[v] = res["row"]
        if "foreign" in res:
            line.setdefault("foreign", {})[v] = res["foreign"]
        line.update({k: res[k] for k in ("settings", "verdict") if k in res})
    line["rows"] = rows
    if "real" in rows:
        r = rows["real"]
        line["targets"] = TARGETS
        line["targets_met"] = bool(
            r["mean"]["image_auroc"] >= TARGETS["image_auroc_mean"]
            and r["mean"]["pixel_auroc"] >= TARGETS["pixel_auroc_mean"]
            and r["min_image_auroc"] >= TARGETS["image_auroc_min"]
        )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
