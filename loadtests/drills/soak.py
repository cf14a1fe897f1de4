"""Soak: --minutes at --fraction of capacity; after warm-up the server's RSS grows < 5% and no call fails.

    python -m loadtests.drills.soak --capacity 14                      # 30 minutes at 70%, embedded
    python -m loadtests.drills.soak --capacity 14 --minutes 5          # a short check of the script

The server's RSS (embedded: the `echo-iad serve` process; Ray: every replica and proxy) is sampled every
--every-s seconds on a thread. RSS at the end of the warm-up is the start; growth is end vs start.
Prints ONE JSON line: RSS at warm-up and end, growth %, the peak, the samples every minute, the calls'
latencies and statuses, Locust's numbers, and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math

from loadtests.kit.load import (
    RssSampler,
    drill_options,
    line_names,
    locust,
    onboard,
    say,
    start_server,
    uptime,
    workspace,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capacity", type=float, required=True, help="Inspections/s held at p99 < 1 s.")
    ap.add_argument("--fraction", type=float, default=0.7, help="Share of capacity offered.")
    ap.add_argument("--minutes", type=float, default=30.0, help="Soak length after the warm-up.")
    ap.add_argument("--warmup-s", type=float, default=120.0, help="Load before RSS is taken as the start.")
    ap.add_argument("--every-s", type=float, default=15.0, help="Seconds between RSS samples.")
    ap.add_argument("--deadline-ms", type=float, default=10_000.0, help="Each request's deadline.")
    drill_options(ap, ray=True)
    args = ap.parse_args()

    work, data = workspace(args.workdir, "echo-soak-")
    rate = args.capacity * args.fraction
    lines = max(1, math.ceil(rate / args.line_rate))
    before = uptime()
    server = start_server(work, ray_config=args.ray)
    try:
        onboard(server.address, data, line_names("line", lines), ray=server.ray)
        total = args.warmup_s + args.minutes * 60
        say(f"soak: {rate:.1f} inspections/s from {lines} lines for {total:.0f} s")
        with RssSampler(server, args.every_s) as rss:
            run = locust(
                server.address, work / "soak", users=lines, duration_s=total, data=data, lines=lines,
                line_rate=rate / lines, types=args.types, ray=server.ray, deadline_ms=args.deadline_ms,
            )  # fmt: skip
    finally:
        server.stop()
    warm = [mb for t, mb in rss.samples if t >= args.warmup_s]
    start_mb, end_mb = (warm[0], warm[-1]) if warm else (float("nan"), float("nan"))
    minutes = {}
    for t, mb in rss.samples:
        minutes.setdefault(int(t // 60), round(mb, 1))
    summary = run.summary(args.warmup_s)
    growth = (end_mb - start_mb) / start_mb * 100
    print(json.dumps({
        "benchmark": "drill_soak",
        "mode": f"ray {args.ray}" if args.ray else "embedded",
        "types": args.types,
        "offered_rps": round(rate, 2),
        "capacity_rps": args.capacity,
        "minutes_after_warmup": args.minutes,
        "rss_mb": {"after_warmup": round(start_mb, 1), "end": round(end_mb, 1), "peak": round(max(warm), 1)},
        "rss_growth_pct": round(growth, 2),
        "goal": "growth < 5% after warm-up, 0 errors",
        "pass": growth < 5 and summary["errors"] == 0,
        **summary,
        "errors_in_warmup": run.errors() - summary["errors"],
        "locust": run.locust,
        "report": run.report,
        "rss_by_minute": minutes,
        "uptime_before": before,
        "uptime_after": uptime(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
