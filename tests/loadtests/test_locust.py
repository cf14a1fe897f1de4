"""The Locust users drive a real server over gRPC and report every question type without failures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from services.client import InspectorClient
from services.config import load_settings
from services.gateway.background import BackgroundServer
from services.mmad.loader import load_dataset
from services.mmad.synth import synthesize

REPO = Path(__file__).resolve().parents[2]


def test_locust_headless_run_reports_all_types_and_no_failures(tmp_path: Path) -> None:
    data = synthesize(tmp_path / "d", seed=2, categories=["screw"], per_category=4, templates_per_category=3,
                      progress=False)  # fmt: skip
    ds = load_dataset(data)
    settings = load_settings(data_dir=str(tmp_path / "state"), server={"port": 0}, decision={"backend": "random"})
    with BackgroundServer(settings) as srv:
        with InspectorClient(srv.address) as client:
            rels = [r for _, _, r in ds.templates()]
            client.add_normal_images("load-line", "screw", [ds.abspath(r) for r in rels], dataset="Synthetic")
        proc = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"), "--headless",
             "-u", "4", "-r", "4", "-t", "6s", "--host", srv.address, "--data", str(data), "--line", "load-line",
             "--csv", str(tmp_path / "stats"), "--only-summary", "--exit-code-on-error", "1"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "protos")])},  # this checkout's
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / "stats_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Request Count"]) > 10
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert {"Anomaly Detection", "Defect Classification"} <= set(rows)
