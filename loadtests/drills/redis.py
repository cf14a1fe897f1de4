"""Redis stopped and restarted under load: what the lines see, and how soon answers come back.

    python -m loadtests.drills.redis --rate 6

An embedded server whose audit log and knowledge live in Redis (cluster mode's stores; Redis with an
append-only file, fsync always), Locust lines at --rate, and, --before-s into the run, Redis stopped
(--signal TERM: a clean stop; KILL: a crash) for --down-s, then started again on the same port and file.
While it is down an answer whose record cannot be kept is withheld (UNAVAILABLE, audit.required);
knowledge falls back to the shipped files. Prints ONE JSON line: success rate, the statuses before,
during and after, the time from the restart to the first answer and to the last failure, and the load.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loadtests.kit.load import Run, drill_options, line_names, locust, onboard, say, start_server, uptime, workspace
from services.common.ports import free_port


def start_redis(port: int, folder: Path) -> subprocess.Popen:
    """redis-server on loopback with an append-only file fsynced on every write (the audit store demands it)."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.ping():
                return proc
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=6.0, help="Inspections per second offered (all lines).")
    ap.add_argument("--before-s", type=float, default=30.0, help="Seconds of load before Redis stops.")
    ap.add_argument("--down-s", type=float, default=15.0, help="Seconds Redis stays down.")
    ap.add_argument("--after-s", type=float, default=45.0, help="Seconds of load after the restart.")
    ap.add_argument("--signal", choices=("TERM", "KILL"), default="TERM", help="How Redis is stopped.")
    drill_options(ap)
    args = ap.parse_args()

    work, data = workspace(args.workdir, "echo-redis-")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_proc = start_redis(port, work / "redis")
    env = {"ECHO_IAD__AUDIT__STORE": "redis", "ECHO_IAD__AUDIT__REDIS_URL": url,
           "ECHO_IAD__KNOWLEDGE__STORE": "redis", "ECHO_IAD__KNOWLEDGE__REDIS_URL": url}  # fmt: skip
    before = uptime()
    server = start_server(work, env=env)
    lines = max(1, math.ceil(args.rate / args.line_rate))
    runs: list[Run] = []
    try:
        onboard(server.address, data, line_names("line", lines))
        total = args.before_s + args.down_s + args.after_s

        def drive() -> None:
            runs.append(locust(server.address, work / "redis", users=lines, duration_s=total, data=data,
                               lines=lines, line_rate=args.rate / lines, types=args.types))  # fmt: skip

        load = threading.Thread(target=drive)
        started = time.time()
        load.start()
        time.sleep(args.before_s)
        down_at = time.time()
        redis_proc.send_signal(getattr(signal, f"SIG{args.signal}"))
        redis_proc.wait(30)
        say(f"redis stopped (SIG{args.signal}); down for {args.down_s:.0f} s")
        time.sleep(args.down_s)
        up_at = time.time()
        redis_proc = start_redis(port, work / "redis")
        say("redis started again")
        load.join()
    finally:
        server.stop()
        redis_proc.terminate()
        redis_proc.wait(30)
    run = runs[0]
    phases: dict[str, Counter[str]] = {"before": Counter(), "down": Counter(), "after": Counter()}
    for c in run.calls:
        phases["before" if c.t < down_at else "down" if c.t < up_at else "after"][c.status] += 1
    after = sorted((c.t, c.status) for c in run.calls if c.t >= up_at)
    first_ok = next((t for t, s in after if s == "OK"), None)
    last_failure = max((t for t, s in after if s != "OK"), default=up_at)
    ok = sum(1 for c in run.calls if c.status == "OK")
    result: dict[str, Any] = {
        "benchmark": "drill_redis",
        "mode": "embedded, audit and knowledge in Redis (appendfsync always)",
        "offered_rps": args.rate,
        "stop": f"SIG{args.signal}",
        "down_s": round(up_at - down_at, 1),
        "success_rate": round(ok / max(1, len(run.calls)), 4),
        "calls": len(run.calls),
        "statuses": {k: dict(v) for k, v in phases.items()},
        "first_answer_after_restart_s": round(first_ok - up_at, 2) if first_ok else None,
        "recovered_after_restart_s": round(last_failure - up_at, 2),
        "failed_calls_ms_p99": round(run.latency(99, status="UNAVAILABLE"), 1)
        if phases["down"].get("UNAVAILABLE")
        else None,
        "locust": run.locust,
        "load_started": time.strftime("%H:%M:%S", time.gmtime(started)),
        "uptime_before": before,
        "uptime_after": uptime(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
