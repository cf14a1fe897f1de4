"""`echo-iad serve` as a real process of a test's own, on a free port, reachable once healthy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from services.client import InspectorClient
from services.common.ports import free_port


def start_serve(data_dir: Path, model_cache: Path, **env: str) -> tuple[subprocess.Popen, InspectorClient]:
    """Start `python -m app.cli serve` with ECHO_IAD__* overrides (env) and wait until it is SERVING.

    Returns the process (stdout and stderr piped together) and a client without retries.
    """
    port = free_port()
    environ = {
        **os.environ,
        "ECHO_IAD__DATA_DIR": str(data_dir),
        "ECHO_IAD__DECISION__MODEL_CACHE": str(model_cache),
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = InspectorClient(f"127.0.0.1:{port}", retries=0, timeout_s=30)
    deadline = time.monotonic() + 240
    while True:
        try:
            if client.health(timeout_s=2) == "SERVING":
                return proc, client
        except grpc.RpcError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not become healthy:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.5)
