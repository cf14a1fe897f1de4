"""Benchmark: synthetic MMAD generation speed on one core (target: 1,000 images in under 60 s).

Prints one JSON line: images/s (wall clock, plus CPU seconds, which stay honest when other
processes share the core) for the whole generator (render, defects, questions, template ranking, PNG
writes), and as a baseline measured in the same run, writing the very same images as PNGs with nothing
else to do (the floor any generator pays), plus the ratio between them.

    python -m loadtests.bench.synth [--quick] [--images N]
"""

from __future__ import annotations

import os

# One core, as the target says: pin the process and keep numeric libraries single-threaded.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from PIL import Image  # noqa: E402

from services.mmad.loader import load_dataset  # noqa: E402
from services.mmad.synth import CATEGORIES, synthesize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 250 images instead of 1,000")
    ap.add_argument("--images", type=int, default=1000, help="query + template images to generate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    target = 250 if args.quick else args.images
    templates = 12
    per_category = max(2, round((target - templates * len(CATEGORIES)) / len(CATEGORIES)))

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        root = synthesize(
            Path(tmp) / "d", args.seed, per_category=per_category, templates_per_category=templates, progress=False
        )
        synth_s, synth_cpu_s = time.perf_counter() - t0, time.process_time() - c0

        t0 = time.perf_counter()
        ds = load_dataset(root)
        load_s = time.perf_counter() - t0

        paths = [s.image_path for s in ds.samples] + sorted({t for _, _, t in ds.templates()})
        masks = [s.mask_path for s in ds.samples if s.mask_path]
        images = []
        for rel in paths:
            with Image.open(root / rel) as im:
                images.append(im.copy())
        mask_images = []
        for rel in masks:
            with Image.open(root / rel) as im:
                mask_images.append(im.copy())
        out = Path(tmp) / "baseline"
        out.mkdir()
        t0 = time.perf_counter()
        for i, im in enumerate(images + mask_images):
            im.save(out / f"{i:05d}.png", format="PNG", compress_level=1)
        write_s = time.perf_counter() - t0

    n = len(paths)
    print(
        json.dumps(
            {
                "bench": "synth",
                "images": n,
                "masks": len(masks),
                "questions": sum(len(s.questions) for s in ds.samples),
                "synth_s": round(synth_s, 2),
                "images_per_s": round(n / synth_s, 1),
                "seconds_per_1000_images": round(1000 * synth_s / n, 1),
                "cpu_seconds_per_1000_images": round(1000 * synth_cpu_s / n, 1),  # honest on a busy machine
                "meets_target_1000_under_60s": 1000 * synth_s / n < 60,
                "meets_target_in_cpu_time": 1000 * synth_cpu_s / n < 60,
                "baseline": "PNG-write the same images and masks only (compress_level=1)",
                "baseline_images_per_s": round(n / write_s, 1),
                "ratio_synth_to_baseline_time": round(synth_s / write_s, 2),
                "load_s": round(load_s, 3),
                "cores": 1,
            }
        )
    )


if __name__ == "__main__":
    main()
