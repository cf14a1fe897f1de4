"""Admission control: past capacity, an inspection is refused at once rather than queued into a timeout.

Little's law over the recent inspections gives the server's throughput (inspections in flight /
their latency); a new one would wait about (in flight + 1) / throughput. If that is more than its
share of the caller's deadline, it gets RESOURCE_EXHAUSTED now, and the caller (or its retry policy)
backs off, while the ones admitted still finish in time. The hard cap (gateway.max_concurrent)
stays as the last guard. Nothing here depends on the hardware: the estimate is measured, not configured.
"""

from __future__ import annotations

import time
from collections import deque

from services.common.errors import ResourceExhausted


class Admission:
    """Counts inspections in flight and admits one only when it can finish within its deadline."""

    def __init__(self, max_in_flight: int, deadline_share: float = 0.5, window: int = 64, min_samples: int = 8) -> None:
        self.max_in_flight = max_in_flight
        self.deadline_share = deadline_share
        self.min_samples = min_samples
        self.in_flight = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=window)  # (latency s, in flight while it ran)

    def expected_s(self) -> float | None:
        """How long a new inspection would take now; None until enough have finished to tell."""
        if len(self._recent) < self.min_samples:
            return None
        latency = sum(s for s, _ in self._recent) / len(self._recent)
        concurrency = sum(n for _, n in self._recent) / len(self._recent)
        return (self.in_flight + 1) * latency / max(1.0, concurrency)

    def admit(self, deadline_s: float) -> tuple[float, int]:
        """Take a slot or raise ResourceExhausted; returns the ticket `finished` takes back."""
        if self.in_flight >= self.max_in_flight:
            raise ResourceExhausted(
                f"gateway: {self.in_flight} inspections in flight, over the limit of {self.max_in_flight} "
                "(gateway.max_concurrent); retry with backoff"
            )
        expected = self.expected_s()
        if self.in_flight > 0 and expected is not None and expected > deadline_s * self.deadline_share:
            raise ResourceExhausted(
                f"gateway: over capacity: {self.in_flight} inspections in flight, a new one would take about "
                f"{expected * 1000:.0f} ms of its {deadline_s * 1000:.0f} ms deadline_ms; retry with backoff"
            )
        self.in_flight += 1
        return time.perf_counter(), self.in_flight

    def finished(self, ticket: tuple[float, int], *, answered: bool) -> None:
        """Give the slot back; an answered inspection's latency feeds the estimate (failures say little)."""
        started, at_start = ticket
        if answered:  # the mean of the counts at its start and end stands for the count while it ran
            self._recent.append((time.perf_counter() - started, (at_start + self.in_flight) / 2))
        self.in_flight -= 1
