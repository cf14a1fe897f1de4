"""The Ray overhead benchmark's arithmetic: the orchestration's CPU, and which ingress had the lower p50."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def bench() -> ModuleType:
    return importlib.import_module("loadtests.bench.ray_overhead")


def _phase(bare_p50: float, bare_rps: float, echo_p50: float, echo_rps: float, bare_cpu: float) -> dict[str, Any]:
    side = {"ingress_cpu_ms": 2.0, "stage_work_ms": 8.0}
    return {
        "bare": {**side, "p50_ms": bare_p50, "rps": bare_rps, "server_cpu_ms": bare_cpu},
        "echo": {**side, "p50_ms": echo_p50, "rps": echo_rps, "server_cpu_ms": 30.0},
        "overhead_ratio_p50": 1.0,
        "e2e_ratio_p50": 1.0,
    }


def test_orchestration_cpu_is_server_cpu_beyond_the_stages_work_against_the_bare_apps_server_cpu() -> None:
    b = bench()
    phase = _phase(10, 50, 20, 25, bare_cpu=12.0)
    b.add_orchestration(phase, stage_work_ms=6.0)
    assert phase["orchestration_cpu_ms"] == 24.0  # 30 server CPU - 6 of stage work
    assert phase["orchestration_cpu_ratio"] == 2.0  # against the bare app's 12


def test_the_lower_p50_ingress_is_named_per_shape_app_and_clients_and_a_split_verdict_says_so() -> None:
    b = bench()
    phases = {  # ingress -> (single client, 16 clients)
        "proxy": (_phase(40, 20, 50, 18, 44.0), _phase(400, 40, 300, 30, 33.0)),
        "haproxy": (_phase(15, 50, 35, 24, 12.0), _phase(180, 80, 250, 25, 12.0)),
    }
    runs = {}
    for ingress, (one, many) in phases.items():
        for phase in (one, many):
            b.add_orchestration(phase, 8.0)
        runs[ingress] = {"shapes": {"reference": {**many, "single_client": one}}}
    summary, better = b.summarize(runs, clients=16)
    assert summary["haproxy"]["reference"]["1"]["bare_p50_ms"] == 15
    assert summary["proxy"]["reference"]["16"]["orchestration_cpu_ms"] == 22.0
    assert summary["proxy"]["reference"]["16"]["orchestration_cpu_ratio"] == round(22 / 33, 3)
    assert better["reference"]["bare"] == {"1": "haproxy", "16": "haproxy"}
    assert better["reference"]["echo"] == {"1": "haproxy", "16": "haproxy (p50), proxy (req/s)"}
