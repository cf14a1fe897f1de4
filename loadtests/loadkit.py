"""The pieces the load tools share: a system under test, its data, Locust runs, and what the calls say.

A system under test is a real `echo-iad serve` process (embedded), or `echo-iad serve --ray CONFIG`
(Ray Serve on this machine; the tools hold /tmp/echo-ray.lock, as `flock` does, from before Ray starts
until it is gone, and no longer: one Ray cluster per machine). Load comes from Locust
(loadtests/locustfile.py) in its own process, headless, writing Locust's CSV and HTML reports and
one line per call (`--calls-log`), from which the tools read exact latencies per status and
throughput per second.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
LOADTESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from services.common.percentiles import percentile  # noqa: E402
from services.common.ports import free_port  # noqa: E402

RAY_PROXY = "127.0.0.1:9000"
RAY_LOCK = "/tmp/echo-ray.lock"


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: this checkout's `services`, `deploy` and `echo.v1` first."""
    path = os.pathsep.join([str(REPO), str(REPO / "protos"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, **extra}


def uptime() -> str:
    """`uptime`: the machine's load when a figure was measured (shared machines: report it with the figure)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def say(*parts: Any) -> None:
    """Progress on stderr (stdout carries the one JSON line)."""
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def drill_options(
    ap: argparse.ArgumentParser, *, ray: bool = False, line_rate: bool = True, types: str = "no-reasoning"
) -> None:
    """The options every drill shares, worded once: where it runs, what it asks, each line's pace, its folder."""
    if ray:
        ap.add_argument(
            "--ray", default="", metavar="CONFIG", help="Run on Ray Serve with this config (else embedded)."
        )
    ap.add_argument("--types", default=types, help="Question types (loadtests/locustfile.py --types).")
    if line_rate:
        ap.add_argument("--line-rate", type=float, default=1.0, help="Inspections per second of each line.")
    ap.add_argument("--workdir", default="", help="Data and server state (default: a temp dir).")


def workspace(workdir: str, prefix: str) -> tuple[Path, Path]:
    """A drill's folder (`--workdir`, else a new temp dir named PREFIX...) and the dataset in it."""
    work = Path(workdir or tempfile.mkdtemp(prefix=prefix))
    return work, dataset(work)


def dataset(workdir: Path, seed: int = 0) -> Path:
    """A small MMAD-format dataset (4 products, every question type), written once per workdir."""
    from services.mmad.synth import synthesize

    root = workdir / "dataset"
    if not (root / "mmad.json").exists():
        synthesize(root, seed=seed, per_category=8, templates_per_category=6, progress=False)
    return root


# ------------------------------------------------------------------ systems under test
@dataclass
class Server:
    """A running `echo-iad serve` (embedded) or `echo-iad serve --ray` process and how to reach it."""

    proc: subprocess.Popen
    address: str
    ray: bool
    log: Path
    lock: Any = None  # the open /tmp/echo-ray.lock while this server's Ray runs

    def pids(self) -> list[int]:
        """The processes that serve: the embedded server, or every Serve replica and proxy on Ray."""
        if not self.ray:
            return [self.proc.pid]
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd.startswith(("ray::ServeReplica", "ray::ProxyActor")):
                found.append(p.pid)
        return found

    def replica_pids(self, app: str) -> list[int]:
        """The live Serve replica processes of one application (`ray::ServeReplica:APP:DEPLOYMENT`)."""
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd.startswith(f"ray::ServeReplica:{app}:"):
                found.append(p.pid)
        return found

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(pid).memory_info().rss
        return total / 2**20

    def client(self, **kw: Any) -> Any:
        from services.client import InspectorClient

        return InspectorClient(self.address, application="inspector" if self.ray else "", **kw)

    def wait_serving(self, timeout_s: float = 600) -> None:
        import grpc

        deadline = time.monotonic() + timeout_s
        with self.client(retries=0, timeout_s=10) as client:
            while True:
                try:
                    if client.health(timeout_s=5) == "SERVING":
                        return
                except grpc.RpcError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the server did not become healthy; its log: {self.log}\n{self.tail()}")
                time.sleep(1)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout_s: float = 120) -> None:
        """Ctrl-C (serve --ray then removes its applications and stops the Ray it started), then wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.lock is not None:
            if self.ray:
                _wait_ray_gone()
            self.lock.close()  # releases the flock
            self.lock = None


def _wait_ray_gone(timeout_s: float = 60) -> None:
    """Ray's own processes end a little after `ray.shutdown()`; the lock is released once they have."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [
            p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(("raylet", "gcs_server"))
        ]
        if not alive:
            return
        time.sleep(1)
    say("Ray processes still running after", timeout_s, "s")


def ray_lock() -> Any:
    """Block until this machine's Ray lock is ours (as `flock /tmp/echo-ray.lock` does); close the file to release."""
    f = open(RAY_LOCK, "a")  # noqa: SIM115 (held across calls; Server.stop closes it)
    say(f"waiting for {RAY_LOCK} ...")
    fcntl.flock(f, fcntl.LOCK_EX)
    say(f"holding {RAY_LOCK}")
    return f


def ray_config(workdir: Path, base: str = "deploy/local-cpu.yaml", **deployments: dict[str, Any]) -> str:
    """A copy of a Serve config with some deployments' settings replaced (by application name), as JSON (YAML)."""
    import yaml

    config = yaml.safe_load((REPO / base).read_text())
    for app in config["applications"]:
        if app["name"] in deployments:
            app["deployments"][0].update(deployments[app["name"]])
            for key, value in deployments[app["name"]].items():
                if value is None:
                    app["deployments"][0].pop(key)
    path = workdir / "serve-config.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return str(path)


def start_server(workdir: Path, *, ray_config: str = "", env: dict[str, str] | None = None) -> Server:
    """`echo-iad serve` with its data under workdir (embedded), or `echo-iad serve --ray CONFIG` run from workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / ("serve-ray.log" if ray_config else "serve.log")
    base = {"ECHO_IAD__DATA_DIR": str(workdir / "echo-data")}
    lock = None
    if ray_config:
        cmd = [sys.executable, "-m", "app.cli", "serve", "--ray", str((REPO / ray_config).resolve()), "--insecure"]
        address = RAY_PROXY
        lock = ray_lock()
    else:
        port = free_port()
        cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        address = f"127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=checkout_env(**base, **(env or {})),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C reaches it only when we send it
        )
    server = Server(proc, address, bool(ray_config), log, lock)
    server.wait_serving()
    return server


def onboard(address: str, data: Path, lines: Iterable[str], *, ray: bool = False) -> None:
    """Every line gets the dataset's normal images, through the Inspector as a plant engineer adds them."""
    from services.client import InspectorClient
    from services.mmad.loader import load_dataset

    ds = load_dataset(data)
    by_product: dict[tuple[str, str], list[Path]] = {}
    for d, c, t in ds.templates():
        by_product.setdefault((d, c), []).append(ds.abspath(t))
    with InspectorClient(address, retries=3, timeout_s=600, application="inspector" if ray else "") as client:
        for line in lines:
            for (dset, category), paths in by_product.items():
                client.add_normal_images(line, category, paths, dataset=dset)


def line_names(prefix: str, n: int) -> list[str]:
    """The ids loadtests/grpc_locust.py gives --line PREFIX --lines N."""
    return [prefix] if n <= 1 else [f"{prefix}-{i}" for i in range(n)]


class RssSampler:
    """The server's RSS every `every_s` seconds, on a thread, as (seconds since start, MB)."""

    def __init__(self, server: Server, every_s: float = 10.0) -> None:
        self.server = server
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, self.server.rss_mb()))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._t0, self.server.rss_mb()))


# ------------------------------------------------------------------ Locust runs
@dataclass
class Call:
    t: float  # unix time the answer came
    name: str
    status: str
    ms: float


@dataclass
class Run:
    """What one Locust run's calls say. `start`/`end`: the window measured (unix time)."""

    calls: list[Call]
    start: float
    end: float
    locust: dict[str, Any] = field(default_factory=dict)  # Locust's own aggregated row
    report: str = ""

    def window(self, skip_s: float = 0.0) -> list[Call]:
        return [c for c in self.calls if self.start + skip_s <= c.t <= self.end]

    def statuses(self, skip_s: float = 0.0) -> dict[str, int]:
        return dict(Counter(c.status for c in self.window(skip_s)))

    def errors(self, skip_s: float = 0.0) -> int:
        return sum(1 for c in self.window(skip_s) if c.status != "OK")

    def latency(self, q: float, status: str = "OK", skip_s: float = 0.0) -> float:
        return percentile([c.ms for c in self.window(skip_s) if c.status == status], q)

    def rate(self, status: str | None = "OK", skip_s: float = 0.0, max_ms: float | None = None) -> float:
        """Answers per second with this status (None: any), optionally only those within max_ms."""
        calls = [c for c in self.window(skip_s) if (status is None or c.status == status)]
        if max_ms is not None:
            calls = [c for c in calls if c.ms <= max_ms]
        return len(calls) / max(1e-9, self.end - self.start - skip_s)

    def timeline(self, bucket_s: float = 1.0) -> list[dict[str, Any]]:
        """Per bucket: seconds since start, OK and failed answers."""
        rows: dict[int, Counter] = {}
        for c in self.calls:
            rows.setdefault(int((c.t - self.start) // bucket_s), Counter())[c.status] += 1
        return [{"t": k * bucket_s, **rows[k]} for k in sorted(rows)]

    def summary(self, skip_s: float = 0.0) -> dict[str, Any]:
        return {
            "ok_per_s": round(self.rate("OK", skip_s), 2),
            "p50_ms": round(self.latency(50, skip_s=skip_s), 1),
            "p99_ms": round(self.latency(99, skip_s=skip_s), 1),
            "errors": self.errors(skip_s),
            "statuses": self.statuses(skip_s),
        }


def read_calls(path: Path) -> list[Call]:
    calls = []
    if path.exists():
        with open(path) as f:
            for row in csv.reader(f):
                if len(row) == 4:
                    calls.append(Call(float(row[0]), row[1], row[2], float(row[3])))
    return calls


def locust(
    host: str,
    out: Path,
    *,
    users: int,
    duration_s: float,
    data: Path,
    line: str = "line",
    lines: int = 1,
    line_rate: float = 0.0,
    types: str = "no-reasoning",
    stages: str = "",
    ray: bool = False,
    deadline_ms: float = 10_000,
    locustfile: str = "locustfile.py",
    user_classes: Iterable[str] = (),
    html: bool = True,
    timeout_s: float | None = None,
) -> Run:
    """One headless Locust run in its own process: Locust's CSV (and HTML) under `out`, the calls parsed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    calls_log = out.with_name(out.name + "_calls.csv")
    calls_log.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOADTESTS / locustfile), *user_classes,
        "--headless", "-u", str(users), "-r", str(max(1, users)), "-t", f"{int(duration_s)}s",
        "--host", host, "--data", str(data), "--line", line, "--lines", str(lines),
        "--line-rate", str(line_rate), "--types", types, "--deadline-ms", str(deadline_ms),
        "--csv", str(out), "--calls-log", str(calls_log), "--only-summary", "--loglevel", "WARNING",
        "--stop-timeout", "30",
    ]  # fmt: skip
    if stages:
        cmd += ["--stages", stages]
    if ray:
        cmd.append("--ray")
    if html:
        cmd += ["--html", str(out.with_name(out.name + "_report.html"))]
    start = time.time()
    proc = subprocess.run(
        cmd, env=checkout_env(), capture_output=True, text=True, timeout=timeout_s or duration_s + 300
    )
    end = time.time()
    if proc.returncode not in (0, 1):  # 1: some requests failed, which the caller judges
        raise RuntimeError(f"locust exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    calls = read_calls(calls_log)
    first = min((c.t - c.ms / 1000 for c in calls), default=start)
    run = Run(calls, first, min(end, max((c.t for c in calls), default=end)))
    stats = out.with_name(out.name + "_stats.csv")
    if stats.exists():
        with open(stats) as f:
            rows = {r["Name"]: r for r in csv.DictReader(f)}
        agg = rows.get("Aggregated", {})
        run.locust = {
            "requests": int(agg.get("Request Count", 0)),
            "failures": int(agg.get("Failure Count", 0)),
            "rps": round(float(agg.get("Requests/s", 0) or 0), 2),
            "p50_ms": _num(agg.get("50%")),
            "p99_ms": _num(agg.get("99%")),
        }
    run.report = str(out.with_name(out.name + "_report.html")) if html else ""
    return run


def _num(x: str | None) -> float | None:
    try:
        return float(x) if x not in (None, "", "N/A") else None
    except ValueError:
        return None
