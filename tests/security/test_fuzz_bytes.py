"""The byte-level fuzzer (atheris, coverage-guided) over every RPC, for a bounded number of inputs: 0 crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # byte-level fuzzing of a live server

REPO = Path(__file__).resolve().parents[2]


def test_atheris_fuzzing_every_rpc_finds_no_crash(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.drills.fuzz_rpcs", "--runs", "400", "--seconds", "90",
         "--data-dir", str(tmp_path), "-seed=1"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "protos")])},
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    log = "\n".join(x for x in proc.stderr.splitlines() if not x.startswith("INFO: Instrumenting"))
    assert lines, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{log[-4000:]}"
    summary = lines[-1]
    assert summary["crashes"] == 0, summary["examples"]
    assert proc.returncode == 0 and summary["healthy_after"]
    assert summary["inputs"] >= 100 and summary["rpcs"] >= 15
    assert set(summary["statuses"]) <= {"OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND"} | {
        "RESOURCE_EXHAUSTED",
        "OUT_OF_RANGE",
    }
