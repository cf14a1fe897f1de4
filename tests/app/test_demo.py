"""`echo-iad demo` runs the whole product offline and prints a per-type table, with the visual evidence expert's
accuracy beside the MLLM's and a few heat-map overlays written where it says; it ends with the next two commands,
and they work."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from PIL import Image
from typer.testing import CliRunner

from app.cli import app
from services.client import InspectorClient
from services.common.ports import free_port
from services.mmad.types import QUESTION_TYPES

pytestmark = pytest.mark.slow  # the whole demo end to end, twice its commands (about 40 s)


def test_demo_runs_end_to_end_and_says_which_models_ran(tmp_path: Path, offline_model_cache: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ECHO_IAD__DECISION__MODEL_CACHE", str(offline_model_cache))
    monkeypatch.setenv("ECHO_IAD__EVIDENCE__INPUT_SIZE", "160")  # small banks: the test stays quick on 2 CPUs
    result = CliRunner().invoke(
        app, ["demo", "--workdir", str(tmp_path), "--per-category", "2", "--per-type", "2", "--concurrency", "2"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for step in (
        "1. synthesize",
        "2. build the memory",
        "3. start the embedded server",
        "4. send questions",
        "5. results",
    ):
        assert step in out
    for qtype in QUESTION_TYPES:
        assert qtype.split()[0] in out
    assert "0 degraded" in out
    assert "serving all 6 services on " in out  # the six the README and `echo-iad serve` name
    assert "models that ran: decision=echo-tiny-qwen2-vl" in out and "RANDOM weights" in out
    # the evidence expert answers AD and DL itself: its accuracy is shown beside the MLLM's, the others have none
    assert "VE accuracy" in out and "evidence=efficientnet_lite0" in out
    # no CLIP weights configured: the Reference Extractor embeds with real ImageNet features, said so
    assert "embedding=efficientnet_lite0" in out and "So is the Reference Extractor" in out
    assert re.search(r"Anomaly Detection .*\d+% \(\d/2\)", out) and re.search(r"Localization .*\d+% \(\d/2\)", out)
    assert re.search(r"Object Analysis +│ 2 +│ \d +│ +\d+% +│ – ", out)
    # Anomaly Detection is the evidence's verdict (the decision model is the offline random one), and says so
    ad = re.search(r"Anomaly Detection +│ 2 +│ (\d) +│ +\d+% +│ \d+% \((\d)/2\)", out)
    assert ad and ad[1] == ad[2], out  # the answers that count are the evidence's verdicts
    offline = re.escape("verdict from evidence (the decision model is the offline random model) (2)")
    shown = re.search(r"Anomaly Detection: (\d)/(\d) defective parts shown defective, (\d)/(\d) good parts shown good; "
                      + offline, out)  # fmt: skip
    assert shown and int(shown[2]) + int(shown[4]) == 2 and int(shown[1]) + int(shown[3]) == int(ad[1]), out
    # a few heat-map overlays, written where the demo says, each the query's size
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert 1 <= len(overlays) <= 4 and f"overlays written to {tmp_path / 'overlays'}\n" in out
    for path in overlays:
        assert str(path) in out
        with Image.open(path) as img:
            assert img.size == (256, 256) and img.mode == "RGB"
    assert any(p.name.endswith("_anomalous.png") for p in overlays)
    # it ends with the next commands, and they work: serve what it built, inspect one of its images
    serve, inspect = _next_commands(out)
    assert serve == ["echo-iad", "serve", "--data-dir", str(tmp_path)]
    assert inspect[:2] == ["echo-iad", "inspect"] and Path(inspect[2]).is_file()
    _serve_then_inspect(serve, inspect)
    # a second run reuses the dataset and finds the memory already built
    again = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--per-category", "2", "--per-type", "1"])
    assert again.exit_code == 0 and " 0 added" in again.output


def _next_commands(out: str) -> list[list[str]]:
    """The commands the demo prints after its last heading, each split as a shell would."""
    lines = out[out.rindex("next") :].splitlines()
    return [shlex.split(line) for line in lines if line.strip().startswith("echo-iad ")]


def _serve_then_inspect(serve: list[str], inspect: list[str]) -> None:
    """Run the printed `serve` (on a free port: the test's only addition) and the printed `inspect` against it,
    as a user would in two terminals, with the same environment as the demo."""
    port = free_port()
    cli = [sys.executable, "-m", "app.cli"]
    proc = subprocess.Popen([*cli, *serve[1:], "--port", str(port)], env=os.environ.copy(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        with InspectorClient(f"127.0.0.1:{port}", retries=0) as client:
            deadline = time.monotonic() + 240
            while not _serving(client):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.5)
        result = subprocess.run([*cli, *inspect[1:], "--server", f"127.0.0.1:{port}"], capture_output=True,
                                text=True, timeout=180, env=os.environ.copy())  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "answer" in result.stdout and "reference" in result.stdout  # the demo's memory served its references
    finally:
        proc.terminate()
        proc.wait(60)


def _serving(client: InspectorClient) -> bool:
    try:
        return client.health(timeout_s=2) == "SERVING"
    except grpc.RpcError:
        return False
