"""Fixtures shared across parts: an embedded Echo-IAD server on a free loopback port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class EmbeddedServerThread:
    """The real embedded server (all five services, one port) on its own event loop in a thread.

    Tests talk to it over real sockets with the sync client, as a factory line would.
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="echo-embedded", daemon=True)
        self.embedded: Any = None

    def start(self) -> EmbeddedServerThread:
        from services.gateway.server import start_embedded

        self._thread.start()
        self.embedded = asyncio.run_coroutine_threadsafe(start_embedded(self.settings), self._loop).result(300)
        return self

    @property
    def address(self) -> str:
        return self.embedded.address

    def run(self, coro: Any, timeout: float = 120) -> Any:
        """Run a coroutine on the server's loop (e.g. to poke the Inspector core directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self.embedded is not None:
            self.run(self.embedded.stop(grace=1.0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def offline_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of offline test models for the whole session (the tiny Qwen2-VL is built once)."""
    return tmp_path_factory.mktemp("models")


def start_embedded_thread(settings: Any) -> Iterator[EmbeddedServerThread]:
    server = EmbeddedServerThread(settings).start()
    try:
        yield server
    finally:
        server.stop()
