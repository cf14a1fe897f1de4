"""A real redis-server (Debian's) of a test's own, on a free port; importable from every test folder."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """A redis-server process; `stop()` (SIGKILL) then `start()` on the same port and folder simulate a crash.

    Without `appendfsync` nothing persists (the knowledge tests); with it, Redis keeps an append-only file in
    `workdir` with that fsync policy ("always": fsync before every reply), as the audit log's cluster store needs.
    """

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None
    appendfsync: str = ""
    host: str = "127.0.0.1"  # the address it binds (a bridge address makes it reachable from network namespaces)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", self.appendfsync] if self.appendfsync else []
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                # Redis refuses clients from other interfaces without a password; a test's bridge is private.
                "--protected-mode",
                "yes" if self.host.startswith("127.") else "no",
                "--save",
                "",
                "--appendonly",
                "no",
                *persistence,
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on {self.host}:{self.port}") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)
