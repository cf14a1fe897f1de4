"""Memory drill: bursts of large images against `echo-iad serve`, its RSS against the memory budget.

Replays the hostile-load bursts of issue 25 on an embedded server in its own process:
  1. N concurrent Inspects of a large JPEG (about --mb MB), twice, an idle pause after each;
  2. M concurrent Inspects of a flat PNG of --bomb-mp megapixels (a decompression bomb under the pixel limit).
It samples the server's RSS (every 0.1 s) and its health (every 0.5 s) throughout, and reports the RSS before,
the peak of each burst and the idle RSS after, against gateway.max_inflight_bytes (--budget-mb):
  - peak <= before + 1.2 x budget;
  - idle after within 20% of the RSS before the burst;
  - no NOT_SERVING sample while the server was answering.

    python -m loadtests.drills.memory --n 200 --mb 5 --bombs 64

`--per-stage` measures instead what one image costs each stage that decodes it (the figures the budget's charge in
services/gateway/limits.py comes from): every stage's own decode-and-preprocess path runs on the drill's large
JPEG and a 36 MP flat PNG, each in a fresh process, and its peak RSS over the same process warmed on a small
image is that stage's working memory for the image, in bytes per pixel.

Prints ONE JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
from PIL import Image

from loadtests.kit.load import Server, checkout_env, onboard, say, start_server, uptime, workspace
from services.client import build_inspect_request
from services.mmad.loader import load_dataset

LINE = "drill-memory"
QUESTION = ("Is there any defect in the object?", {"A": "Yes.", "B": "No."})


def large_jpeg(mb: float, seed: int = 0) -> tuple[bytes, tuple[int, int]]:
    """A photo-like JPEG of about `mb` MB: smooth shapes under fine noise, grown until it is that large."""
    rng = np.random.default_rng(seed)
    side = 1200
    while True:
        base = Image.fromarray(rng.integers(0, 255, (side // 40, side // 30, 3), np.uint8)).resize(
            (side * 4 // 3, side), Image.BICUBIC
        )
        pixels = np.asarray(base, np.int16) + rng.integers(-12, 12, (side, side * 4 // 3, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=92)
        if buf.tell() >= mb * 1e6 or side >= 6000:
            return buf.getvalue(), (side * 4 // 3, side)
        side = int(side * min(2.0, (mb * 1e6 / buf.tell()) ** 0.5 * 1.02))


def flat_png(megapixels: float) -> bytes:
    side = int((megapixels * 1e6) ** 0.5)
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


STAGES = ("embedding", "evidence", "decision")


def _stage_path(stage: str) -> Any:
    """The stage's own path from encoded bytes to what its model takes, with its default settings."""
    from services.common.images import ImageLimits

    if stage == "embedding":
        import open_clip

        from services.embedding.preprocess import preprocess_cpu

        transform = open_clip.image_transform(224, is_train=False, resize_mode="shortest", interpolation="bicubic")
        return lambda data: preprocess_cpu(data, transform, ImageLimits())
    if stage == "evidence":
        from services.evidence.config import EvidenceSettings
        from services.evidence.features import IMAGENET_MEAN, IMAGENET_STD, Preprocessor

        ev = EvidenceSettings()
        return Preprocessor(ev.input_size, ev.resize_mode, IMAGENET_MEAN, IMAGENET_STD, ImageLimits())
    from services.decision.config import DecisionSettings
    from services.decision.preprocess import prepare_images

    dec = DecisionSettings()
    return lambda data: prepare_images([("image", data)], dec.min_pixels, dec.max_pixels)


def probe_stage(stage: str, path: str) -> None:
    """In this (fresh) process: the stage's path warmed on a small image, then its peak RSS over the RSS just before
    (the heap trimmed, sampled every millisecond on a thread) while it prepares `path`."""
    from services.common.memory import trim_heap

    run = _stage_path(stage)
    run(flat_png(0.25))
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        pixels = img.width * img.height
    proc = psutil.Process()
    trim_heap()
    before = proc.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            peak.append(proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = run(data)
    peak.append(proc.memory_info().rss)
    done.set()
    sampler.join()
    del out
    grown = max(peak) - before
    print(json.dumps({"stage": stage, "peak_mb": round(grown / 2**20, 1), "bytes_per_pixel": round(grown / pixels, 2)}))


def per_stage(mb: float, bomb_mp: float) -> dict[str, Any]:
    """Each stage's working memory per image, for the large JPEG and the flat PNG, each stage in its own process."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="echo-drill-memory-") as tmp:
        jpeg, (w, h) = large_jpeg(mb)
        images = {"large_jpeg": (jpeg, w * h), "flat_png": (flat_png(bomb_mp), int((bomb_mp * 1e6) ** 0.5) ** 2)}
        for name, (data, pixels) in images.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            rows = {}
            for stage in STAGES:
                cmd = [sys.executable, "-m", "loadtests.drills.memory", "--probe", stage, str(path)]
                done = subprocess.run(cmd, env=checkout_env(), capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows[stage] = {k: row[k] for k in ("peak_mb", "bytes_per_pixel")}
                say(name, stage, rows[stage])
            out[name] = {"pixels": pixels, "encoded_bytes": len(data), "stages": rows}
    return out


class Watch:
    """RSS every 0.1 s and whole-server health every 0.5 s, on threads, as (seconds, value)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rss: list[tuple[float, float]] = []
        self.health: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._rss, self._health)]

    def _rss(self) -> None:
        while not self._stop.wait(0.1):
            self.rss.append((time.monotonic() - self.t0, self.server.rss_mb()))

    def _health(self) -> None:
        with self.server.client(retries=0, timeout_s=5) as client:
            while not self._stop.wait(0.5):
                try:
                    status = client.health(timeout_s=5)
                except grpc.RpcError as e:
                    status = f"no answer ({e.code().name})"
                self.health.append((time.monotonic() - self.t0, status))

    def now(self) -> float:
        return time.monotonic() - self.t0

    def peak(self, start: float, end: float) -> float:
        return max((mb for t, mb in self.rss if start <= t <= end), default=self.server.rss_mb())

    def not_serving(self, start: float, end: float) -> list[str]:
        return [f"{t:.1f}s {s}" for t, s in self.health if start <= t <= end and s != "SERVING"]

    def __enter__(self) -> Watch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def burst(server: Server, image: bytes, n: int, category: str, dataset: str, deadline_s: float) -> dict[str, Any]:
    """N Inspects at once (one thread each), their statuses and how long the burst took."""
    req = build_inspect_request(
        image,
        *QUESTION,
        line_id=LINE,
        category=category,
        dataset=dataset,
        question_type="Anomaly Detection",
        deadline_ms=deadline_s * 1000,
    )
    codes: Counter[str] = Counter()
    messages: dict[str, str] = {}
    with server.client(retries=0, timeout_s=deadline_s) as client:

        def one(_i: int) -> None:
            try:
                client.inspect_request(req, timeout_s=deadline_s)
                codes["OK"] += 1
            except grpc.RpcError as e:
                codes[e.code().name] += 1
                messages.setdefault(e.code().name, (e.details() or "")[:200])

        started = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(one, range(n)))
    return {"statuses": dict(codes), "messages": messages, "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="Concurrent Inspects per burst of large images.")
    ap.add_argument("--mb", type=float, default=5.0, help="Size of the large JPEG, in MB.")
    ap.add_argument("--bursts", type=int, default=2, help="Bursts of large images.")
    ap.add_argument("--bombs", type=int, default=64, help="Concurrent Inspects of the flat PNG.")
    ap.add_argument("--bomb-mp", type=float, default=36.0, help="Megapixels of the flat PNG.")
    ap.add_argument("--budget-mb", type=float, default=2048, help="gateway.max_inflight_bytes, in MiB.")
    ap.add_argument("--deadline-s", type=float, default=120.0, help="Each Inspect's deadline.")
    ap.add_argument("--idle-s", type=float, default=20.0, help="Idle time after each burst before RSS is read.")
    ap.add_argument("--workdir", default="", help="Data and server state (default: a temp dir).")
    ap.add_argument("--per-stage", action="store_true", help="Measure each stage's working memory per image instead.")
    ap.add_argument("--probe", nargs=2, metavar=("STAGE", "IMAGE"), help=argparse.SUPPRESS)  # --per-stage's child
    args = ap.parse_args()
    if args.probe:
        probe_stage(*args.probe)
        return
    if args.per_stage:
        line = {"bench": "drill_memory_per_stage", **per_stage(args.mb, args.bomb_mp), "uptime": uptime()}
        print(json.dumps(line), flush=True)
        return

    work, data = workspace(args.workdir, "echo-drill-memory-")
    budget = int(args.budget_mb * 2**20)
    server = start_server(work, env={"ECHO_IAD__GATEWAY__MAX_INFLIGHT_BYTES": str(budget)})
    try:
        onboard(server.address, data, [LINE])
        ds = load_dataset(data)
        dataset, category = next(iter(ds.categories()))
        image, (w, h) = large_jpeg(args.mb)
        bomb = flat_png(args.bomb_mp)
        say(f"large JPEG {w}x{h}, {len(image) / 1e6:.1f} MB; flat PNG {len(bomb) / 1e3:.0f} kB")
        burst(server, image, 2, category, dataset, args.deadline_s)  # warm every stage's lazy parts
        time.sleep(args.idle_s)
        rounds: list[dict[str, Any]] = []
        with Watch(server) as watch:
            plan = [("large", image, args.n)] * args.bursts + [("flat_png", bomb, args.bombs)]
            for name, img, n in plan:
                before = server.rss_mb()
                start = watch.now()
                say(f"burst {name} x{n}: RSS {before:.0f} MB")
                outcome = burst(server, img, n, category, dataset, args.deadline_s)
                end = watch.now()
                time.sleep(args.idle_s)
                idle = server.rss_mb()
                peak = watch.peak(start, watch.now())
                rounds.append(
                    {
                        "burst": name,
                        "n": n,
                        "rss_before_mb": round(before),
                        "rss_peak_mb": round(peak),
                        "rss_idle_after_mb": round(idle),
                        "peak_within_budget": peak <= before + 1.2 * budget / 2**20,
                        "idle_within_20pct": idle <= before * 1.2,
                        "not_serving_while_answering": watch.not_serving(start, end),
                        **outcome,
                    }
                )
                say(json.dumps(rounds[-1]))
        line = {
            "bench": "drill_memory",
            "image": {
                "width": w,
                "height": h,
                "mb": round(len(image) / 1e6, 2),
                "decoded_mb": round(w * h * 3 / 2**20),
            },
            "flat_png": {"megapixels": args.bomb_mp, "kb": round(len(bomb) / 1e3)},
            "budget_mb": args.budget_mb,
            "rounds": rounds,
            "ok": all(
                r["peak_within_budget"] and r["idle_within_20pct"] and not r["not_serving_while_answering"]
                for r in rounds
            ),
            "uptime": uptime(),
        }
        print(json.dumps(line), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
