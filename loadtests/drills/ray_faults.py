"""Ray Serve under load: kill a stage replica (error rate, time to recover), and autoscaling under a ramp.

    python -m loadtests.drills.ray_faults kill --rate 4              # SIGKILL one of the embedding replicas
    python -m loadtests.drills.ray_faults autoscale --ramp 30s:1,60s:12,30s:1 --idle-s 90

Each starts `echo-iad serve --ray` from deploy/local-cpu.yaml (holding /tmp/echo-ray.lock from before Ray
starts until it is gone) and stops it at the end.

kill: the killed application runs --replicas fixed replicas; Inspector lines ask at --rate throughout;
--before-s in, one replica process is SIGKILLed. Serve starts a new one; the gateway retries idempotent
stage calls on UNAVAILABLE. Reports the success rate (goal >= 99%), the failures and their statuses, the
time until a new replica process is up, and the time from the kill to the last failed call (goal < 30 s).

autoscale: local-cpu.yaml as is (embedding autoscales 1..2 on ongoing requests). Inspector lines ask at
--rate throughout while Locust's EmbeddingUser ramps the embedding application (--ramp, users per
stage), then everything but the steady lines stops for --idle-s. Reports the replica count over time
(the changes, and every 10 s), its minimum and maximum, and the failed requests (goal: 0).

Prints ONE JSON line each, with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loadtests.kit.load import (
    Run,
    Server,
    drill_options,
    line_names,
    locust,
    onboard,
    parse_stages,
    ray_config,
    say,
    start_server,
    uptime,
    workspace,
)


class ReplicaWatch:
    """The application's replica processes every `every_s`, on a thread: [(unix time, count, pids)]."""

    def __init__(self, server: Server, app: str, every_s: float = 1.0) -> None:
        self.server, self.app, self.every_s = server, app, every_s
        self.samples: list[tuple[float, int, frozenset[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = frozenset(self.server.replica_pids(self.app))
            self.samples.append((time.time(), len(pids), pids))
            self._stop.wait(self.every_s)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self, t0: float) -> list[list[float]]:
        """[seconds since t0, replicas] at every change and every 10 s."""
        rows: list[list[float]] = []
        for t, n, _ in self.samples:
            if not rows or rows[-1][1] != n or t - t0 - rows[-1][0] >= 10:
                rows.append([round(t - t0, 1), n])
        return rows


def steady_lines(server: Server, work: Path, data: Path, args: argparse.Namespace, seconds: float) -> Any:
    """Inspector lines at args.rate for `seconds`, on a thread; returns (thread, [Run])."""
    lines = max(1, math.ceil(args.rate / args.line_rate))
    runs: list[Run] = []

    def drive() -> None:
        runs.append(locust(server.address, work / "lines", users=lines, duration_s=seconds, data=data, lines=lines,
                           line_rate=args.rate / lines, types=args.types, ray=True))  # fmt: skip

    thread = threading.Thread(target=drive)
    thread.start()
    return thread, runs


def kill(args: argparse.Namespace, work: Path, data: Path) -> dict[str, Any]:
    config = ray_config(work, **{args.app: {"num_replicas": args.replicas, "autoscaling_config": None}})
    server = start_server(work, ray_config=config)
    try:
        onboard(server.address, data, line_names("line", math.ceil(args.rate / args.line_rate)), ray=True)
        with ReplicaWatch(server, args.app, 0.5) as watch:
            thread, runs = steady_lines(server, work, data, args, args.before_s + args.after_s)
            time.sleep(args.before_s)
            victims = server.replica_pids(args.app)
            if len(victims) < args.replicas:
                raise RuntimeError(f"{args.app}: {len(victims)} replica processes, expected {args.replicas}")
            killed_at = time.time()
            os.kill(victims[0], signal.SIGKILL)
            say(f"SIGKILL {args.app} replica pid {victims[0]}")
            thread.join()
        rss = server.rss_mb()
    finally:
        server.stop()
    run = runs[0]
    after = [s for s in watch.samples if s[0] > killed_at]
    back = next((t for t, n, pids in after if n >= args.replicas and victims[0] not in pids), None)
    failures = [c for c in run.calls if c.status != "OK"]
    last_failure = max((c.t for c in failures if c.t >= killed_at), default=None)
    ok = len(run.calls) - len(failures)
    return {
        "benchmark": "drill_ray_faults kill",
        "mode": f"ray {args.base} ({args.app}: {args.replicas} replicas)",
        "killed": f"{args.app} replica (SIGKILL) {args.before_s:.0f} s into the load",
        "offered_rps": args.rate,
        "calls": len(run.calls),
        "success_rate": round(ok / max(1, len(run.calls)), 4),
        "failures": dict(Counter(c.status for c in failures)),
        "new_replica_process_s": round(back - killed_at, 1) if back else None,
        "recovery_s": round(last_failure - killed_at, 1) if last_failure else 0.0,
        "goal": "success >= 99%, recovery < 30 s",
        "replicas_over_time": watch.timeline(killed_at),
        "summary": run.summary(),
        "locust": run.locust,
        "rss_mb": round(rss, 1),
    }


def autoscale(args: argparse.Namespace, work: Path, data: Path) -> dict[str, Any]:
    ramp_s = sum(d for d, _ in parse_stages(args.ramp))
    server = start_server(work, ray_config=ray_config(work))
    try:
        onboard(server.address, data, line_names("line", math.ceil(args.rate / args.line_rate)), ray=True)
        with ReplicaWatch(server, args.app, 1.0) as watch:
            t0 = time.time()
            thread, runs = steady_lines(server, work, data, args, ramp_s + args.idle_s)
            ramp = locust(
                server.address, work / "ramp", users=1, duration_s=ramp_s, data=data, stages=args.ramp,
                ray=True, locustfile="stages.py", user_classes=["EmbeddingUser"], types=args.types,
            )  # fmt: skip
            say("ramp over; idle but for the steady lines")
            thread.join()
        rss = server.rss_mb()
    finally:
        server.stop()
    counts = [n for _, n, _ in watch.samples]
    ramp_end = next((i for i, s in enumerate(watch.samples) if s[0] >= t0 + ramp_s), len(counts))
    return {
        "benchmark": "drill_ray_faults autoscale",
        "mode": f"ray {args.base} ({args.app} autoscaling as configured there)",
        "ramp": args.ramp,
        "steady_rps": args.rate,
        "replicas_over_time": watch.timeline(t0),
        "replicas_min_max": [min(counts), max(counts)],
        "replicas_at_end_of_ramp": counts[ramp_end - 1] if ramp_end else None,
        "replicas_at_end": counts[-1],
        "failed_requests": {"lines": runs[0].errors(), "ramp": ramp.errors()},
        "goal": "min -> max -> min replicas, 0 failed requests",
        "lines": runs[0].summary(),
        "ramp_locust": ramp.locust,
        "lines_locust": runs[0].locust,
        "rss_mb": round(rss, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drill", choices=("kill", "autoscale"))
    ap.add_argument("--base", default="deploy/local-cpu.yaml", help="The Serve config the drill starts from.")
    ap.add_argument("--app", default="embedding", help="The application killed or watched.")
    ap.add_argument("--replicas", type=int, default=2, help="kill: fixed replicas of --app.")
    ap.add_argument("--rate", type=float, default=4.0, help="Inspections per second of the steady lines.")
    ap.add_argument("--before-s", type=float, default=30.0, help="kill: seconds of load before the kill.")
    ap.add_argument("--after-s", type=float, default=60.0, help="kill: seconds of load after it.")
    ap.add_argument("--ramp", default="30s:1,60s:12,30s:1", help="autoscale: EmbeddingUser users over time.")
    ap.add_argument("--idle-s", type=float, default=90.0, help="autoscale: seconds after the ramp.")
    drill_options(ap)
    args = ap.parse_args()
    work, data = workspace(args.workdir, f"echo-ray-{args.drill}-")
    before = uptime()
    result = kill(args, work, data) if args.drill == "kill" else autoscale(args, work, data)
    print(json.dumps({**result, "uptime_before": before, "uptime_after": uptime()}))


if __name__ == "__main__":
    main()
