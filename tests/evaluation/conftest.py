"""Fixtures for the evaluation harness: small synthetic datasets, records, and an embedded server in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from evalkit import ServerThread

from services.mmad.loader import MMADDataset, load_dataset
from services.mmad.synth import synthesize


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 categories x 4 query images (2 normal, 2 anomalous): 40 questions of all seven types."""
    return synthesize(
        tmp_path_factory.mktemp("small") / "data",
        seed=3,
        categories=["round_part", "screw"],
        per_category=4,
        templates_per_category=3,
        progress=False,
    )


@pytest.fixture(scope="session")
def chance_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four categories x 24 images: enough questions for a chance-level confidence interval to mean something."""
    return synthesize(
        tmp_path_factory.mktemp("chance") / "data", seed=11, per_category=24, templates_per_category=3, progress=False
    )


@pytest.fixture(scope="session")
def small_dataset(small_data: Path) -> MMADDataset:
    return load_dataset(small_data)


@pytest.fixture(scope="session")
def random_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """An embedded server whose decision stage is the seeded random answerer (one per session: start-up is slow)."""
    from services.config import load_settings

    state = tmp_path_factory.mktemp("random-state")
    settings = load_settings(
        None,
        data_dir=str(state),
        server={"port": 0},
        decision={"backend": "random", "seed": 7},
        evidence={"input_size": 160},  # small: the evidence axis runs the expert on every question
    )
    server = ServerThread(settings).start()
    try:
        yield server
    finally:
        server.stop()
