"""`echo-iad serve --ray local-cpu` as a user runs it: from any folder, clean logs, Ray's tools work, Ctrl-C ends it.

A real process in its own process group (as a terminal runs it), the packaged config
by name from an empty folder, and Ctrl-C sent to the whole group, as a terminal does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from deploy.launch import DEFAULT_INGRESS

pytestmark = pytest.mark.slow


def test_serve_ray_by_name_from_any_folder_then_status_then_ctrl_c(tmp_path: Path, offline_model_cache: Path) -> None:
    # A Ray temp dir of its own: `ray.init(address="auto")` would otherwise join another local Ray that a
    # neighbour's test runs, and `serve deploy` would replace that Ray's applications. Short: Ray's socket paths.
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "ECHO_IAD__DECISION__MODEL_CACHE": str(offline_model_cache), "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--ray",
            "local-cpu",
            "--insecure",
        ],  # local-cpu checks no tokens
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 420
        while not any("serving until Ctrl-C" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(1)
        ready = "Echo-IAD on Ray Serve: gRPC proxy 127.0.0.1:9000; send metadata application=inspector"
        assert any(f"{ready} (ingress: {DEFAULT_INGRESS})" in line for line in lines), "".join(lines[-40:])
        tools = {**env, "RAY_AUTH_MODE": "token"}  # the local cluster uses Ray's token auth (Ray 2.60's default)
        bin_dir = Path(sys.executable).parent
        ray_status = subprocess.run([bin_dir / "ray", "status"], env=tools, capture_output=True, text=True, timeout=120)
        assert ray_status.returncode == 0, ray_status.stderr[-2000:]
        serve_status = subprocess.run(
            [bin_dir / "serve", "status"], env=tools, capture_output=True, text=True, timeout=120
        )
        assert serve_status.returncode == 0, serve_status.stderr[-2000:]
        assert "inspector" in serve_status.stdout and "RUNNING" in serve_status.stdout

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole foreground group
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        reader.join(10)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = "".join(lines)
    assert "stopping: removing the applications and the local Ray instance" in log and "\nstopped\n" in log
    assert "Traceback" not in log and "Task exception was never retrieved" not in log
    assert (tmp_path / "echo-data").is_dir()  # the config's relative data_dir resolved against this folder
