"""server.omp_wait_policy reaches the OpenMP runtime torch loads: it reports how long its idle threads spin
(GOMP_SPINCOUNT, with OMP_DISPLAY_ENV=VERBOSE): 0 passive, 300000 by default, 3e10 active. server.intra_op_threads
reaches torch's intra-op thread count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
from services.common.config import ServerSettings
from services.common.serving import set_openmp_policy
{before}
set_openmp_policy(ServerSettings({kwargs}))
import torch
torch.ones(4).sum()
print("THREADS", torch.get_num_threads())
"""
DEFAULT_SPIN = 300_000


def _spin_count(env_policy: str | None = None, before: str = "", kwargs: str = "") -> tuple[int, str]:
    """(how many times OpenMP's idle threads spin before sleeping, stderr) in a fresh process that applies the
    setting, then loads torch."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(before=before, kwargs=kwargs)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    line = next(x for x in (out.stdout + out.stderr).splitlines() if x.strip().startswith("GOMP_SPINCOUNT"))
    return int(line.split("=", 1)[1].strip().strip("'")), out.stderr


def test_openmp_threads_sleep_at_once_by_default() -> None:
    assert _spin_count()[0] == 0


def test_omp_wait_policy_in_the_environment_wins_over_the_setting() -> None:
    assert _spin_count(env_policy="ACTIVE")[0] > DEFAULT_SPIN
    assert _spin_count(kwargs="omp_wait_policy=''")[0] == DEFAULT_SPIN  # empty: OpenMP's own default


def test_a_policy_set_after_torch_loaded_says_it_came_too_late() -> None:
    spins, stderr = _spin_count(before="import torch")
    assert spins == DEFAULT_SPIN and "torch is already loaded" in stderr


def _threads(env_threads: str | None = None, kwargs: str = "") -> int:
    """torch's intra-op threads in a fresh process that applies the setting, then loads torch."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if env_threads is not None:
        env["OMP_NUM_THREADS"] = env_threads
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(before="", kwargs=kwargs)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return int(next(x for x in out.stdout.splitlines() if x.startswith("THREADS")).split()[1])


def test_each_model_call_uses_one_thread_by_default() -> None:
    assert _threads() == 1


def test_intra_op_threads_setting_and_environment() -> None:
    assert _threads(kwargs="intra_op_threads=2") == 2
    assert _threads(env_threads="2") == 2  # the environment wins over the default
    assert _threads(kwargs="intra_op_threads=0") >= 1  # 0: OpenMP's own default (one per core)
