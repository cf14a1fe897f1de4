"""Overload: at 3x capacity, goodput stays near capacity and the excess is refused at once (RESOURCE_EXHAUSTED).

    python -m loadtests.drills.overload --capacity 14          # the rate drills/capacity.py held
    python -m loadtests.drills.overload --capacity 10 --ray deploy/local-cpu.yaml

One server, two Locust runs: first --baseline-s at the capacity (the baseline, in the same run), then
--seconds at --factor x capacity. Lines ask at a fixed rate each and carry a deadline (--deadline-ms);
the gateway admits an inspection only if it can finish within its share of that deadline. Goodput is
answers per second within --p99-ms; it is compared with the capacity given and with the baseline's.
Prints ONE JSON line: both runs' rates, latencies and statuses, how fast refusals came back, how many
calls ran into their deadline (a timeout pile-up), and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from loadtests.kit.load import Run, drill_options, line_names, locust, onboard, say, start_server, uptime, workspace
from services.common.percentiles import percentile


def figures(run: Run, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    window = run.window(args.settle_s)
    refused = [c.ms for c in window if c.status == "RESOURCE_EXHAUSTED"]
    good = run.rate("OK", args.settle_s, max_ms=args.p99_ms)
    return {
        "offered_rps": rate,
        "goodput_rps": round(good, 2),
        **run.summary(args.settle_s),
        "refused_p50_ms": round(percentile(refused, 50), 1) if refused else None,
        "refused_p99_ms": round(percentile(refused, 99), 1) if refused else None,
        "deadline_exceeded": sum(1 for c in window if c.status == "DEADLINE_EXCEEDED"),
        "locust": run.locust,
        "report": run.report,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capacity", type=float, required=True, help="Inspections/s held at p99 < --p99-ms.")
    ap.add_argument("--factor", type=float, default=3.0, help="Offered load as a multiple of capacity.")
    ap.add_argument("--baseline-s", type=float, default=60.0, help="Seconds at capacity first.")
    ap.add_argument("--seconds", type=float, default=120.0, help="Seconds at factor x capacity.")
    ap.add_argument("--settle-s", type=float, default=10.0, help="Seconds at the start of each run not judged.")
    ap.add_argument("--p99-ms", type=float, default=1000.0, help="An answer counts as goodput within this time.")
    ap.add_argument("--deadline-ms", type=float, default=2000.0, help="Each request's deadline (a line's budget).")
    drill_options(ap, ray=True)
    args = ap.parse_args()

    work, data = workspace(args.workdir, "echo-overload-")
    before = uptime()
    server = start_server(work, ray_config=args.ray)
    results = {}
    try:
        onboard(server.address, data, line_names("line", 16), ray=server.ray)
        for name, rate, seconds in (
            ("baseline", args.capacity, args.baseline_s),
            ("overload", args.capacity * args.factor, args.seconds),
        ):
            lines = max(1, math.ceil(rate / args.line_rate))
            say(f"{name}: {rate:.1f} inspections/s from {lines} lines for {seconds:.0f} s")
            run = locust(
                server.address, work / name, users=lines, duration_s=seconds, data=data, lines=lines,
                line_rate=rate / lines, types=args.types, ray=server.ray, deadline_ms=args.deadline_ms,
            )  # fmt: skip
            results[name] = figures(run, rate, args)
            say(name, {k: v for k, v in results[name].items() if k != "locust"})
    finally:
        server.stop()
    over, base = results["overload"], results["baseline"]
    print(json.dumps({
        "benchmark": "drill_overload",
        "mode": f"ray {args.ray}" if args.ray else "embedded",
        "types": args.types,
        "capacity_rps": args.capacity,
        "factor": args.factor,
        "goodput_vs_capacity": round(over["goodput_rps"] / args.capacity, 3),
        "goodput_vs_baseline": round(over["goodput_rps"] / max(1e-9, base["goodput_rps"]), 3),
        "goal": "goodput >= 0.9 x capacity; refusals fast; no deadline pile-up",
        "overload": over,
        "baseline": base,
        "deadline_ms": args.deadline_ms,
        "uptime_before": before,
        "uptime_after": uptime(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
