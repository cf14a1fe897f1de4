"""Onboarding a new product from the command line: add, check, inspect, over real gRPC."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.background import BackgroundServer
from app.cli import app
from services.common.images import encode_png
from services.mmad.synth import draw_defect, render_normal

KNOWLEDGE = """\
display_name: Brake disc
normal: >-
  A round grey part with a central opening, seen from above; shading is smooth and the outline is a clean circle.
defects:
  crack:
    display_name: Crack
    signature: A jagged dark line that branches.
    location: Anywhere on the face, often from the rim.
    look_alikes: A scratch is straight and smooth; a crack zigzags.
    tolerance: Any crack rejects.
    cause: Thermal stress.
    effect: The disc can fracture under braking, a safety risk.
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[BackgroundServer]:
    from services.config import load_settings
    from services.knowledge.entries import default_root

    state = tmp_path_factory.mktemp("state")
    kb = state / "knowledge"
    shutil.copytree(default_root(), kb, ignore=shutil.ignore_patterns("*.md"))
    settings = load_settings(
        data_dir=str(state),
        server={"port": 0},
        knowledge={"dir": str(kb)},
        decision={"model_cache": str(offline_model_cache)},
        evidence={"input_size": 160},
    )
    with BackgroundServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("brake_disc")
    normal = root / "good"
    normal.mkdir()
    for i in range(4):
        (normal / f"{i}.png").write_bytes(encode_png(render_normal("round_part", np.random.default_rng(i))))
    bad, _, _ = draw_defect(render_normal("round_part", np.random.default_rng(99)), "round_part", "crack",
                            np.random.default_rng(1))  # fmt: skip
    (root / "part.png").write_bytes(encode_png(bad))
    (root / "brake_disc.yaml").write_text(KNOWLEDGE)
    return {"normal": normal, "part": root / "part.png", "knowledge": root / "brake_disc.yaml"}


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_check_before_onboarding_says_not_ready(server: BackgroundServer) -> None:
    result = runner.invoke(app, ["product", "check", "--line", "line-9", "--category", "brake_disc",
                                 "--server", server.address])  # fmt: skip
    assert result.exit_code == 1 and "NOT READY" in result.output and "normal images   0" in result.output


def test_onboarding_a_product_makes_it_ready_and_inspectable(server: BackgroundServer, product) -> None:  # type: ignore[no-untyped-def]
    normal, knowledge = str(product["normal"]), str(product["knowledge"])
    out = _run("product", "add", "--line", "line-9", "--category", "brake_disc", "--normal-dir", normal,
               "--knowledge", knowledge, "--server", server.address)  # fmt: skip
    assert "memory: 4 added, 0 already present" in out and "knowledge: Custom/brake_disc stored" in out
    assert "evidence bank: 4 normal images, threshold" in out  # the same images, one ingest path
    stored = re.search(r"stored \(version (\d+)\)", out)
    assert stored and int(stored[1]) >= 1
    again = _run("product", "add", "--line", "line-9", "--category", "brake_disc", "--normal-dir",
                 str(product["normal"]), "--server", server.address)  # fmt: skip
    assert "memory: 0 added, 4 already present" in again and "evidence bank: 4 normal images" in again

    out = _run("product", "check", "--line", "line-9", "--category", "brake_disc", "--server", server.address)
    assert "normal images   4 (ready)" in out and "READY" in out
    # the version the server stored, said the one way the console and `product add` say it
    assert f"knowledge       present (Custom/brake_disc, version {stored[1]})" in out and " v0" not in out
    # four images are too few for the self-configuration to hold some out: it says so, and how many more
    assert "evidence        fixed features blocks=2,4/size=160/pool=3 (too few images:" in out
    assert "4 more would let it choose" in out

    out = _run("inspect", str(product["part"]), "--line", "line-9", "--category", "brake_disc", "--dataset",
               "Custom", "-q", "There is a defect in the object. What is the type of the defect?",
               "-o", "A=Crack.", "-o", "B=Scratch.", "-o", "C=Stain.", "-o", "D=Hole.",
               "--server", server.address, "--json")  # fmt: skip
    resp = json.loads(out)
    trace = resp["trace"]
    assert trace["question_type"] == "DEFECT_CLASSIFICATION"
    # Defect Classification runs the evidence expert too (its box is what the defect library classifies)
    assert trace["experts_used"] == ["reference", "knowledge", "evidence", "decision"]
    assert trace["knowledge_entry_ids"] == ["Custom/brake_disc"]
    assert trace["references"][0]["category"] == "brake_disc"
    assert resp.get("answer", "") in {"A", "B", "C", "D", ""}


def test_inspect_prints_a_readable_trace(server: BackgroundServer, product) -> None:  # type: ignore[no-untyped-def]
    out = _run("inspect", str(product["part"]), "--line", "line-9", "--category", "brake_disc", "--dataset",
               "Custom", "-q", "Is there any defect in the object?", "--server", server.address)  # fmt: skip
    for label in ("answer", "question type", "ANOMALY_DETECTION", "experts used", "reference", "latency", "total"):
        assert label in out


def test_inspect_prints_the_evidence_line_and_where_the_verdict_comes_from(server: BackgroundServer, product) -> None:  # type: ignore[no-untyped-def]
    out = _run("inspect", str(product["part"]), "--line", "line-9", "--category", "brake_disc", "--dataset",
               "Custom", "-q", "Is there any defect in the object?", "--server", server.address)  # fmt: skip
    evidence = re.search(r"evidence +(anomalous|normal): score ([\d.]+) (>|<=) threshold ([\d.]+), top region \w", out)
    assert evidence, out
    anomalous = evidence[1] == "anomalous"
    assert anomalous == (float(evidence[2]) > float(evidence[4])) and (evidence[3] == ">") == anomalous
    assert "verdict from  evidence (the decision model is the offline random model)" in out
    held = "held until a person confirms it" in out  # a part in the review band is answered Yes, held for review
    assert re.search(r"answer +A\. Yes\." if anomalous or held else r"answer +B\. No\.", out)  # the evidence's
    assert re.search(r"model answer +[AB] \(the evidence answered instead\)", out)


def test_inspect_refuses_a_malformed_option(server: BackgroundServer, product) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["inspect", str(product["part"]), "-q", "Is it ok?", "-o", "Yes",
                                 "--server", server.address])  # fmt: skip
    assert result.exit_code != 0 and "LETTER=TEXT" in result.output
