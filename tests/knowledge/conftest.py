"""Fixtures of the knowledge tests: a copy of the fixture knowledge base, MiniLM (once), a real redis-server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

from services.common.ports import free_port
from services.knowledge.embedder import TextEmbedder, TokenCounter, get_embedder
from services.knowledge.relevance import Extractor

FIXTURES = Path(__file__).parent / "fixtures"


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
