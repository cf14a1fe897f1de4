"""Readiness that tells the truth: each stage's tiny real request, run again and again, in every mode.

One `StageHealth` per hosted stage answers "can this stage serve right now?"
by running the stage's own `check_health()` (a real request through its model,
index or store) under a timeout. The embedded and standalone servers re-run it
every `server.health_interval_s` and publish the answer through the standard
grpc.health.v1 service (`HealthMonitor`); a Ray Serve replica runs the very
same check from Serve's periodic `check_health` and from the Health/Check RPC
(deploy/deployments.py). A stage that breaks goes NOT_SERVING at the next
check and SERVING again once a check passes; each change is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

_SERVED_AT: dict[str, float] = {}  # gRPC service -> when this process last answered one of its RPCs OK
_WORKED_AT: dict[str, float] = {}  # stage label -> when its model last finished a batch
_WORKING: dict[str, list[float]] = {}  # stage label -> when each batch now running started


def served(service: str) -> None:
    """A real RPC of `service` was answered OK: the stage makes progress (rpc_metrics calls this in every mode)."""
    _SERVED_AT[service] = time.monotonic()


def worked(stage: str) -> None:
    """The stage's model finished a batch (services/common/pipeline.py): progress even when every caller of that
    batch had already left (a burst past its deadlines answers no RPC OK, yet the stage is busy, not stuck)."""
    _WORKED_AT[stage] = time.monotonic()


@contextlib.contextmanager
def working(stage: str) -> Iterator[None]:
    """Around one batch of the stage's real work (the batchers and the pipeline's model thread): while it runs
    the stage is busy, and when it ends (answered or failed) the stage has made progress."""
    started = time.monotonic()
    running = _WORKING.setdefault(stage, [])
    running.append(started)
    try:
        yield
    finally:
        running.remove(started)
        worked(stage)


def _busy(service: str, started: float, stuck_after_s: float) -> bool:
    """Whether a stage whose probe timed out is busy rather than stuck: it answered an RPC or finished a batch
    since the probe started, or a batch is running that started less than stuck_after_s ago."""
    stage = service.rsplit(".", 1)[-1].lower()  # echo.v1.Evidence -> evidence, as telemetry.stage_label
    if max(_SERVED_AT.get(service, 0.0), _WORKED_AT.get(stage, 0.0)) >= started:
        return True
    running = _WORKING.get(stage)
    return bool(running) and time.monotonic() - min(running) < stuck_after_s


class StageHealth:
    """The readiness of one stage: the last result of its real check, and when it ran.

    Args:
        name: the stage's gRPC service name (what Health/Check is asked about).
        probe: the stage's tiny real request; raising means it cannot serve.
        timeout_s: a probe that takes longer counts as failed (a stalled store is not a healthy one), unless
            the stage answered real RPCs OK or its model finished batches meanwhile, or runs a batch younger than
            stuck_after_s: then it is busy (the probe queued behind model work on a loaded replica), not stalled.
        stuck_after_s: a batch running longer than this, with nothing finished meanwhile, counts as stuck.
    """

    def __init__(
        self, name: str, probe: Callable[[], Awaitable[None]], timeout_s: float = 10.0, stuck_after_s: float = 60.0
    ) -> None:
        self.name = name
        self.probe = probe
        self.timeout_s = timeout_s
        self.stuck_after_s = stuck_after_s
        self.error: str | None = "not checked yet"
        self.checked_at = 0.0  # monotonic; 0: never
        self._lock = asyncio.Lock()  # concurrent callers share one real request
        self._refresh: asyncio.Future[str | None] | None = None  # a probe finishing in the background

    @property
    def serving(self) -> bool:
        return self.error is None

    async def check(self, max_age_s: float = 0.0, *, answer_within_s: float | None = None) -> str | None:
        """Run the probe (unless a result younger than max_age_s exists); None when serving, else why not.

        With `answer_within_s`, a probe still running after that long answers the last result and finishes in
        the background: on a busy stage the tiny request queues behind model work, and a caller asking health
        must hear "busy" (the last verdict) at once, not time out as if the stage were gone. A probe that fails
        fast still answers at once; with no result yet, the caller waits for the first.
        """
        if answer_within_s is None or not self.checked_at:
            return await self._check(max_age_s)
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._check(max_age_s))
        try:
            return await asyncio.wait_for(asyncio.shield(self._refresh), answer_within_s)
        except TimeoutError:
            return self.error

    async def _check(self, max_age_s: float) -> str | None:
        async with self._lock:
            if self.checked_at and time.monotonic() - self.checked_at <= max_age_s:
                return self.error
            started = time.monotonic()
            try:
                await asyncio.wait_for(self.probe(), self.timeout_s)
                error = None
            except TimeoutError:
                busy = _busy(self.name, started, self.stuck_after_s)  # the probe queued behind real work
                error = None if busy else f"health check took over {self.timeout_s:g}s"
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
            self._record(error)
            return error

    def _record(self, error: str | None) -> None:
        was_checked, before = bool(self.checked_at), self.error
        self.error, self.checked_at = error, time.monotonic()
        if error is not None and (before is None or not was_checked):
            log.warning("%s NOT_SERVING: %s", self.name, error)
        elif error is None and before is not None and was_checked:
            log.info("%s SERVING again", self.name)


class HealthMonitor:
    """Re-checks every hosted stage periodically and publishes each answer through grpc.health.v1.

    The whole server ("") is SERVING only while every stage is. Stages are
    checked in order, so a gateway listed last sees its stages' fresh statuses.
    """

    def __init__(self, stages: Iterable[StageHealth], servicer: health.aio.HealthServicer) -> None:
        self.stages = list(stages)
        self.servicer = servicer

    async def check_all(self) -> bool:
        all_ok = True
        for st in self.stages:
            ok = await st.check() is None
            all_ok &= ok
            await self.servicer.set(st.name, SERVING if ok else NOT_SERVING)
        await self.servicer.set("", SERVING if all_ok else NOT_SERVING)
        return all_ok

    async def run(self, interval_s: float, wait_for_termination: Callable[[float], Awaitable[bool]]) -> None:
        """Check every interval_s for as long as the server runs.

        `wait_for_termination(timeout)` is grpc.aio.Server's: True when it timed out (the server still runs).
        """
        while await wait_for_termination(interval_s):
            try:
                await self.check_all()
            except Exception:  # the monitor must outlive any one failure
                log.exception("health monitor round failed")
