"""Where a server's memory goes under load: tracemalloc snapshots diffed over time, objects by type, and malloc.

The embedded server runs in this process (so tracemalloc sees every Python allocation of
every stage); Locust drives it from its own process. After a warm-up, a snapshot is taken
every --every seconds; the report diffs the last against the first: the allocation sites
that grew, the object types that grew (objgraph's growth count, from gc), and glibc's
heap (in use vs free but kept). RSS growth that neither Python's allocations nor malloc's
in-use bytes explain is memory the allocator keeps (fragmentation, arenas), not a leak.

    python loadtests/profile_memory.py --minutes 8 --users 8 --types all

Prints ONE JSON line (RSS, traced and malloc figures at warm-up and end, the top growing
sites and types); the full tables go to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadkit import LOADTESTS, checkout_env, drill_options, line_names, say, workspace

from app.background import BackgroundServer
from services.client import InspectorClient
from services.config import load_settings


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]  # fmt: skip


def malloc_mb() -> dict[str, float]:
    """glibc's heap: bytes in use, free but kept by the allocator, and mmapped blocks (MB); {} elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"in_use": m.uordblks / 2**20, "free_kept": m.fordblks / 2**20, "mmapped": m.hblkhd / 2**20}


def object_counts() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects())


def holders(min_bytes: int = 32_768, chains: int = 3, depth: int = 6) -> list[dict[str, object]]:
    """Who keeps the big byte strings alive: for the site that allocated most of them, a few referrer chains.

    tracemalloc says where memory was allocated, not who holds it; gc's referrers answer that.
    """
    gc.collect()
    found: dict[str, list[object]] = {}
    seen: set[int] = set()
    for container in gc.get_objects():
        for ref in gc.get_referents(container):
            if type(ref) in (bytes, bytearray) and len(ref) >= min_bytes and id(ref) not in seen:
                seen.add(id(ref))
                tb = tracemalloc.get_object_traceback(ref)
                site = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in reversed(tb or [])) or "?"
                found.setdefault(site, []).append(ref)
    out = []
    for site, objs in sorted(found.items(), key=lambda kv: -sum(len(o) for o in kv[1]))[:3]:  # type: ignore[arg-type]
        paths = []
        for obj in objs[:chains]:
            path, cur = [], obj
            for _ in range(depth):
                refs = [r for r in gc.get_referrers(cur) if r is not objs and r is not found and not _is_frame(r)]
                if not refs:
                    break
                cur = refs[0]
                path.append(_describe(cur))
            paths.append(" <- ".join(path))
        out.append({"site": site, "objects": len(objs), "mb": round(sum(len(o) for o in objs) / 2**20, 1),  # type: ignore[arg-type]
                    "held_by": paths})  # fmt: skip
    return out


def _is_frame(obj: object) -> bool:
    return type(obj).__name__ in ("frame", "list_iterator") or obj is sys.modules


def _describe(obj: object) -> str:
    name = type(obj).__name__
    if isinstance(obj, dict):
        keys = list(obj)[:4]
        return f"dict{keys}"
    return f"{type(obj).__module__}.{name}" if not isinstance(obj, (list, tuple)) else f"{name}[{len(obj)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=8.0, help="Load duration after warm-up.")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="Load before the first snapshot.")
    ap.add_argument("--every", type=float, default=60.0, help="Seconds between snapshots.")
    ap.add_argument("--users", type=int, default=8, help="Locust users (lines), each as fast as answers come.")
    ap.add_argument("--lines", type=int, default=4, help="Distinct line ids.")
    ap.add_argument("--stages", default="", help="Users over time as Locust's --stages (e.g. 2m:2,2m:4,2m:8).")
    ap.add_argument("--frames", type=int, default=12, help="Traceback depth tracemalloc keeps.")
    ap.add_argument("--top", type=int, default=15, help="Sites and types listed.")
    drill_options(ap, line_rate=False, types="all")
    args = ap.parse_args()

    work, data = workspace(args.workdir, "echo-mem-")
    settings = load_settings(data_dir=str(work / "echo-data"), server={"port": 0})
    proc = psutil.Process()
    with BackgroundServer(settings) as srv:
        lines = line_names("mem", args.lines)
        with InspectorClient(srv.address, timeout_s=600) as client:
            from services.mmad.loader import load_dataset

            ds = load_dataset(data)
            for line in lines:
                for d, c in ds.categories():
                    paths = [ds.abspath(t) for dd, cc, t in ds.templates() if (dd, cc) == (d, c)]
                    client.add_normal_images(line, c, paths, dataset=d)
        # traced from here on: the imports and model loading before are not growth (and crawl when traced)
        tracemalloc.start(args.frames)
        total_s = args.warmup_s + args.minutes * 60
        say(f"server on {srv.address}; Locust: {args.users} users, {args.types}, {total_s:.0f} s")
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LOADTESTS / "locustfile.py"), "--headless",
            "-u", str(args.users), "-r", str(args.users), "-t", f"{int(total_s)}s", "--host", srv.address,
            "--data", str(data), "--line", "mem", "--lines", str(args.lines), "--types", args.types,
            "--csv", str(work / "mem"), "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        if args.stages:
            cmd += ["--stages", args.stages]
        t0 = time.monotonic()
        locust = subprocess.Popen(cmd, env=checkout_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        series = []
        first = first_objects = first_malloc = None
        first_rss = 0.0
        next_at = args.warmup_s
        while locust.poll() is None:
            time.sleep(1)
            if time.monotonic() - t0 < next_at:
                continue
            next_at += args.every
            snap = tracemalloc.take_snapshot().filter_traces(
                (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib*"))
            )
            rss = proc.memory_info().rss / 2**20
            traced = tracemalloc.get_traced_memory()[0] / 2**20
            heap = {k: round(v, 1) for k, v in malloc_mb().items()}
            series.append({"t_s": round(time.monotonic() - t0), "rss_mb": round(rss, 1), "traced_mb": round(traced, 1),
                           **heap})  # fmt: skip
            say("sample", series[-1])
            if first is None:
                first, first_objects, first_malloc, first_rss = snap, object_counts(), malloc_mb(), rss
            last = snap
        out = locust.stdout.read() if locust.stdout else ""
        if first is None:
            raise SystemExit(f"Locust ended before the warm-up was over:\n{out[-3000:]}")
        last_objects = object_counts()
        held = holders()
    diffs = sorted(last.compare_to(first, "traceback"), key=lambda d: d.size_diff, reverse=True)  # growth first
    sites = []
    for d in diffs[: args.top]:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in d.traceback[-4:]]
        sites.append({"growth_kb": round(d.size_diff / 1024, 1), "count_diff": d.count_diff, "at": frames})
        print(f"{d.size_diff / 1024:10.1f} KB {d.count_diff:+8d}  " + " <- ".join(reversed(frames)), file=sys.stderr)
    growth = (last_objects - first_objects).most_common(args.top)
    for name, n in growth:
        print(f"{n:+10d}  {name}", file=sys.stderr)
    print(out[-2500:], file=sys.stderr)
    print(json.dumps({
        "benchmark": "profile_memory",
        "users": args.users,
        "types": args.types,
        "minutes_after_warmup": args.minutes,
        "rss_mb": {"warm": round(first_rss, 1), "end": series[-1]["rss_mb"]},
        "traced_mb": {"warm": series[0]["traced_mb"], "end": series[-1]["traced_mb"]},
        "malloc_mb": {"warm": {k: round(v, 1) for k, v in (first_malloc or {}).items()},
                      "end": {k: v for k, v in series[-1].items() if k in ("in_use", "free_kept", "mmapped")}},
        "series": series,
        "top_sites": sites[:5],
        "top_types": growth[:10],
        "held_by": held,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
