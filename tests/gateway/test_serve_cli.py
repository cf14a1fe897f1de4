"""`echo-iad serve` as a real process: reachable, healthy, and SIGTERM lets in-flight requests finish."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from serve_process import start_serve

from services.common.images import encode_png
from services.mmad.synth import render_normal


@pytest.fixture()
def served(tmp_path: Path, offline_model_cache: Path):  # type: ignore[no-untyped-def]
    proc, client = start_serve(tmp_path, offline_model_cache, ECHO_IAD__SERVER__GRACE_S="20")
    try:
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.slow  # a served process with real models, SIGTERMed
def test_sigterm_lets_the_in_flight_inspection_finish(served) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    proc, client = served
    image = encode_png(render_normal("screw", np.random.default_rng(0)))
    result: dict = {}

    def slow_request() -> None:
        try:  # reasoning adds a bounded generation pass: long enough to be in flight at SIGTERM
            result["resp"] = client.inspect(
                image,
                "There is a defect in the object. Where is the defect?",
                {"A": "Top left.", "B": "Center.", "C": "Bottom right.", "D": "Top right."},
                category="screw",
                question_type="Defect Localization",
                experts={"reasoning": True},
                timeout_s=60,
            )
        except grpc.RpcError as e:
            result["error"] = e

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.15)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert "error" not in result, result.get("error")
    assert result["resp"].answer in "ABCD" and "reasoning" in result["resp"].trace.experts_used
    assert proc.wait(30) == 0
    with pytest.raises(grpc.RpcError):
        client.health(timeout_s=2)
