"""Admission control: past capacity, an inspection is refused at once rather than queued into a timeout.

Little's law over the recent inspections gives the server's throughput (inspections in flight /
their latency); a new one would wait about (in flight + 1) / throughput. If that is more than its
share of the caller's deadline, it gets RESOURCE_EXHAUSTED now, and the caller (or its retry policy)
backs off, while the ones admitted still finish in time. The hard cap (gateway.max_concurrent)
stays as the last guard. Nothing here depends on the hardware: the estimate is measured, not configured.

Two things keep the estimate honest:
- it only remembers the last `horizon_s` seconds. An outage's slow inspections would otherwise hold the
  estimate high after the stage is back, and refusals would starve it of the fast answers that correct it;
- latency is kept per question type: a reasoning question takes seconds where a detection takes
  milliseconds, and one must not make the other look slow. The concurrency (how many shared the server)
  is pooled, since every type shares it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

from services.common.errors import ResourceExhausted


class _Sample(NamedTuple):
    at: float  # when it finished (perf_counter)
    latency_s: float
    in_flight: float  # how many ran while it did
    kind: str  # its question type ("" when the planner classified it)


class Admission:
    """Counts inspections in flight and admits one only when it can finish within its deadline."""

    def __init__(
        self,
        max_in_flight: int,
        deadline_share: float = 0.5,
        window: int = 256,
        min_samples: int = 8,
        horizon_s: float = 15.0,
        max_bytes: int = 0,
    ) -> None:
        """`max_bytes`: the memory budget, decoded image bytes in flight (gateway.max_inflight_bytes); 0: none."""
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.bytes_in_flight = 0
        self.deadline_share = deadline_share
        self.min_samples = min_samples
        self.horizon_s = horizon_s
        self.in_flight = 0
        self._recent: deque[_Sample] = deque(maxlen=window)

    def _fresh(self, now: float) -> list[_Sample]:
        while self._recent and now - self._recent[0].at > self.horizon_s:
            self._recent.popleft()
        return list(self._recent)

    def expected_s(self, kind: str = "", now: float | None = None) -> float | None:
        """How long a new inspection of this type would take now; None until enough recent ones tell."""
        recent = self._fresh(time.perf_counter() if now is None else now)
        if len(recent) < self.min_samples:
            return None
        own = [s for s in recent if s.kind == kind]
        basis = own if len(own) >= self.min_samples else recent
        latency = sum(s.latency_s for s in basis) / len(basis)
        concurrency = sum(s.in_flight for s in recent) / len(recent)
        return (self.in_flight + 1) * latency / max(1.0, concurrency)

    def admit(self, deadline_s: float, kind: str = "", charge: int = 0) -> tuple[float, int, str, int]:
        """Take a slot and `charge` bytes of the memory budget, or raise ResourceExhausted; returns the ticket
        `finished` takes back. A lone inspection is always admitted, so one within the image limits can run."""
        if self.max_bytes and self.bytes_in_flight and self.bytes_in_flight + charge > self.max_bytes:
            raise ResourceExhausted(
                f"gateway: memory budget: {self.bytes_in_flight} decoded image bytes in flight and this inspection's "
                f"{charge} would pass the limit of {self.max_bytes} (gateway.max_inflight_bytes); retry with backoff"
            )
        if self.in_flight >= self.max_in_flight:
            raise ResourceExhausted(
                f"gateway: {self.in_flight} inspections in flight, over the limit of {self.max_in_flight} "
                "(gateway.max_concurrent); retry with backoff"
            )
        expected = self.expected_s(kind)
        if self.in_flight > 0 and expected is not None and expected > deadline_s * self.deadline_share:
            raise ResourceExhausted(
                f"gateway: over capacity: {self.in_flight} inspections in flight, a new one would take about "
                f"{expected * 1000:.0f} ms of its {deadline_s * 1000:.0f} ms deadline_ms; retry with backoff"
            )
        self.in_flight += 1
        self.bytes_in_flight += charge
        return time.perf_counter(), self.in_flight, kind, charge

    def finished(self, ticket: tuple[float, int, str, int], *, answered: bool) -> None:
        """Give the slot and the bytes back; an answered inspection's latency feeds the estimate (failures say
        little)."""
        started, at_start, kind, charge = ticket
        self.bytes_in_flight -= charge
        now = time.perf_counter()
        if answered:  # the mean of the counts at its start and end stands for the count while it ran
            self._recent.append(_Sample(now, now - started, (at_start + self.in_flight) / 2, kind))
        self.in_flight -= 1
