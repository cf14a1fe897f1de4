"""Capacity: the highest rate of inspections held for --hold-s at p99 < --p99-ms with 0 errors.

    python -m loadtests.drills.capacity                         # embedded (`echo-iad serve`), offline models
    python -m loadtests.drills.capacity --ray deploy/local-cpu.yaml   # Ray Serve (takes /tmp/echo-ray.lock)

Factory lines ask at a fixed rate each (--line-rate), so the offered rate is lines x line-rate. First a
step search: one Locust run whose stages add lines every --step-s; a step passes when its p99 is under
--p99-ms, no call failed, and the answers kept up with the offer (>= 95%). Then the highest passing rate
is held for --hold-s in a fresh Locust run; if the hold fails, the next lower step is held instead
(--retries). Prints ONE JSON line: the capacity, the hold's own latencies and Locust's numbers, the
steps, the server's RSS and the machine's load (`uptime`) before and after.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from loadtests.kit.load import drill_options, line_names, locust, onboard, say, start_server, uptime, workspace
from services.common.percentiles import percentile


def step_search(server: Any, work: Path, data: Path, args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """One Locust run stepping the lines up; returns the highest passing rate and every step's figures."""
    rates = [args.start + i * args.step for i in range(args.steps)]
    lines = [max(1, math.ceil(r / args.line_rate)) for r in rates]
    spec = ",".join(f"{args.step_s:.0f}s:{n}" for n in lines)
    run = locust(
        server.address, work / "steps", users=lines[0], duration_s=args.step_s * len(rates), data=data,
        lines=max(lines), line_rate=args.line_rate, types=args.types, stages=spec, ray=server.ray,
        deadline_ms=args.deadline_ms, html=False,
    )  # fmt: skip
    steps, best = [], 0.0
    for i, n in enumerate(lines):
        start = run.start + i * args.step_s
        window = [c for c in run.calls if start + args.settle_s <= c.t < start + args.step_s]
        ok = [c.ms for c in window if c.status == "OK"]
        offered = n * args.line_rate
        rate = len(ok) / (args.step_s - args.settle_s)
        p99 = percentile(ok, 99) if ok else float("inf")
        errors = len(window) - len(ok)
        passed = bool(ok) and p99 < args.p99_ms and errors == 0 and rate >= 0.95 * offered
        steps.append({"offered_rps": offered, "ok_per_s": round(rate, 2), "p99_ms": round(p99, 1),
                      "errors": errors, "pass": passed})  # fmt: skip
        say("step", steps[-1])
        if passed:
            best = offered
        elif best:
            break  # past the knee
    return best, steps


def hold(server: Any, work: Path, data: Path, args: argparse.Namespace, rate: float, tag: str) -> dict[str, Any]:
    lines = max(1, math.ceil(rate / args.line_rate))
    run = locust(
        server.address, work / f"hold-{tag}", users=lines, duration_s=args.hold_s, data=data, lines=lines,
        line_rate=rate / lines, types=args.types, ray=server.ray, deadline_ms=args.deadline_ms,
    )  # fmt: skip
    summary = run.summary(skip_s=args.settle_s)
    passed = summary["p99_ms"] < args.p99_ms and summary["errors"] == 0 and summary["ok_per_s"] >= 0.95 * rate
    return {"offered_rps": rate, "lines": lines, **summary, "locust": run.locust, "report": run.report,
            "pass": passed}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=float, default=4.0, help="First step's rate (inspections/s).")
    ap.add_argument("--step", type=float, default=2.0, help="Rate added per step.")
    ap.add_argument("--steps", type=int, default=12, help="Most steps.")
    ap.add_argument("--step-s", type=float, default=30.0, help="Seconds per step.")
    ap.add_argument("--settle-s", type=float, default=5.0, help="Seconds at the start of a step or hold not judged.")
    ap.add_argument("--hold-s", type=float, default=300.0, help="Seconds the capacity must be held.")
    ap.add_argument("--retries", type=int, default=1, help="Lower steps tried when a hold fails.")
    ap.add_argument("--p99-ms", type=float, default=1000.0, help="Latency bound on the 99th percentile.")
    ap.add_argument("--deadline-ms", type=float, default=10_000.0, help="Each request's deadline.")
    drill_options(ap, ray=True)
    args = ap.parse_args()

    work, data = workspace(args.workdir, "echo-capacity-")
    before = uptime()
    server = start_server(work, ray_config=args.ray)
    try:
        most = math.ceil((args.start + args.step * (args.steps - 1)) / args.line_rate)
        onboard(server.address, data, line_names("line", most), ray=server.ray)
        best, steps = step_search(server, work, data, args)
        holds = []
        rate = best
        for attempt in range(args.retries + 1):
            if rate <= 0:
                break
            say(f"holding {rate} inspections/s for {args.hold_s:.0f} s")
            holds.append(hold(server, work, data, args, rate, str(attempt)))
            say("hold", {k: v for k, v in holds[-1].items() if k != "locust"})
            if holds[-1]["pass"]:
                break
            rate -= args.step
        rss = round(server.rss_mb(), 1)
    finally:
        server.stop()
    capacity = next((h["offered_rps"] for h in holds if h["pass"]), 0.0)
    print(json.dumps({
        "benchmark": "drill_capacity",
        "mode": f"ray {args.ray}" if args.ray else "embedded",
        "types": args.types,
        "capacity_rps": capacity,
        "criterion": f"held {args.hold_s:.0f} s at p99 < {args.p99_ms:.0f} ms, 0 errors",
        "hold": holds[-1] if holds else None,
        "failed_holds": holds[:-1],
        "max_ok_per_s_in_steps": max((st["ok_per_s"] for st in steps), default=0.0),  # throughput, any latency
        "steps": steps,
        "server_rss_mb": rss,
        "uptime_before": before,
        "uptime_after": uptime(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
