"""SIGKILL during a memory ingest (a real `echo-iad serve`): no acknowledged write is lost, a re-run completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.client import InspectorClient
from services.common.images import encode_png
from services.common.ports import free_port
from services.mmad.render import render_normal

pytestmark = pytest.mark.slow
LINE, CATEGORY, DATASET = "line-k", "round_part", "Synthetic"


def _serve(data_dir: Path, port: int) -> tuple[subprocess.Popen, InspectorClient]:
    env = {
        **os.environ,
        "ECHO_IAD__DATA_DIR": str(data_dir),
        "ECHO_IAD__DECISION__BACKEND": "random",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = InspectorClient(f"127.0.0.1:{port}", retries=0, timeout_s=60)
    deadline = time.monotonic() + 240
    while True:
        try:
            if client.health(timeout_s=2) == "SERVING":
                return proc, client
        except grpc.RpcError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not become healthy")
        time.sleep(0.3)


def test_sigkill_during_ingest_loses_no_acknowledged_image_and_a_rerun_completes(tmp_path: Path) -> None:
    images = [encode_png(render_normal(CATEGORY, np.random.default_rng(i), size=128)) for i in range(40)]
    batches = [images[i : i + 4] for i in range(0, len(images), 4)]
    port = free_port()
    proc, client = _serve(tmp_path, port)
    acknowledged: list[str] = []
    failed: list[grpc.RpcError] = []

    def ingest() -> None:
        for batch in batches:
            try:
                acknowledged.extend(client.add_normal_images(LINE, CATEGORY, batch, dataset=DATASET).ids)
            except grpc.RpcError as e:
                failed.append(e)
                return

    writer = threading.Thread(target=ingest)
    writer.start()
    while len(acknowledged) < 8 and writer.is_alive():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-ingest: batches are still being sent
    writer.join(60)
    proc.wait(10)
    client.close()
    assert failed, "the ingest finished before the kill; nothing was tested"
    assert 8 <= len(acknowledged) < len(images)

    proc, client = _serve(tmp_path, port)  # same data_dir: the memory and image store as the kill left them
    try:
        listed = {i.id for i in client.list_normal_images(LINE, category=CATEGORY, dataset=DATASET, limit=1000).items}
        assert set(acknowledged) <= listed  # every acknowledged write survived
        added = existing = 0
        for batch in batches:  # the re-run
            r = client.add_normal_images(LINE, CATEGORY, batch, dataset=DATASET)
            added, existing = added + r.added, existing + r.existing
        assert added + existing == len(images) and existing >= len(acknowledged)
        after = client.list_normal_images(LINE, category=CATEGORY, dataset=DATASET, limit=1000)
        assert after.total == len(images)
        r = client.inspect(images[0], "Is there any defect in the object?", {"A": "Yes.", "B": "No."},
                           line_id=LINE, category=CATEGORY, dataset=DATASET)  # fmt: skip
        assert "reference" in r.trace.experts_used and not r.trace.degraded  # stored pixels are whole
    finally:
        client.close()
        proc.kill()
        proc.wait(10)
