"""A run killed with SIGKILL midway resumes to completion with no answer duplicated or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from evalkit import ServerThread

from services.mmad.loader import load_dataset

pytestmark = pytest.mark.slow  # an eval run SIGKILLed midway and rerun

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_midway_then_rerun_loses_and_duplicates_nothing(
    random_server: ServerThread, small_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    answers = run / "answers.jsonl"
    cmd = [sys.executable, "-m", "app.cli", "eval", "run", "--data", str(small_data)]
    cmd += ["--server", random_server.address, "--concurrency", "1", "--out", str(run)]
    log = (tmp_path / "first.log").open("wb")
    # 10 requests/s so the kill surely lands midway (40 questions: about 4 s)
    proc = subprocess.Popen([*cmd, "--max-qps", "10"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while _lines(answers) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {(tmp_path / 'first.log').read_text()}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    killed_at = _lines(answers)
    assert 10 <= killed_at < 40

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{killed_at} already answered" in rerun.stderr.replace("\n", " ")

    raw = answers.read_bytes()
    assert raw.endswith(b"\n")
    ids = [json.loads(line)["id"] for line in raw.decode("utf-8").splitlines()]
    expected = {q.id for _, q in load_dataset(small_data).questions()}
    assert len(ids) == len(set(ids)) == len(expected) == 40
    assert set(ids) == expected
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    first, second = meta["sessions"]
    assert "ended_at" not in first  # the killed session never finished
    assert second["skipped"] == killed_at and second["answered"] == 40 - killed_at
    assert "finished_at" in meta and meta["answered"] == 40
    assert "Table 1" in rerun.stdout
