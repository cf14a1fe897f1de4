"""Settings of the audit trail: where every answered inspection is kept, how durably, for how long."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.section import Section


class AuditSettings(Section):
    enabled: bool = Field(True, description="Keep one audit record per answered Inspect.")
    store: Literal["files", "redis"] = Field(
        "files",
        description=(
            "files: append-only segment files under `dir` (embedded mode; one process owns the folder). "
            "redis: a Redis stream per line that every gateway replica writes to (cluster mode)."
        ),
    )
    dir: str = Field("", description="files store: the log folder; empty: <data_dir>/audit.")
    image_store: str = Field(
        "",
        description=(
            "Where query images and heat maps are kept (a folder or any fsspec URL, content-addressed); empty: "
            "<data_dir>/audit-images. In cluster mode every gateway replica must see the same store."
        ),
    )
    fsync: Literal["always", "interval"] = Field(
        "always",
        description=(
            "always: an answer is acknowledged only once its record is on disk (files: fsync, batched across "
            "concurrent requests; redis: the server must run appendonly yes + appendfsync always). interval: "
            "acknowledged once written (a killed process loses nothing; a power cut loses up to "
            "fsync_interval_s; redis: appendonly yes)."
        ),
    )
    fsync_interval_s: float = Field(1.0, gt=0, description="fsync=interval: seconds between fsyncs (files store).")
    required: bool = Field(
        True,
        description=(
            "true: an inspection whose record cannot be written fails (UNAVAILABLE), so no answer goes "
            "unrecorded. false: the answer is given and trace.degraded says the record is missing."
        ),
    )
    segment_mb: float = Field(64.0, gt=0, description="files store: start a new segment file past this size.")
    retention_days: float = Field(
        365.0, ge=0, description="Drop records older than this (whole segments / stream entries); 0 keeps all."
    )
    retention_mb: float = Field(
        10_240.0, ge=0, description="files store: drop the oldest segments while the log is above this; 0: no cap."
    )
    retention_records: int = Field(
        1_000_000, ge=0, description="redis store: keep about this many records per line; 0: no cap."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis store: the server every replica shares.")
    redis_prefix: str = Field("echo:audit", description="redis store: key prefix.")
