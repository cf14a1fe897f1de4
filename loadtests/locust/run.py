"""Locust's named scenarios, headless, against a real server: Locust's CSV and HTML report for each.

    python -m loadtests.locust.run                          # starts `echo-iad serve`, runs every scenario
    python -m loadtests.locust.run --scenarios lines,burst --seconds 120 --out ./locust-reports
    python -m loadtests.locust.run --host 127.0.0.1:9000 --ray   # Serve's proxy (`echo-iad serve --ray ...`)

Scenarios (each its own Locust run; --seconds sets its length):
  lines    many factory lines (--lines), each asking at its own fixed rate (--line-rate per second)
  burst    a few lines, then a sudden burst of many for a fifth of the run, then back
  mix      every question type in turn (the reasoning types too), as fast as answers come
  stages   each stage alone (Embedding, Retrieval, Knowledge, Decision users of loadtests/locust/stages.py)

Writes OUT/SCENARIO_stats.csv, _stats_history.csv, _failures.csv, _exceptions.csv, _report.html and
_calls.csv (one line per call), and prints ONE JSON line: Locust's aggregated numbers per scenario and
per request name, with the machine's load average.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from loadtests.kit.load import Server, dataset, line_names, locust, onboard, say, start_server

SCENARIOS = ("lines", "burst", "mix", "stages")


def locust_rows(out: Path) -> dict[str, dict[str, Any]]:
    """Locust's stats table per request name: requests, failures, rps, p50/p99 (ms)."""
    path = out.with_name(out.name + "_stats.csv")
    rows: dict[str, dict[str, Any]] = {}
    if path.exists():
        with open(path) as f:
            for r in csv.DictReader(f):
                rows[r["Name"]] = {
                    "requests": int(r["Request Count"]),
                    "failures": int(r["Failure Count"]),
                    "rps": round(float(r["Requests/s"] or 0), 2),
                    "p50_ms": r["50%"],
                    "p99_ms": r["99%"],
                }
    return rows


def run_scenario(name: str, host: str, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    out = Path(args.out) / name
    common: dict[str, Any] = {"duration_s": args.seconds, "data": data, "line": args.line, "ray": args.ray}
    if name == "lines":
        run = locust(host, out, users=args.lines, lines=args.lines, line_rate=args.line_rate, **common)
    elif name == "burst":
        calm, burst = max(1, args.lines // 4), args.lines * 2
        quiet = args.seconds * 0.4
        stages = f"{quiet:.0f}s:{calm},{args.seconds * 0.2:.0f}s:{burst},{quiet:.0f}s:{calm}"
        run = locust(host, out, users=calm, lines=args.lines, line_rate=args.line_rate, stages=stages, **common)
    elif name == "mix":
        # the reasoning pass of the offline model takes seconds on a CPU: a line waits for it
        run = locust(host, out, users=args.users, lines=args.lines, types="all", deadline_ms=60_000, **common)
    else:
        users = ["EmbeddingUser", "RetrievalUser", "KnowledgeUser", "DecisionUser"]
        stage = {"locustfile": "stages.py", "user_classes": users}
        run = locust(host, out, users=len(users), lines=args.lines, **stage, **common)
    say(name, run.locust)
    return {"locust": run.locust, "by_name": locust_rows(out), "report": run.report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"Comma-separated: {', '.join(SCENARIOS)}.")
    ap.add_argument("--seconds", type=float, default=60, help="Length of each scenario.")
    ap.add_argument("--lines", type=int, default=8, help="Factory lines (one Locust user each) in lines/burst.")
    ap.add_argument("--line-rate", type=float, default=1.0, help="Inspections per second of each line.")
    ap.add_argument("--users", type=int, default=4, help="Users of the mix scenario (closed loop).")
    ap.add_argument("--line", default="load", help="Prefix of the line ids.")
    ap.add_argument("--host", default="", help="A running server (host:port); empty: start `echo-iad serve` here.")
    ap.add_argument("--ray", action="store_true", help="--host is Ray Serve's gRPC proxy.")
    ap.add_argument("--data", default="", help="MMAD-format dataset (default: a small synthetic one in --workdir).")
    ap.add_argument("--out", default="./locust-reports", help="Folder for Locust's CSV and HTML reports.")
    ap.add_argument("--workdir", default="", help="Server state and the synthetic dataset (default: a temp dir).")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        ap.error(f"--scenarios: unknown {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="echo-locust-"))
    data = Path(args.data) if args.data else dataset(work)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    server: Server | None = None if args.host else start_server(work)
    host = args.host or (server.address if server else "")
    results: dict[str, Any] = {}
    try:
        say(f"onboarding {args.lines} lines on {host}")
        onboard(host, data, line_names(args.line, args.lines), ray=args.ray)
        for name in chosen:
            results[name] = run_scenario(name, host, args, data)
    finally:
        if server:
            server.stop()
    print(
        json.dumps(
            {
                "benchmark": "run_locust",
                "host": "embedded (echo-iad serve)" if server else host,
                "seconds_each": args.seconds,
                "lines": args.lines,
                "line_rate": args.line_rate,
                "loadavg": [round(x, 2) for x in os.getloadavg()],
                "scenarios": results,
                "reports": str(Path(args.out).resolve()),
            }
        )
    )


if __name__ == "__main__":
    main()
