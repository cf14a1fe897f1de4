"""Fixtures of the knowledge tests: a copy of the fixture knowledge base, MiniLM (once), a real redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from services.common.ports import free_port
from services.knowledge.embedder import TextEmbedder, TokenCounter, get_embedder
from services.knowledge.relevance import Extractor

FIXTURES = Path(__file__).parent / "fixtures"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    """A writable copy of tests/knowledge/fixtures/kb (MVTec/bottle, Synthetic/round_part, Synthetic/woven_fabric)."""
    root = tmp_path / "kb"
    shutil.copytree(FIXTURES / "kb", root)
    return root


@pytest.fixture(scope="session")
def embedder() -> TextEmbedder:
    return get_embedder()


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture(scope="session")
def extractor(embedder: TextEmbedder, counter: TokenCounter) -> Extractor:
    return Extractor(embedder, counter)


@dataclass
class RedisServer:
    """A redis-server process of our own; `stop()`/`start()` simulate an outage on the same port."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server (Debian's) on a free port, in a temp dir, without persistence; killed at the end."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unused_redis_url() -> str:
    """An address where no Redis listens (connection refused)."""
    return f"redis://127.0.0.1:{free_port()}/0"


os.environ.setdefault("HF_HUB_OFFLINE", "1")
