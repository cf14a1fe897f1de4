"""The Locust users drive a real server over gRPC: every question type for the Inspector, each stage alone."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.background import BackgroundServer
from services.client import InspectorClient
from services.config import load_settings
from services.mmad.loader import load_dataset
from services.mmad.synth import synthesize
from services.mmad.types import QUESTION_TYPES

pytestmark = pytest.mark.slow  # Locust runs against a live server

REPO = Path(__file__).resolve().parents[2]
LINE = "load-line"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("locust")
    data = synthesize(tmp / "d", seed=2, categories=["screw"], per_category=4, templates_per_category=3,
                      progress=False)  # fmt: skip
    ds = load_dataset(data)
    settings = load_settings(data_dir=str(tmp / "state"), server={"port": 0}, decision={"backend": "random"})
    with BackgroundServer(settings) as srv:
        with InspectorClient(srv.address) as client:
            rels = [r for _, _, r in ds.templates()]
            client.add_normal_images(LINE, "screw", [ds.abspath(r) for r in rels], dataset="Synthetic")
        yield srv.address, data


def _locust(address: str, data: Path, out: Path, *args: str) -> dict[str, dict[str, str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "locust", *args, "--headless", "--host", address, "--data", str(data),
         "--line", LINE, "--csv", str(out), "--only-summary", "--exit-code-on-error", "1", "--stop-timeout", "30"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "protos")])},  # this checkout's
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out.with_name(out.name + "_stats.csv")) as f:
        return {r["Name"]: r for r in csv.DictReader(f)}


def test_locust_inspector_users_ask_every_question_type_without_failures(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, data = served
    users = str(len(QUESTION_TYPES))  # user k starts its fixed cycle at type k: the first calls cover them all
    log = tmp_path / "requests.jsonl"  # 15 s: on a loaded machine a user's start (its dataset) can take seconds
    rows = _locust(address, data, tmp_path / "stats", "-f", str(REPO / "loadtests" / "locust" / "locustfile.py"),
                   "-u", users, "-r", users, "-t", "15s", "--request-log", str(log))  # fmt: skip
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(requests) >= int(rows["Aggregated"]["Request Count"])  # and those finishing as Locust stops
    assert all(r["code"] == "OK" and r["seconds"] > 0 and r["start"] > 0 for r in requests)
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert set(QUESTION_TYPES) <= set(rows), sorted(rows)
    assert int(rows["Aggregated"]["Request Count"]) >= len(QUESTION_TYPES)


def test_locust_stage_users_call_each_stage_alone_without_failures(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, data = served
    stage_users = ["EmbeddingUser", "RetrievalUser", "KnowledgeUser", "DecisionUser"]
    rows = _locust(address, data, tmp_path / "stages", "-f", str(REPO / "loadtests" / "locust" / "stages.py"),
                   *stage_users, "-u", "4", "-r", "4", "-t", "5s", "--types", "AD,DD")  # fmt: skip
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert {"EmbedImages", "Search", "GetContext", "Decide Anomaly Detection"} <= set(rows), sorted(rows)
