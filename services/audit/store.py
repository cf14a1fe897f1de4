"""The audit log's interface, the query it answers, and the store chosen by settings.

Two stores behind one interface: append-only segment files under data_dir (embedded
mode, the default; services/audit/files.py) and Redis streams that every gateway
replica shares (cluster mode; services/audit/redis_store.py). Both acknowledge an
append only once the record is durable per `audit.fsync`, and both answer the same
queries, always within one line. Operator confirmations of reviews are records of their own beside the
inspections (every one kept, the latest of an inspection standing); they are few, so they are not subject to
the inspections' retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from echo.v1 import inspector_pb2

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
EMPTY: Mapping[str, bytes] = MappingProxyType({})


@dataclass
class AuditQuery:
    """Which records of one line to list. Empty / zero fields do not filter."""

    line_id: str
    dataset: str = ""
    category: str = ""
    verdict: int = 0
    since_ms: int = 0  # at or after
    until_ms: int = 0  # before; 0: no bound
    limit: int = DEFAULT_LIMIT
    cursor: str = ""  # a next_page_token from a previous page
    oldest_first: bool = False
    review_only: bool = False  # only records flagged for a person (trace.review "pending")

    def matches(self, r: inspector_pb2.InspectionRecord) -> bool:
        return (
            (not self.dataset or r.dataset == self.dataset)
            and (not self.category or r.category == self.category)
            and (not self.verdict or r.verdict == self.verdict)
            and (not self.review_only or bool(r.trace.review))
        )


class AuditLog(Protocol):
    """Where records live. `append` returns only once the record is durable per the configured policy."""

    description: str

    async def append(self, record: inspector_pb2.InspectionRecord, images: Mapping[str, bytes] = EMPTY) -> None:
        """Keep the images (sha256 -> bytes: the query, heat maps) and then the record that points at them."""
        ...

    async def query(self, q: AuditQuery) -> tuple[list[inspector_pb2.InspectionRecord], str]:
        """A page of records and the cursor of the next page ('' at the end)."""
        ...

    async def get(self, line_id: str, request_id: str) -> inspector_pb2.InspectionRecord | None:
        """The latest record of this request id on this line."""
        ...

    async def has_image(self, line_id: str, sha256: str) -> bool:
        """Does a record of this line point at this image (query, reference, heat map)?"""
        ...

    async def append_confirmation(self, confirmation: inspector_pb2.ReviewConfirmation) -> None:
        """Keep an operator's confirmation as its own record; returns once durable per the configured policy."""
        ...

    async def confirmations(self, line_id: str, inspection_id: str = "") -> list[inspector_pb2.ReviewConfirmation]:
        """Every confirmation of this line (of one inspection when given), oldest first."""
        ...

    async def close(self) -> None: ...
