"""SIGKILL during an ingest (a real `echo-iad serve`): no acknowledged write is lost, from the memory or the
evidence bank, and a re-run completes both."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from serve_process import start_serve

from services.client import InspectorClient
from services.common.images import encode_png
from services.mmad.render import render_normal

pytestmark = pytest.mark.slow
LINE, CATEGORY, DATASET = "line-k", "round_part", "Synthetic"


def _serve(data_dir: Path, model_cache: Path) -> tuple[subprocess.Popen, InspectorClient]:
    # a small evidence input and no pose test: the banks are fed by the same ingest and need not be sharp here (with
    # augment auto, each rebuild of this 40-image ingest in batches of 4 tests 8 poses and the re-run's evidence call
    # passed its deadline: a cost the round-3 stop-4 note names)
    return start_serve(
        data_dir,
        model_cache,
        ECHO_IAD__DECISION__BACKEND="random",
        ECHO_IAD__EVIDENCE__INPUT_SIZE="96",
        ECHO_IAD__EVIDENCE__AUGMENT="none",
    )


def test_sigkill_during_ingest_loses_no_acknowledged_image_and_a_rerun_completes(
    tmp_path: Path, offline_model_cache: Path
) -> None:
    images = [encode_png(render_normal(CATEGORY, np.random.default_rng(i), size=128)) for i in range(40)]
    batches = [images[i : i + 4] for i in range(0, len(images), 4)]
    proc, client = _serve(tmp_path, offline_model_cache)
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

    proc, client = _serve(
        tmp_path, offline_model_cache
    )  # same data_dir: the memory and image store as the kill left them
    try:
        listed = {i.id for i in client.list_normal_images(LINE, category=CATEGORY, dataset=DATASET, limit=1000).items}
        assert set(acknowledged) <= listed  # every acknowledged write survived
        added = existing = 0
        for batch in batches:  # the re-run
            r = client.add_normal_images(LINE, CATEGORY, batch, dataset=DATASET)
            added, existing = added + r.added, existing + r.existing
        assert added + existing == len(images) and existing >= len(acknowledged)
        assert r.evidence_bank_images == len(images)  # the evidence bank, fed by the same path, is whole too
        after = client.list_normal_images(LINE, category=CATEGORY, dataset=DATASET, limit=1000)
        assert after.total == len(images)
        r = client.inspect(images[0], "Is there any defect in the object?", {"A": "Yes.", "B": "No."},
                           line_id=LINE, category=CATEGORY, dataset=DATASET)  # fmt: skip
        assert {"reference", "evidence"} <= set(r.trace.experts_used) and not r.trace.degraded  # stored pixels whole
    finally:
        client.close()
        proc.kill()
        proc.wait(10)
