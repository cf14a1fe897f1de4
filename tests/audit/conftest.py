"""The audit tests' Redis: a real redis-server with an append-only file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

from services.common.ports import free_port


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server that fsyncs its append-only file before every reply (as audit.fsync=always needs)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir, appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()
