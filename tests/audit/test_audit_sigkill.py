"""A real `echo-iad serve` process killed with SIGKILL loses no audit record that was acknowledged."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from serve_process import start_serve

from services.common.images import encode_png, sha256_hex
from services.mmad.synth import render_normal

QUESTION = ("There is a defect in the object. Where is the defect?", {"A": "Top left.", "B": "Center.", "C": "Edge."})


def _serve(data_dir: Path, model_cache: Path):  # type: ignore[no-untyped-def]
    return start_serve(data_dir, model_cache, ECHO_IAD__DECISION__BACKEND="random")  # the model is not the point


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_record(tmp_path: Path, offline_model_cache: Path) -> None:
    images = [encode_png(render_normal("screw", np.random.default_rng(seed))) for seed in range(4)]
    proc, client = _serve(tmp_path, offline_model_cache)
    acked: list[tuple[str, str]] = []  # (request id, image sha256) of every answer a caller received
    failed: list[grpc.RpcError] = []
    stop = threading.Event()

    def caller(worker: int) -> None:
        i = 0
        while not stop.is_set():
            rid, image = f"k{worker}-{i}", images[(worker + i) % len(images)]
            try:
                client.inspect(image, *QUESTION, line_id="line-k", category="screw", request_id=rid,
                               question_type="Defect Localization")  # fmt: skip
            except grpc.RpcError as e:
                failed.append(e)
                return
            acked.append((rid, sha256_hex(image)))
            i += 1

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(6)]
    try:
        for t in threads:
            t.start()
        while len(acked) < 60:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # mid-stream: six callers have requests in flight
        proc.wait(30)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        client.close()
        if proc.poll() is None:
            proc.kill()
    assert failed, "the kill should have cut requests in flight"
    survivors = list(acked)

    proc, client = _serve(tmp_path, offline_model_cache)  # same data_dir: the log recovers on open
    try:
        kept = {r.request_id: r for r in client.iter_inspections("line-k", limit=200)}
        missing = [rid for rid, _ in survivors if rid not in kept]
        assert not missing, f"{len(missing)} of {len(survivors)} acknowledged records lost: {missing[:5]}"
        for rid, sha in survivors[-3:]:
            assert kept[rid].image_sha256 == sha
            assert sha256_hex(client.get_image("line-k", sha).data) == sha  # the image was durable too
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
