"""Benchmark: how long a product's evidence bank takes to build, at the default coreset and at coreset_ratio 1.

One run, one JSON line. The same normal images (the generator's tuning seed, one category: its 40 templates plus
more normal images of the same generator up to `--images`) are added in one AddNormalImages call to a fresh
bank, at `coreset_ratio` 0.1 (the default) and 1.0, by this tree's code (`after`) and by the code at `--before`
(a git ref, default: main with a fresh coreset per calibration fold; `--before-ratios`, `--skip-before`), each
build in its own process, one after the other, on this machine. The figure is wall time of `add_normal_images`
(self-configuration, backbone forwards, coreset, calibration, commit), with the seconds of self-configuration,
calibration and the index apart (`parts_s`), and the line carries before/after ratios from the same run.

Targets (issue 25): 100 images in <= 60 s at the defaults, any coreset_ratio within 3x of that.

    python -m loadtests.bench.bank_build [--images 100] [--category round_part] [--before REF] [--skip-before]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BEFORE_REF = "d0d7243"  # main with k-fold calibration whose fold banks each ran a fresh coreset
PARTS = ("_choose", "recalibrate", "_index")  # EvidenceService steps timed apart: self-configuration, calibration
RATIOS = (0.1, 1.0)
TARGET_S = 60.0
TARGET_FACTOR = 3.0
ROOT = Path(__file__).resolve().parents[2]


def worker(images_dir: str, ratio: float, category: str) -> None:
    """In the child: build one bank from the PNGs in images_dir with the tree on PYTHONPATH; print its timing.

    Besides the total, the seconds of the steps in PARTS (self-configuration's choice, calibration, the serving
    index), timed by wrapping the service's methods: the rest is decoding, backbone forwards and the coreset.
    """
    from services.evidence.config import EvidenceSettings
    from services.evidence.core import EvidenceService

    images = [p.read_bytes() for p in sorted(Path(images_dir).glob("*.png"))]
    parts: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - t0

        return run

    with tempfile.TemporaryDirectory() as tmp:
        service = EvidenceService.from_settings(EvidenceSettings(bank_store=tmp, device="cpu", coreset_ratio=ratio))
        for name in PARTS:
            if hasattr(service, name):
                setattr(service, name, timed(name, getattr(service, name)))
        start, cpu = time.perf_counter(), time.process_time()
        res = service.add_normal_images("bench", "Synthetic", category, images)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    cal = res.bank.calibration
    record = res.bank.self_config or {}
    print(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "cpu_s": round(cpu, 1),  # every thread's CPU time: less swayed by a loaded machine than the wall
                "parts_s": {name.strip("_"): round(v, 1) for name, v in parts.items()},
                "memory_patches": res.bank.memory_patches,
                "threshold": round(cal.threshold, 3) if cal else None,
                "method": getattr(cal, "method", "leave-one-out") if cal else None,
                "chosen": record.get("chosen"),
            }
        )
    )


def tree_of(ref: str, into: Path) -> Path:
    """The services and protos of a git ref, extracted (not checked out) under `into`."""
    cmd = ["git", "-C", str(ROOT), "archive", ref, "services", "protos"]
    archive = subprocess.run(cmd, check=True, capture_output=True)
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run_build(tree: Path, images_dir: Path, ratio: float, category: str) -> dict[str, Any]:
    # the tree first, then this file's folder (its `worker` runs on whichever tree's services it finds)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "protos"), str(Path(__file__).parent)])}
    code = "import sys; from bank_build import worker; worker(sys.argv[1], float(sys.argv[2]), sys.argv[3])"
    out = subprocess.run(
        [sys.executable, "-c", code, str(images_dir), str(ratio), category],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100, help="Normal images in the bank.")
    ap.add_argument("--category", default="round_part", help="Synthetic category.")
    ap.add_argument("--before", default=BEFORE_REF, help="Git ref of the code to compare with.")
    ap.add_argument(
        "--before-ratios",
        default=",".join(str(r) for r in RATIOS),
        help="Coreset ratios to time the --before code at (empty: none).",
    )
    ap.add_argument("--skip-before", action="store_true", help="Time this tree only (same as --before-ratios '').")
    ap.add_argument("--ratios", default=",".join(str(r) for r in RATIOS), help="Comma-separated coreset ratios.")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "echo-evidence-bench"), help="Data cache.")
    args = ap.parse_args()

    from loadtests.bench.evidence_quality import extra_normal_images, load_categories, split_data

    root = split_data("tuning", Path(args.cache))
    cat = load_categories(root, [args.category])[0]
    images = (cat.templates + extra_normal_images(root, args.category, max(0, args.images - len(cat.templates))))[
        : args.images
    ]
    ratios = [float(r) for r in args.ratios.split(",") if r]
    line: dict[str, Any] = {
        "bench": "bank_build",
        "images": len(images),
        "category": args.category,
        "split": "tuning",
        "cpus": os.cpu_count(),
        "load_average_start": load_average(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        images_dir = Path(tmp) / "images"
        images_dir.mkdir()
        for i, data in enumerate(images):
            (images_dir / f"{i:04d}.png").write_bytes(data)
        before_ratios = [] if args.skip_before else [float(r) for r in args.before_ratios.split(",") if r]
        if before_ratios:
            tree = tree_of(args.before, Path(tmp) / "before")
            line["before_ref"] = args.before
            line["before"] = {f"ratio_{r:g}": run_build(tree, images_dir, r, args.category) for r in before_ratios}
        line["after"] = {f"ratio_{r:g}": run_build(ROOT, images_dir, r, args.category) for r in ratios}
    line["load_average_end"] = load_average()
    after = line["after"]
    default_s = after[f"ratio_{RATIOS[0]:g}"]["seconds"] if f"ratio_{RATIOS[0]:g}" in after else None
    if default_s is not None:
        worst = max(v["seconds"] for v in after.values())
        line["targets"] = {"default_s": TARGET_S, "any_ratio_factor": TARGET_FACTOR}
        line["targets_met"] = bool(default_s <= TARGET_S and worst <= TARGET_FACTOR * TARGET_S)
    if "before" in line:
        before = line["before"]
        line["speedup"] = {k: round(before[k]["seconds"] / max(after[k]["seconds"], 1e-9), 2) for k in before}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
