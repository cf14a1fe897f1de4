"""The embedded server on its own event loop in a background thread.

For synchronous programs (a line controller, a notebook, the tests) that want
the whole inspector in-process yet reached over real gRPC sockets.

    with BackgroundServer(load_settings(server={"port": 0})) as srv:
        client = InspectorClient(srv.address)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from services.config import EchoSettings


class BackgroundServer:
    def __init__(self, settings: EchoSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="echo-embedded", daemon=True)
        self.embedded: Any = None

    def start(self, timeout_s: float = 600) -> BackgroundServer:
        from app.embedded import start_embedded

        self._thread.start()
        self.embedded = self.run(start_embedded(self.settings), timeout_s)
        return self

    @property
    def address(self) -> str:
        return self.embedded.address

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 120) -> Any:
        """Run a coroutine on the server's loop (e.g. to call the Inspector core directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self, grace_s: float = 1.0) -> None:
        if self.embedded is not None:
            self.run(self.embedded.stop(grace=grace_s))
            self.embedded = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> BackgroundServer:
        return self.start() if self.embedded is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
