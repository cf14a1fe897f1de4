"""A real multi-node Ray cluster on one machine: each node in its own network namespace with its own address.

Every node is `ray start` run under `ip netns exec` in a namespace of its own,
joined to a bridge in the root namespace by a veth pair (one address per node).
Loopback inside a namespace is that namespace's own, so each node's Serve gRPC
proxy binds the same port (9000) without clashing, and a gateway replica's
`127.0.0.1:9000` is its own node's proxy, as on separate machines. The test
process stays in the root namespace and reaches every node over the bridge;
Redis listens on the bridge address. Needs root and iproute2 (`ip netns`).

Processes are ended by id: those in a namespace (`ip netns pids`) are all ours,
since the namespace is. Nothing here runs `ray stop`, which would end every Ray
process on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
GCS_PORT = 6379
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # the smallest Ray allows is 75 MiB; nothing large travels by object
DRIVER = Path(__file__).with_name("netns_driver.py")
RAY = str(Path(sys.executable).with_name("ray"))


class HarnessError(RuntimeError):
    """The harness could not build or drive the cluster (the message says which step)."""


@dataclass(frozen=True)
class NodeSpec:
    """One Ray node: its name in the test, logical CPUs and custom resources."""

    name: str
    num_cpus: int
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class Node:
    spec: NodeSpec
    netns: str
    ip: str
    veth: str

    @property
    def name(self) -> str:
        return self.spec.name

    def cmd(self, *args: str) -> list[str]:
        """A command line that runs inside this node's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]

    def processes(self) -> list[str]:
        """The command lines of the processes in this namespace (short), for reports."""
        out = []
        for pid in self.pids():
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()[:100])
            except OSError:
                continue
        return out

    def raylet_pid(self) -> int | None:
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        return None


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _free_subnet() -> str:
    """A 10.x.y.0/24 prefix no interface on this machine uses."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    rng = random.Random()
    for _ in range(200):
        prefix = f"10.{rng.randrange(64, 250)}.{rng.randrange(0, 250)}"
        if f" {prefix}." not in used:
            return prefix
    raise HarnessError("no free 10.x.y.0/24 subnet for the bridge")


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.5) -> T:
    """Poll until check() returns something other than None/False; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not after {timeout_s:.0f}s (last: {last!r})")


class Driver:
    """The Ray driver in the head's namespace (netns_driver.py), called one JSON command at a time."""

    def __init__(self, node: Node, env: dict[str, str], log_path: Path) -> None:
        self._log = open(log_path, "a")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            node.cmd(sys.executable, str(DRIVER), f"{node.ip}:{GCS_PORT}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next(timeout_s=120)  # connected

    def _read(self) -> None:
        from netns_driver import ANSWER

        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(ANSWER):
                self._answers.put(json.loads(line[len(ANSWER) :]))
        self._answers.put({"ok": False, "error": f"the driver exited ({self.proc.wait()})"})

    def _next(self, timeout_s: float) -> Any:
        try:
            answer = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"the Ray driver gave no answer in {timeout_s:.0f}s") from None
        if not answer["ok"]:
            raise HarnessError(answer["error"])
        return answer["result"]

    def call(self, op: str, timeout_s: float = 120, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._next(timeout_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


class NetnsCluster:
    """Build, drive and tear down the namespaces, the bridge and the Ray nodes. Use as a context manager."""

    def __init__(self, specs: list[NodeSpec], workdir: Path, env: dict[str, str] | None = None) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise HarnessError("the multi-node harness needs root and iproute2 (`ip netns`)")
        tag = f"{os.getpid() % 100000:05d}{random.randrange(10)}"
        prefix = _free_subnet()
        self.bridge = f"ebr{tag}"
        self.bridge_ip = f"{prefix}.1"
        self.nodes = {
            s.name: Node(s, f"echo-{tag}-{s.name}", f"{prefix}.{10 + i}", f"ev{tag}{i}") for i, s in enumerate(specs)
        }
        self.head = next(iter(self.nodes.values()))
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Ray's unix sockets live under the temp dir: keep its path short (108-byte socket path limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="echo-ray-", dir="/tmp"))
        # Token auth, as a real cluster runs it (Ray's default for a new head), with a token of this cluster's own:
        # every node and the driver get it from the environment, nothing is read from or written to ~/.ray.
        token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **token, **(env or {})}
        self._driver: Driver | None = None

    # ------------------------------------------------------------------ network
    def create_network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node in self.nodes.values():
            _ip("netns", "add", node.netns)
            _ip("link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
            _ip("link", "set", node.veth, "master", self.bridge, "up")
            _ip("-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            _ip("-n", node.netns, "link", "set", "eth0", "up")
            _ip("-n", node.netns, "link", "set", "lo", "up")

    # ------------------------------------------------------------------ Ray nodes
    def _ray_start_args(self, node: Node) -> list[str]:
        args = [
            RAY,
            "start",
            "--node-ip-address",
            node.ip,
            "--num-cpus",
            str(node.spec.num_cpus),
            "--resources",
            json.dumps(node.spec.resources),
            "--object-store-memory",
            str(OBJECT_STORE_BYTES),
            "--temp-dir",  # one per node, as on separate machines: Ray's unix sockets and logs must not collide
            str(self.temp_dir / node.name),
            "--disable-usage-stats",
        ]
        if node is self.head:
            # The dashboard serves Serve's REST API, which `serve deploy` (deploy.launch.deploy) hands configs to.
            return [*args, "--head", "--port", str(GCS_PORT), "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
        return [*args, "--address", f"{self.head.ip}:{GCS_PORT}"]

    def start_nodes(self, *names: str) -> None:
        """`ray start` on these nodes at once (the head must be up before any worker); wait until each returns."""
        procs = {}
        for name in names:
            node = self.nodes[name]
            log = open(self.workdir / f"ray-start-{name}.log", "a")  # noqa: SIM115 (closed below)
            procs[name] = (
                subprocess.Popen(node.cmd(*self._ray_start_args(node)), env=self.env, stdout=log, stderr=log),
                log,
            )
        for name, (proc, log) in procs.items():
            code = proc.wait(timeout=180)
            log.close()
            if code != 0:
                tail = (self.workdir / f"ray-start-{name}.log").read_text()[-2000:]
                raise HarnessError(f"ray start on node {name} exited {code}:\n{tail}")

    def alive_ips(self) -> set[str]:
        return {n["ip"] for n in self.driver.call("nodes")}

    def wait_alive(self, *names: str, timeout_s: float = 120) -> None:
        want = {self.nodes[n].ip for n in names}
        wait_for(lambda: want <= self.alive_ips(), timeout_s, f"nodes {names} alive in Ray")

    def kill_raylet(self, name: str) -> float:
        """SIGKILL the node's raylet (the node dies as a machine would); returns when, on the wall clock."""
        pid = self.nodes[name].raylet_pid()
        if pid is None:
            raise HarnessError(f"node {name} has no raylet")
        os.kill(pid, signal.SIGKILL)
        return time.time()

    def kill_node(self, name: str, timeout_s: float = 30) -> None:
        """End every process left in the node's namespace (all started by this harness), by id."""
        node = self.nodes[name]
        deadline = time.monotonic() + timeout_s
        while pids := node.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise HarnessError(f"processes {pids} in node {name} do not exit")
            time.sleep(0.1)

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            self._driver = Driver(self.head, self.env, self.workdir / "driver.log")
        return self._driver

    def proxy(self, name: str, port: int) -> str:
        return f"{self.nodes[name].ip}:{port}"

    def node_name(self, ip: str) -> str:
        return next((n.name for n in self.nodes.values() if n.ip == ip), ip or "?")

    def placement(self) -> dict[str, dict[str, list[str]]]:
        """{app: {state: [node name per replica]}} from Serve's controller."""
        out: dict[str, dict[str, list[str]]] = {}
        for app, deployments in self.driver.call("replicas").items():
            for replicas in deployments.values():
                for r in replicas:
                    out.setdefault(app, {}).setdefault(r["state"], []).append(self.node_name(r["node_ip"]))
        return out

    # ------------------------------------------------------------------ teardown
    def down(self) -> None:
        """End every process, delete the namespaces, the bridge and Ray's temp dir; keeps going past errors."""
        errors: list[str] = []
        if self._driver is not None:
            self._driver.close()
        for node in self.nodes.values():
            try:
                self.kill_node(node.name)
            except HarnessError as e:
                errors.append(str(e))
            for args in (("netns", "del", node.netns), ("link", "del", node.veth)):
                try:
                    _ip(*args)
                except HarnessError as e:
                    if "Cannot find" not in str(e) and "No such" not in str(e) and "not exist" not in str(e):
                        errors.append(str(e))
        try:
            _ip("link", "del", self.bridge)
        except HarnessError as e:
            if "Cannot find" not in str(e):
                errors.append(str(e))
        for logs in self.temp_dir.glob("*/session_*/logs"):  # kept beside the test's other files, for post-mortems
            shutil.copytree(logs, self.workdir / "ray-logs" / logs.parts[-3], dirs_exist_ok=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if errors:
            raise HarnessError("; ".join(errors))

    def __enter__(self) -> NetnsCluster:
        try:
            self.create_network()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
